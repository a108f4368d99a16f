"""File-system helpers shared by the run directory, dataset generation and evaluation workers:
atomic writes, directory fsync, readable OS error reasons, and worker processes that die with
their parent.

Standard library and NumPy only (plus gfp.errors, which is pure Python): evaluation and
data-generation worker processes import this module, and they must start without importing JAX.

An atomic write goes to a temp file in the target's directory, is fsynced, replaces the target
with os.replace and then fsyncs the directory, so a kill never leaves a half-written file and a
failed write (full disk, permissions, read-only file system) leaves the previous version intact;
it raises `WriteError` saying so. The temp file (which mkstemp creates 0600, whatever the umask)
gets the mode an ordinary `open(path, "w")` would give, 0o666 & ~umask (`file_mode`), so a shared
run directory or dataset stays readable by whoever the umask lets read it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from gfp.errors import WriteError


def os_reason(e: BaseException | None) -> str:
    """'[Errno 28] No space left on device' for an OSError, its text otherwise."""
    if e is None:
        return "unknown error"
    if not isinstance(e, OSError):
        return str(e) or type(e).__name__
    if e.errno is not None and e.strerror:
        return f"[Errno {e.errno}] {e.strerror}"
    return str(e) or type(e).__name__


def fsync_dir(path: str | Path) -> None:
    """Make a rename in `path` durable (best effort: not every file system lets a directory be
    opened or fsynced, and the rename itself has already happened)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_UMASK_LOCK = threading.Lock()
_fallback_umask: int | None = None  # read once where /proc is not there (see current_umask)


def current_umask() -> int:
    """The process's umask. Linux states it in /proc/self/status ('Umask:', since 4.7), which
    reads it without changing it; elsewhere it can only be read by setting it (os.umask), which
    for that moment gives every file another thread creates mode 0o666: so that swap is done
    once, under a lock, and its value kept."""
    global _fallback_umask
    with (
        contextlib.suppress(OSError, ValueError, IndexError),
        open("/proc/self/status", encoding="ascii", errors="replace") as f,
    ):
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _UMASK_LOCK:
        if _fallback_umask is None:
            _fallback_umask = os.umask(0o022)
            os.umask(_fallback_umask)
        return _fallback_umask


def file_mode() -> int:
    """The mode `open(path, "w")` gives a new file: 0o666 minus the umask's bits."""
    return 0o666 & ~current_umask()


def _atomic_write(
    path: str | Path,
    write: Callable[[IO[bytes]], None],
    before_replace: Callable[[], None] | None = None,
) -> None:
    """Call `write` on a temp file next to `path`, fsync it and move it into place. On failure the
    temp file is removed, `path` keeps its previous content and WriteError is raised.
    `before_replace` runs once the new content is safely on disk, just before it replaces `path`
    (a checkpoint keeps the old file as its previous one there)."""
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Dot-prefixed and ending in '.tmp' (never '.npz', '.json', ...), so a leftover after a
        # kill can't be mistaken for a real file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, file_mode())  # mkstemp's 0600, whatever the umask asks for
        except BaseException:
            os.close(fd)
            raise
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
        tmp = None
        fsync_dir(path.parent)
    except OSError as e:
        kept = "the previous version is intact" if path.exists() else "no file was written"
        raise WriteError(f"could not write {path}: {os_reason(e)}; {kept}") from e
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def clean_stale_tmp(directory: Path, prefixes: tuple[str, ...]) -> None:
    """Remove the temp files (named '.<target name>.<random>.tmp' by the writes above) that a
    killed writer left in `directory`, for targets whose names start the given prefixes. Only
    safe while holding the lock that keeps every other writer out of `directory`."""
    if not directory.is_dir():
        return
    for p in directory.iterdir():
        if p.name.startswith(prefixes) and p.name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                p.unlink()


def atomic_write_bytes(
    path: str | Path, data: bytes, *, before_replace: Callable[[], None] | None = None
) -> None:
    """Write `data` to `path` atomically (see the module docstring); WriteError on failure.
    `before_replace`: called after the data is on disk, before it replaces `path`."""
    _atomic_write(path, lambda f: f.write(data), before_replace)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write `obj` as indented JSON (NumPy values and paths allowed) to `path` atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_jsonable) + "\n").encode())


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic | np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def atomic_savez(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """np.savez_compressed `arrays` to `path` atomically; WriteError on failure."""
    _atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to kill this (worker) process when its parent dies, even by SIGKILL, so no
    worker is orphaned. Elsewhere prctl does not exist and this only checks the parent."""
    import ctypes
    import signal

    with contextlib.suppress(Exception):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
