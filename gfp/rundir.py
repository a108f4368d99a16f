"""A run directory: config.json, metrics.csv, eval.csv, TensorBoard events, checkpoint.msgpack,
summary.json, params.msgpack.

Every whole-file write is atomic (temp file in the same directory, fsync, os.replace, fsync of the
directory), so a kill never leaves a half-written file and a failed write (full disk, permissions)
leaves the previous version intact; it raises `WriteError` saying so. The CSV logs are appended row
by row; a checkpoint records their byte lengths (after an fsync), and resuming cuts them back to
those lengths, so rows written after the checkpoint (or half a row written at a kill) disappear and
are written again: no duplicate or missing rows.

checkpoint.msgpack is ONE file (so it is replaced atomically as a whole) holding the seed's full
train state (parameters, target parameters, optimizer state, RNG key = sampler state, step) and a
JSON `meta` record: the step, the CSV lengths, the partial log-interval sums, the wall time so far.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.serialization

from gfp.errors import ConfigError, DataError, WriteError
from gfp.io import _jsonable, atomic_write_bytes, atomic_write_json, os_reason  # noqa: F401

CHECKPOINT = "checkpoint.msgpack"
CHECKPOINT_FORMAT = 1
# Files a run writes; --overwrite removes them (and tb/) before a new run starts.
RUN_FILES = (
    "config.json",
    "metrics.csv",
    "eval.csv",
    "summary.json",
    "params.msgpack",
    CHECKPOINT,
    "eval_final.json",
)


class CsvLog:
    """Append-only CSV with a fixed header taken from the first row."""

    def __init__(self, path: Path):
        self.path = path
        self.fields: list[str] | None = None
        if path.exists() and path.stat().st_size > 0:
            with path.open() as f:
                self.fields = next(csv.reader(f), None)

    def write(self, row: Mapping[str, Any]) -> None:
        new = self.fields is None
        fields = list(row) if new else self.fields
        try:
            with self.path.open("a", newline="") as f:
                writer = csv.DictWriter(f, fields, extrasaction="ignore")
                if new:
                    writer.writeheader()
                writer.writerow(row)
        except OSError as e:
            raise WriteError(
                f"could not append to {self.path}: {os_reason(e)}; the last checkpoint is intact "
                "and --resume cuts the log back to it"
            ) from e
        self.fields = fields

    def read(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        with self.path.open() as f:
            return list(csv.DictReader(f))

    def sync(self) -> int:
        """fsync the file and return its length in bytes (0 if it does not exist yet)."""
        if not self.path.exists():
            return 0
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def truncate(self, size: int) -> None:
        """Cut the file back to `size` bytes (what it held at a checkpoint)."""
        have = self.path.stat().st_size if self.path.exists() else 0
        if have < size:
            raise DataError(
                f"{self.path} has {have} bytes but held {size} at the checkpoint; it was modified "
                "outside gfp, so the run cannot be resumed consistently"
            )
        if self.path.exists():
            os.truncate(self.path, size)
        self.__init__(self.path)


def _lock_run_dir(path: Path):
    """Hold an exclusive lock on RUN_DIR/.lock while a run writes there, so that a second gfp
    process (say, the same command started twice, or --overwrite of a live run) cannot interleave
    its files with the first one's. The OS releases the lock when the process dies."""
    import fcntl

    f = (path / ".lock").open("a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise ConfigError(
            f"{path} is in use by another running gfp process; wait for it to finish or choose "
            "another --out"
        ) from None
    return f


