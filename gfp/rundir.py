"""A run directory: config.json, metrics.csv, eval.csv, TensorBoard events, checkpoint.msgpack,
checkpoint.prev.msgpack, summary.json, params.msgpack.

Every whole-file write is atomic (gfp.io: temp file in the same directory, fsync, os.replace,
fsync of the directory), so a kill never leaves a half-written file and a failed write (full disk,
permissions, read-only file system) leaves the previous version intact; it raises `WriteError`
saying so. The CSV logs are appended row by row; a checkpoint records their byte lengths (after an
fsync), and resuming cuts them back to those lengths, so rows written after the checkpoint (or half
a row written at a kill) disappear and are written again: no duplicate or missing rows.

A checkpoint is ONE file (so it is replaced atomically as a whole) holding the seed's full train
state (parameters, target parameters, optimizer state, RNG key = sampler state, step) and a JSON
`meta` record (the step, the CSV lengths, the partial log-interval sums, the wall time so far, and
whatever the caller adds, e.g. a config hash), msgpack-encoded behind a 52-byte header: magic,
format, payload length and the sha256 of header and payload. A file whose check fails (bit rot,
a truncated copy, an edit) is never used. The two newest checkpoints are kept: checkpoint.msgpack
and checkpoint.prev.msgpack, the one before it, so a damaged newest one makes `--resume` fall back
to the previous one (and cut the logs back to *its* lengths, so the resumed run still ends
identical to an uninterrupted one). The previous one is made by renaming a hard link over it, so at
every instant both names hold a whole, verified checkpoint.

An online checkpoint's replay rows live beside it, append-only: each checkpoint writes one segment
file, replay/seg-<step>.msgpack (sealed like a checkpoint, written atomically), holding only the
online rows added since the previous checkpoint (`ReplaySegment`), and its meta lists the segments
(with their sha256) that together hold the rows the buffer still has. Loading verifies each one and
puts the rows back together in order (a later segment's copy of a row wins: the newest row of an
episode gets its next action later), so a checkpoint's cost no longer grows with the buffer.
Segments that neither the newest nor the previous checkpoint lists (rows overwritten since) are
deleted. A damaged or missing segment makes its checkpoint untrusted, like a damaged file.
Checkpoints from before the segments (the rows inside the checkpoint file) are read as before.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import errno
import hashlib
import json
import math
import os
import secrets
import struct
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from gfp.errors import ConfigError, DataError, WriteError
from gfp.io import (
    _jsonable,
    atomic_write_bytes,
    atomic_write_json,
    clean_stale_tmp,
    fsync_dir,
    os_reason,
)
from gfp.tracking import Tracker, wandb_client

CHECKPOINT = "checkpoint.msgpack"  # the newest checkpoint
PREV_CHECKPOINT = "checkpoint.prev.msgpack"  # the one before it
CHECKPOINT_FORMAT = 2  # 1: no header and no integrity check (refused: it cannot be verified)
# meta "format" of a checkpoint whose replay rows are in segments (a gfp that reads only format 2
# refuses it instead of resuming with an empty buffer); other checkpoints keep format 2.
SEGMENTED_FORMAT = 3
REPLAY_DIR = "replay"  # the online checkpoints' replay segments
PARAMS = "params.msgpack"  # the final parameters
PARAMS_BEST = "params_best.msgpack"  # --select-by: the best evaluation's parameters
PARAMS_FORMAT = 1  # before it (no format): a bare msgpack, read without a check and with a note
# magic, format, payload length, sha256 of (magic, format, length, payload); little-endian.
_HEADER = struct.Struct("<8sIQ32s")
_SIGNED = struct.Struct("<8sIQ")  # the part of the header the sha256 covers


@dataclasses.dataclass(frozen=True)
class Sealed:
    """A kind of file written behind the integrity header: its magic (which also tells the kinds
    apart: a checkpoint copied over params.msgpack is refused), its format, its name in messages."""

    magic: bytes  # 8 bytes
    format: int
    name: str


CHECKPOINT_FILE = Sealed(b"GFPCKPT\n", CHECKPOINT_FORMAT, "checkpoint")
PARAMS_FILE = Sealed(b"GFPPARM\n", PARAMS_FORMAT, "parameters file")
SEGMENT_FILE = Sealed(b"GFPSEGM\n", 1, "replay segment")
# Files a run writes; --overwrite removes them (with the videos and TensorBoard's event files:
# `_gfp_files`) before a new run starts, and keeps every other file.
RUN_FILES = (
    "config.json",
    "metrics.csv",
    "eval.csv",
    "summary.json",
    PARAMS,
    PARAMS_BEST,
    CHECKPOINT,
    PREV_CHECKPOINT,
    "eval_final.json",
    "explore.csv",  # online exploration episodes (gfp.run)
)
TB_DIR = "tb"  # TensorBoard: the run's scalars; tb/hparams/ its hyperparameters (HParams tab)
HPARAMS = "hparams"  # tb/hparams/: the run's TensorBoard hparams session (`log_hparams`)
# config.json's keys that describe a run beside its agent config, as hyperparameters
RUN_HPARAMS = ("task", "agent", "preset", "seed", "steps", "online_steps")
_TB_EVENTS = "events.out.tfevents."  # how every TensorBoard event file's name starts
_LOCK = ".lock"
# eval.csv columns that are not metrics (identifiers): written to the CSV, not to TensorBoard.
CSV_ONLY = ("eval_seed",)


class _Untrusted(Exception):
    """A sealed file that must not be used; the message completes "PATH ..."."""


def _seal(payload: bytes, kind: Sealed = CHECKPOINT_FILE) -> bytes:
    """The file for `payload`: the header of `kind` (with its sha256) followed by the payload."""
    signed = _SIGNED.pack(kind.magic, kind.format, len(payload))
    return _HEADER.pack(kind.magic, kind.format, len(payload), _digest(signed, payload)) + payload


def _digest(signed: bytes, payload: bytes) -> bytes:
    h = hashlib.sha256(signed)
    h.update(payload)
    return h.digest()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise _Untrusted(f"cannot be read ({os_reason(e)})") from e


def _verified_payload(
    path: Path, kind: Sealed = CHECKPOINT_FILE, blob: bytes | None = None
) -> bytes:
    """The payload of the `kind` file `path` (its bytes `blob`, if already read) once its header
    and sha256 check out; otherwise _Untrusted saying what is wrong."""
    blob = _read(path) if blob is None else blob
    if not blob.startswith(kind.magic):
        raise _Untrusted(
            f"is not a gfp {kind.name} with an integrity check (no gfp header: damaged, another "
            f"file, or written by a gfp before {kind.name} format {kind.format})"
        )
    if len(blob) < _HEADER.size:
        raise _Untrusted(f"is truncated ({len(blob)} bytes, shorter than the header)")
    _, version, length, digest = _HEADER.unpack_from(blob)
    payload = memoryview(blob)[_HEADER.size :]
    if len(payload) != length:
        raise _Untrusted(
            f"is corrupt (length mismatch: {len(payload)} payload bytes, the header says {length})"
        )
    if _digest(blob[: _SIGNED.size], payload) != digest:
        raise _Untrusted("is corrupt (sha256 mismatch)")
    if version != kind.format:
        raise _Untrusted(f"has {kind.name} format {version}; this gfp reads {kind.format}")
    return bytes(payload)


def _headerless_params(blob: bytes) -> bool:
    """Whether `blob` is a params.msgpack from before PARAMS_FORMAT: a bare msgpack of a tree of
    parameters (a map), nothing after it."""
    try:
        return isinstance(flax.serialization.msgpack_restore(blob), dict)
    except Exception:  # msgpack raises its own kinds (ExtraData, FormatError, ValueError, ...)
        return False


def params_payload(path: Path) -> bytes:
    """The serialized parameters (flax msgpack) a params.msgpack file holds, verified by its
    header; a file from before PARAMS_FORMAT is taken as it is, with a one-line note on stderr.
    ConfigError naming the file if it is damaged, truncated or not a parameters file."""
    try:
        blob = _read(path)
        if not blob.startswith(PARAMS_FILE.magic) and _headerless_params(blob):
            print(
                f"gfp: note: {path} has no integrity header (written by a gfp before parameters "
                f"file format {PARAMS_FORMAT}); its parameters are used unverified",
                file=sys.stderr,
            )
            return blob
        return _verified_payload(path, PARAMS_FILE, blob)
    except _Untrusted as e:
        raise ConfigError(f"{path} {e}; the run's final parameters cannot be used") from None


def _checkpoint_problem(path: Path) -> str | None:
    """Why the checkpoint file `path` must not be used, or None if it verifies."""
    try:
        _verified_payload(path)
    except _Untrusted as e:
        return str(e)
    return None


def _open_checkpoint(path: Path) -> tuple[Any, dict[str, Any]]:
    """(state dict, meta) of a checkpoint file that verifies; _Untrusted otherwise."""
    payload = _verified_payload(path)
    try:
        raw = flax.serialization.msgpack_restore(payload)
        meta = json.loads(raw["meta"])
        state = raw["state"]
        int(meta["step"])
    except Exception as e:  # verified, yet not gfp's layout: written by something else
        raise _Untrusted(f"cannot be decoded as a gfp checkpoint ({e})") from e
    if meta.get("format") not in (CHECKPOINT_FORMAT, SEGMENTED_FORMAT):
        raise _Untrusted(
            f"has checkpoint format {meta.get('format')!r}; expected {CHECKPOINT_FORMAT} or "
            f"{SEGMENTED_FORMAT}"
        )
    if "replay" in meta:
        state = {**state, "online": {**state.get("online", {}), "rows": _replay_rows(path, meta)}}
    return state, meta


@dataclasses.dataclass(frozen=True)
class ReplaySegment:
    """What an online checkpoint adds to its replay rows: the online rows [start, end) of one seed
    (`rows[key]` has end - start rows, oldest first; end is the rows added so far), the counters
    of the buffer (size, pointer, added: recorded to be checked on loading), and `keep_from`, the
    oldest online row the buffer still holds (the older ones were overwritten)."""

    rows: Mapping[str, np.ndarray]
    start: int
    end: int
    keep_from: int
    counters: Mapping[str, int]


def segment_name(step: int) -> str:
    """A segment's path in the run directory: zero-padded, so names sort in step order."""
    return f"{REPLAY_DIR}/seg-{step:012d}.msgpack"


