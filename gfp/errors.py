"""Errors gfp raises for bad input. The CLI prints them as one line and exits with status 2."""


class GfpError(Exception):
    """Base class: a user-facing problem with a clear, one-line message."""


class DataError(GfpError):
    """A dataset is missing, malformed or cannot be produced. Name the file, key and index."""


class ConfigError(GfpError):
    """An unknown task, agent, preset or option, or an inconsistent setting."""