class RunDir:
    """Files of one training run (one seed).

    `create=True` makes the directory for a new run; a directory that already holds a run (a
    config.json) is refused unless `overwrite` (which deletes the run's files) or `resume`.
    `create=False` opens an existing directory (read access, evaluation).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        overwrite: bool = False,
        create: bool = True,
        resume: bool = False,
    ):
        self.path = Path(path)
        self._lock = None
        self._tb = None
        if create:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise WriteError(
                    f"cannot create the run directory {self.path}: {os_reason(e)}"
                ) from e
            self._lock = _lock_run_dir(self.path)
        try:
            if create and not resume:
                self._refuse_or_clear(overwrite)
        except BaseException:
            self.close()
            raise
        self.metrics = CsvLog(self.path / "metrics.csv")
        self.evals = CsvLog(self.path / "eval.csv")
        self.purge_step: int | None = None  # TensorBoard drops events from this step on (resume)

    def _refuse_or_clear(self, overwrite: bool) -> None:
        """A new run: clear the directory's run files (overwrite) or refuse a directory that
        already holds a run."""
        if overwrite:
            for name in RUN_FILES:
                (self.path / name).unlink(missing_ok=True)
            shutil.rmtree(self.path / "tb", ignore_errors=True)
        elif (self.path / "summary.json").exists():
            raise ConfigError(
                f"{self.path} holds a finished run; pass --overwrite to replace it or choose "
                "another --out"
            )
        elif (self.path / "config.json").exists():
            step = self.checkpoint_step()
            at = f"checkpoint at step {step}" if step is not None else "no checkpoint yet"
            raise ConfigError(
                f"{self.path} holds an unfinished run ({at}); continue it with "
                f"--resume {self.path}, or pass --overwrite to start over"
            )

    @property
    def tensorboard(self):
        if self._tb is None:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(
                str(self.path / "tb"), flush_secs=30, purge_step=self.purge_step
            )
        return self._tb

    @property
    def finished(self) -> bool:
        return (self.path / "summary.json").exists()

    def log_metrics(self, step: int, row: Mapping[str, float]) -> None:
        self.metrics.write({"step": step, **row})
        for k, v in row.items():
            self.tensorboard.add_scalar(k, v, step)

    def log_eval(self, step: int, row: Mapping[str, float]) -> None:
        self.evals.write({"step": step, **row})
        for k, v in row.items():
            self.tensorboard.add_scalar(f"eval/{k}", v, step)
        self.tensorboard.flush()

    def write_config(self, config: Mapping[str, Any]) -> None:
        atomic_write_json(self.path / "config.json", config)

    def read_config(self) -> dict[str, Any]:
        return json.loads((self.path / "config.json").read_text())

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        atomic_write_json(self.path / "summary.json", summary)

    def read_summary(self) -> dict[str, Any]:
        return json.loads((self.path / "summary.json").read_text())

    def save_params(self, params: Any) -> None:
        atomic_write_bytes(
            self.path / "params.msgpack", flax.serialization.msgpack_serialize(params)
        )

    def load_params(self) -> Any:
        return flax.serialization.msgpack_restore((self.path / "params.msgpack").read_bytes())

    # ---- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(self, state: Any, meta: Mapping[str, Any]) -> None:
        """Atomically replace checkpoint.msgpack with `state` (a host pytree of arrays, e.g. from
        `flax.serialization.to_state_dict`) and `meta`, after syncing the logs: the checkpoint
        records their lengths, so it never refers to rows that are not on disk."""
        self.tensorboard.flush()
        meta = {
            **meta,
            "format": CHECKPOINT_FORMAT,
            "metrics_bytes": self.metrics.sync(),
            "eval_bytes": self.evals.sync(),
        }
        blob = flax.serialization.msgpack_serialize(
            {"meta": json.dumps(meta, default=_jsonable), "state": state}
        )
        atomic_write_bytes(self.path / CHECKPOINT, blob)

    def load_checkpoint(self) -> tuple[Any, dict[str, Any]] | None:
        """(state dict, meta) of the last checkpoint, or None if there is none."""
        path = self.path / CHECKPOINT
        if not path.exists():
            return None
        try:
            raw = flax.serialization.msgpack_restore(path.read_bytes())
            meta = json.loads(raw["meta"])
            state = raw["state"]
        except Exception as e:  # msgpack/JSON/key errors: a damaged or foreign file
            raise DataError(f"{path}: cannot be read as a gfp checkpoint ({e})") from e
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise DataError(f"{path}: checkpoint format {meta.get('format')!r} is not supported")
        return state, meta

    def checkpoint_step(self) -> int | None:
        """Step of the last checkpoint (None without one or if it cannot be read)."""
        with contextlib.suppress(DataError):
            ckpt = self.load_checkpoint()
            if ckpt is not None:
                return int(ckpt[1]["step"])
        return None

    def rewind(self, meta: Mapping[str, Any] | None) -> None:
        """Cut the logs back to a checkpoint (`meta`), or to nothing (None: no checkpoint), and make
        TensorBoard drop the events written after it."""
        self.metrics.truncate(meta["metrics_bytes"] if meta else 0)
        self.evals.truncate(meta["eval_bytes"] if meta else 0)
        self.purge_step = int(meta["step"]) + 1 if meta else 1

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._lock is not None:
            self._lock.close()  # releases the run-directory lock
            self._lock = None