def _replay_rows(path: Path, meta: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The online rows [keep_from, end) a segmented checkpoint `path` (its `meta`) holds,
    assembled from its segments in order; _Untrusted if one is missing, damaged, not the file the
    checkpoint recorded, or the segments leave a row out."""
    replay = meta["replay"]
    lo, hi = (int(x) for x in replay["rows"])
    out: dict[str, np.ndarray] | None = None
    covered = np.zeros(hi - lo, bool)
    for seg in replay["segments"]:
        file = path.parent / seg["file"]
        try:
            blob = _read(file)
            if hashlib.sha256(blob).hexdigest() != seg["sha256"]:
                raise _Untrusted("is not the file the checkpoint recorded (sha256 mismatch)")
            raw = flax.serialization.msgpack_restore(_verified_payload(file, SEGMENT_FILE, blob))
        except _Untrusted as e:
            raise _Untrusted(f"needs the replay segment {file}, which {e}") from e
        start, end = int(seg["start"]), int(seg["end"])
        rows = {k: np.asarray(v) for k, v in raw["rows"].items()}
        if out is None:
            out = {k: np.zeros((hi - lo, *v.shape[1:]), v.dtype) for k, v in rows.items()}
        if set(rows) != set(out) or any(len(v) != end - start for v in rows.values()):
            raise _Untrusted(f"needs the replay segment {file}, which does not fit the others")
        a, b = max(lo, start), min(hi, end)
        if a < b:
            for k, v in rows.items():
                out[k][a - lo : b - lo] = v[a - start : b - start]
            covered[a - lo : b - lo] = True
        last = json.loads(raw["meta"])
    if out is None or not covered.all() or last["counters"] != replay["counters"]:
        raise _Untrusted(f"has replay segments that do not make up its rows {lo}..{hi}")
    return out


# os.link fails with these where a file system has no hard links (FAT, some network/FUSE mounts).
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK}


def _replace_with_link(src: Path, dst: Path) -> None:
    """Make `dst` hold what `src` holds, atomically and leaving `src` in place: a hard link to
    `src` renamed over `dst`, so a kill at any point leaves both names with a whole checkpoint.
    Without hard links `src` itself is renamed to `dst`; until the caller's new file takes its
    name, `src` is missing and loading falls back to `dst`."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        os.link(src, tmp)
    except OSError as e:
        if e.errno not in _NO_HARD_LINKS:
            raise
        os.replace(src, dst)
        return
    try:
        os.replace(tmp, dst)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


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
        if self.path.exists() and have > size:
            try:
                os.truncate(self.path, size)
            except OSError as e:
                raise WriteError(
                    f"could not cut {self.path} back to its checkpoint: {os_reason(e)}"
                ) from e
        self.__init__(self.path)


def _lock_run_dir(path: Path):
    """Hold an exclusive lock on RUN_DIR/.lock while a run writes there, so that a second gfp
    process (say, the same command started twice, or --overwrite of a live run) cannot interleave
    its files with the first one's. The OS releases the lock when the process dies."""
    import fcntl

    lock = path / ".lock"
    try:
        f = lock.open("a")
    except OSError as e:  # a read-only file system, permissions: the run could not write anyway
        raise WriteError(
            f"cannot write to the run directory {path}: {os_reason(e)} ({lock})"
        ) from e
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
    `create=False` opens an existing directory (read access, evaluation). `offline_steps`: the
    run's offline steps; its metrics.csv and eval.csv rows then carry a `phase` column after
    `step`, 'offline' up to them and 'online' after them (text: CSV only, not TensorBoard).
    `wandb`: a Weights & Biases project that gets what TensorBoard gets, config.json, the final
    figures and the videos (`gfp.tracking.Tracker`, started with config.json).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        overwrite: bool = False,
        create: bool = True,
        resume: bool = False,
        offline_steps: int | None = None,
        wandb: str | None = None,
    ):
        self.path = Path(path)
        self.offline_steps = offline_steps
        self._lock = None
        self._tb = None
        self._wandb = wandb if create else None  # the W&B project (gfp/tracking.py)
        self._tracker: Tracker | None = None
        if self._wandb is not None:
            wandb_client()  # missing: one line, before anything is written
        if create:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise WriteError(
                    f"cannot create the run directory {self.path}: {os_reason(e)}"
                ) from e
            self._lock = _lock_run_dir(self.path)
            # A process killed while writing a checkpoint or another run file left its temp file
            # (up to a checkpoint's size); no other writer can be here now that we hold the lock.
            clean_stale_tmp(self.path, tuple(f".{name}." for name in RUN_FILES))
            clean_stale_tmp(self.path / REPLAY_DIR, (".seg-",))
        try:
            if create and not resume:
                self._refuse_or_clear(overwrite)
        except BaseException:
            self.close()
            raise
        self.metrics = CsvLog(self.path / "metrics.csv")
        self.evals = CsvLog(self.path / "eval.csv")
        self.purge_step: int | None = None  # TensorBoard drops events from this step on (resume)
        self.checkpoint_file: Path | None = None  # the file load_checkpoint() last used
        self._warned = False  # the fallback to the previous checkpoint is reported once
        # the replay segments the newest checkpoint on disk lists (this process wrote or loaded it)
        self._segments: list[dict[str, Any]] = []

    def _refuse_or_clear(self, overwrite: bool) -> None:
        """A new run: clear the directory's run files (overwrite) or refuse a directory that
        already holds a run."""
        if overwrite:
            ours, kept = self._gfp_files()
            for path in ours:
                try:
                    path.unlink(missing_ok=True)
                except OSError as e:
                    raise WriteError(f"--overwrite could not remove {path}: {os_reason(e)}") from e
            _remove_empty_dirs(self.path / TB_DIR)
            _remove_empty_dirs(self.path / REPLAY_DIR)
            if kept:
                print(
                    f"gfp: note: --overwrite kept {len(kept)} file{'s' if len(kept) > 1 else ''} "
                    f"gfp did not write: {', '.join(kept)}",
                    file=sys.stderr,
                )
        elif (self.path / "summary.json").exists():
            raise ConfigError(
                f"{self.path} holds a finished run; pass --overwrite to replace it or choose "
                "another --out"
            )
        elif (self.path / "config.json").exists():
            step = self.checkpoint_step()
            if step is not None:
                at = f"checkpoint at step {step}"
            elif any((self.path / n).exists() for n in (CHECKPOINT, PREV_CHECKPOINT)):
                at = "no checkpoint that verifies"
            else:
                at = "no checkpoint yet"
            raise ConfigError(
                f"{self.path} holds an unfinished run ({at}); continue it with "
                f"--resume {self.path}, or pass --overwrite to start over"
            )

    def _gfp_files(self) -> tuple[list[Path], list[str]]:
        """(the files of this directory that gfp wrote, the names of the others): gfp's are the
        run files (and their temp files), the videos of the policies its logs name
        (`<policy>.mp4`) and TensorBoard's event files under tb/; the lock stays."""
        names = set(RUN_FILES) | {f"{p}.mp4" for p in self._policies()}
        ours, kept = [], []
        for path in sorted(self.path.iterdir()):
            name = path.name
            if path.is_dir() and not path.is_symlink():
                if name in (TB_DIR, REPLAY_DIR):
                    mine = _TB_EVENTS if name == TB_DIR else (".seg-", "seg-")
                    for p in [p for p in sorted(path.rglob("*")) if not p.is_dir()]:
                        if p.name.startswith(mine):
                            ours.append(p)
                        else:
                            kept.append(str(p.relative_to(self.path)))
                else:
                    kept.append(f"{name}/")
            elif name == _LOCK:
                continue  # held by this process: the run goes on writing here
            elif name in names or (
                name.endswith(".tmp") and any(name.startswith(f".{n}.") for n in names)
            ):
                ours.append(path)
            else:
                kept.append(name)
        return ours, kept

    def _policies(self) -> set[str]:
        """The policies this directory's evaluations name (eval.csv's columns, `gfp eval`'s
        eval_final.json): each 'POLICY/metric'."""
        keys = list(CsvLog(self.path / "eval.csv").fields or [])
        try:
            final = json.loads((self.path / "eval_final.json").read_text())
            keys += list(final) if isinstance(final, dict) else []
        except (OSError, ValueError):
            pass
        return {k.split("/")[0] for k in keys if "/" in k}

    @property
    def tensorboard(self):
        if self._tb is None:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(
                str(self.path / TB_DIR), flush_secs=30, purge_step=self.purge_step
            )
        return self._tb

    @property
    def tracker(self) -> Tracker | None:
        """The run's W&B run (None without --wandb), started with config.json (a resumed run:
        at its first figure)."""
        if self._wandb is not None and self._tracker is None:
            self._tracker = Tracker(self._wandb, self.path, self.read_config())
        return self._tracker

    @property
    def finished(self) -> bool:
        return (self.path / "summary.json").exists()

    def _keyed(self, step: int, row: Mapping[str, float]) -> dict[str, Any]:
        """A log row's CSV form: step (and phase) first."""
        if self.offline_steps is None:
            return {"step": step, **row}
        return {"step": step, "phase": "online" if step > self.offline_steps else "offline", **row}

    def log_metrics(self, step: int, row: Mapping[str, float]) -> None:
        self.metrics.write(self._keyed(step, row))
        self.log_scalars(step, row)

    def log_eval(self, step: int, row: Mapping[str, float]) -> None:
        self.evals.write(self._keyed(step, row))
        self.log_scalars(step, {k: v for k, v in row.items() if k not in CSV_ONLY}, "eval/")
        self.tensorboard.flush()

    def log_scalars(self, step: int, row: Mapping[str, float], prefix: str = "") -> None:
        """`row`'s figures as TensorBoard scalars `prefix + key` at `step` (the CSVs keep every
        value). A NaN or inf is left out: a figure the task does not have (success on a
        return-scored task) or a diverged loss (the run stops on it), which TensorBoard can only
        plot as a gap and tensorboardX would warn about on every row."""
        figures = {prefix + k: v for k, v in row.items() if _finite(v)}
        for k, v in figures.items():
            self.tensorboard.add_scalar(k, v, step)
        if self.tracker is not None:
            self.tracker.log(step, figures)

    def log_videos(self, step: int, policies: Sequence[str]) -> None:
        """The `<policy>.mp4` files `--video` recorded, to the tracker (TensorBoard takes frames,
        not files: the videos stay files in the run directory)."""
        for policy in policies:
            path = self.path / f"{policy}.mp4"
            if self.tracker is not None and path.is_file():
                self.tracker.video(step, policy, path)

    def write_config(self, config: Mapping[str, Any]) -> None:
        if self._wandb is not None and self._tracker is None:
            # the W&B run, with this config; first, so that a run W&B refuses writes nothing
            self._tracker = Tracker(self._wandb, self.path, config)
        atomic_write_json(self.path / "config.json", config)

    def read_config(self) -> dict[str, Any]:
        return json.loads((self.path / "config.json").read_text())

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """summary.json, which marks the run finished; first the hyperparameters with the final
        figures for TensorBoard (`log_hparams`), so a kill in between writes them again."""
        self.log_hparams(summary)
        if self.tracker is not None:
            self.tracker.summary(summary)
        atomic_write_json(self.path / "summary.json", summary)

    def log_hparams(self, summary: Mapping[str, Any]) -> None:
        """The run's hyperparameters (`hparams_of` config.json) and its final figures (the
        summary's 'POLICY/metric_final', '..._last3', ...) for TensorBoard's HParams tab, which
        then compares the runs of a grid side by side: a session in tb/hparams/, the figures as
        its scalars 'final/...' at the last step. Written again (not twice) by a resumed run."""
        try:
            config = self.read_config()
        except (OSError, ValueError):
            return  # no config.json (a directory written by hand): nothing to describe
        figures = {f"final/{k}": float(v) for k, v in summary.items() if "/" in k and _finite(v)}
        step = int(summary.get("steps", 0)) + int(summary.get("online_steps", 0))
        for old in (self.path / TB_DIR / HPARAMS).glob(f"{_TB_EVENTS}*"):
            old.unlink()
        self.tensorboard.add_hparams(hparams_of(config), figures, name=HPARAMS, global_step=step)

    def read_summary(self) -> dict[str, Any]:
        return json.loads((self.path / "summary.json").read_text())

    def save_params(self, params: Any, name: str = PARAMS) -> None:
        """The final parameters (or, `name` = PARAMS_BEST, those of the best evaluation so far),
        behind the integrity header (`PARAMS_FILE`), written atomically."""
        payload = flax.serialization.msgpack_serialize(params)
        atomic_write_bytes(self.path / name, _seal(payload, PARAMS_FILE))

    def load_params(self, name: str = PARAMS) -> Any:
        """The final parameters (`name`: PARAMS_BEST for --select-by's), verified
        (`params_payload`); ConfigError naming the file if it cannot be trusted or decoded."""
        path = self.path / name
        payload = params_payload(path)
        try:
            return flax.serialization.msgpack_restore(payload)
        except Exception as e:  # verified, yet not a msgpack: written by something else
            raise ConfigError(f"{path} cannot be decoded as gfp parameters ({e})") from None

    # ---- checkpoints ----------------------------------------------------------------------------
    @property
    def replay_end(self) -> int | None:
        """The online rows the newest checkpoint's replay segments hold (the end of the last one),
        or None without segments (no online checkpoint yet, or one with its rows inside): the next
        segment then starts at the oldest row the buffer holds."""
        return int(self._segments[-1]["end"]) if self._segments else None

    def save_checkpoint(
        self, state: Any, meta: Mapping[str, Any], replay: ReplaySegment | None = None
    ) -> None:
        """Write `state` (a host pytree of arrays, e.g. from `flax.serialization.to_state_dict`)
        and `meta` as the newest checkpoint, after syncing the logs: the checkpoint records their
        lengths, so it never refers to rows that are not on disk. The newest checkpoint, if it
        still verifies, becomes the previous one; a damaged one is simply replaced. `replay`: the
        online rows added since the last checkpoint, written first as the segment
        `segment_name(step)`; the checkpoint lists it with the earlier segments it still needs,
        and segments no checkpoint lists any more are deleted after it."""
        self.tensorboard.flush()
        segments: list[dict[str, Any]] = []
        if replay is not None:
            segments = self._write_segment(int(meta["step"]), replay)
        meta = {
            **meta,
            "format": SEGMENTED_FORMAT if replay is not None else CHECKPOINT_FORMAT,
            "metrics_bytes": self.metrics.sync(),
            "eval_bytes": self.evals.sync(),
        }
        if replay is not None:
            meta["replay"] = {
                "segments": segments,
                "rows": [replay.keep_from, replay.end],
                "counters": dict(replay.counters),
            }
        payload = flax.serialization.msgpack_serialize(
            {"meta": json.dumps(meta, default=_jsonable), "state": state}
        )
        newest, prev = self.path / CHECKPOINT, self.path / PREV_CHECKPOINT
        kept_newest = False

        def keep_previous() -> None:
            nonlocal kept_newest
            if _checkpoint_problem(newest) is None:
                _replace_with_link(newest, prev)
                kept_newest = True

        atomic_write_bytes(newest, _seal(payload), before_replace=keep_previous)
        listed = {s["file"] for s in segments}
        if kept_newest:  # the previous checkpoint is the one whose segments we know
            self._remove_segments_but(listed | {s["file"] for s in self._segments})
        self._segments = segments

    def _write_segment(self, step: int, replay: ReplaySegment) -> list[dict[str, Any]]:
        """Write `replay` as the segment of the checkpoint at `step`; the segments that checkpoint
        lists: the earlier ones still holding a row from keep_from on, then this one."""
        name = segment_name(step)
        first = not (self.path / REPLAY_DIR).is_dir()
        seg_meta = {"step": step, "start": replay.start, "end": replay.end,
                    "counters": dict(replay.counters)}  # fmt: skip
        payload = flax.serialization.msgpack_serialize(
            {
                "meta": json.dumps(seg_meta),
                "rows": {k: np.asarray(v) for k, v in replay.rows.items()},
            }
        )
        blob = _seal(payload, SEGMENT_FILE)
        atomic_write_bytes(self.path / name, blob)
        if first:
            fsync_dir(self.path)  # the new replay/ folder itself
        earlier = [
            s for s in self._segments if int(s["end"]) > replay.keep_from and s["file"] != name
        ]
        entry = {"file": name, "sha256": hashlib.sha256(blob).hexdigest(),
                 "start": replay.start, "end": replay.end}  # fmt: skip
        return [*earlier, entry]

    def _remove_segments_but(self, listed: set[str]) -> None:
        """Delete the replay segments outside `listed` (their rows were overwritten, or a killed
        run wrote them after its last checkpoint); a file that cannot be removed stays."""
        folder = self.path / REPLAY_DIR
        for p in sorted(folder.glob("seg-*.msgpack")) if folder.is_dir() else []:
            if f"{REPLAY_DIR}/{p.name}" not in listed:
                with contextlib.suppress(OSError):
                    p.unlink()

    def load_checkpoint(self) -> tuple[Any, dict[str, Any]] | None:
        """(state dict, meta) of the newest checkpoint that verifies, or None if there is none.

        A newest checkpoint that fails its check (or is missing while a previous one exists: a kill
        between the two renames on a file system without hard links) is skipped with one warning
        on stderr; the previous one is used and `checkpoint_file` names it. DataError if no
        checkpoint can be trusted."""
        state, meta, path, problems = self._read_checkpoints()
        if problems and not self._warned and path is not None:
            self._warned = True
            print(
                f"gfp: {problems[0]}; resuming from the previous checkpoint {path} at step "
                f"{meta['step']}",
                file=sys.stderr,
            )
        if path is None and problems:
            raise DataError(
                f"no checkpoint in {self.path} can be trusted: {'; '.join(problems)}; start the "
                "run again with --overwrite"
            )
        self.checkpoint_file = path
        return None if path is None else (state, meta)

    def _read_checkpoints(self) -> tuple[Any, dict[str, Any], Path | None, list[str]]:
        """(state, meta, file) of the first checkpoint, newest then previous, that verifies
        (file None if none does), and what was wrong with the ones skipped."""
        newest, prev = self.path / CHECKPOINT, self.path / PREV_CHECKPOINT
        problems: list[str] = []
        for path in (newest, prev):
            if not path.exists():
                if path == newest and prev.exists():
                    problems.append(f"{path} is missing")
                continue
            try:
                state, meta = _open_checkpoint(path)
            except _Untrusted as e:
                problems.append(f"{path} {e}")
                continue
            self._segments = list(meta.get("replay", {}).get("segments", []))
            return state, meta, path, problems
        if problems and not prev.exists():
            problems.append("there is no previous checkpoint")
        return None, {}, None, problems

    def checkpoint_step(self) -> int | None:
        """Step of the newest checkpoint that verifies (None if there is none)."""
        _, meta, path, _ = self._read_checkpoints()
        return None if path is None else int(meta["step"])

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
        if self._tracker is not None:
            self._tracker.close()
            self._tracker = None
        if self._lock is not None:
            self._lock.close()  # releases the run-directory lock
            self._lock = None


def hparams_of(config: Mapping[str, Any]) -> dict[str, bool | int | float | str]:
    """A run's hyperparameters from its config.json: task, agent, preset, seed, steps (and
    online_steps, recorded for an online run) and every agent_config value, as TensorBoard
    takes them (numbers, booleans, texts; hidden sizes as '256x256'; unset values left out)."""
    agent = config.get("agent_config")
    values = {k: config[k] for k in RUN_HPARAMS if k in config}
    values |= agent if isinstance(agent, dict) else {}
    out: dict[str, bool | int | float | str] = {}
    for k, v in values.items():
        if isinstance(v, list | tuple):
            out[k] = "x".join(map(str, v))
        elif isinstance(v, bool | int | float | str):
            out[k] = v
    return out


def _finite(value: Any) -> bool:
    """A finite number (not a bool, text or NaN/inf)."""
    return (
        isinstance(value, int | float | np.number)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _remove_empty_dirs(root: Path) -> None:
    """Remove `root` and the folders under it that are left empty (a user's file keeps its
    folder)."""
    if not root.is_dir():
        return
    for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            d.rmdir()  # only succeeds when empty
    with contextlib.suppress(OSError):
        root.rmdir()


# ---- a checkpoint's state back in the agent's form --------------------------------------------
# The state is any pytree (an agent's TrainState): this module reads checkpoints without knowing
# the agents, so the checkpoint code stays below them.
State = TypeVar("State")


def restore_state(template: State, state_dict: Any, where: Path) -> State:
    """A checkpoint's state dict (from `RunDir.load_checkpoint`) as a pytree shaped like
    `template` (the agent's TrainState of one seed), as host arrays; DataError if it is not this
    agent's state."""
    try:
        state = flax.serialization.from_state_dict(template, state_dict)
    except (KeyError, ValueError, TypeError) as e:
        raise DataError(f"{where}: the checkpoint does not fit this agent ({e})") from e
    leaves = jax.tree.leaves(state)
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(template)[0], leaves, strict=True):
        b = np.asarray(b)
        if a.shape != b.shape or a.dtype != b.dtype:
            raise DataError(
                f"{where}: checkpoint array {jax.tree_util.keystr(path)} is {b.dtype}"
                f"{list(b.shape)}, the agent needs {a.dtype}{list(a.shape)}"
            )
    return jax.tree.map(np.asarray, state)


def stack_states(states: Sequence[State]) -> State:
    """The seeds' restored states stacked along a leading seed axis, on the device (the layout the
    vmapped training loop takes)."""
    return jax.tree.map(lambda *xs: jnp.asarray(np.stack(xs)), *states)
