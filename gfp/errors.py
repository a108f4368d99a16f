"""Errors gfp raises for bad input and for runs that cannot go on. The CLI prints each as one line
(`gfp: error: ...`) and exits with the class's `exit_code`: 2 for bad input, 3 for a diverged run,
4 for a failed write, 128 + the signal's number for a run stopped by SIGINT/SIGTERM."""


class GfpError(Exception):
    """Base class: a user-facing problem with a clear, one-line message."""

    exit_code: int = 2


class DataError(GfpError):
    """A dataset is missing, malformed or cannot be produced. Name the file, key and index."""


class ConfigError(GfpError):
    """An unknown task, agent, preset or option, or an inconsistent setting."""


class DivergenceError(GfpError):
    """A loss or a parameter became NaN or inf; names the step and the terms. The run directory
    keeps its last good checkpoint."""

    exit_code = 3
    step: int | None = None  # the update that first produced a non-finite value
    terms: tuple[str, ...] | list[str] = ()  # the metrics (or modules) that were non-finite
    seed_index: int = 0  # which seed of a vmapped run


class WriteError(GfpError):
    """A file could not be written (full disk, permissions). The previous version is intact."""

    exit_code = 4


class Interrupted(GfpError):
    """Training stopped on SIGINT/SIGTERM after writing a checkpoint; `--resume` continues it."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum
