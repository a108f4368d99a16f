"""One driver per sweep folder: `gfp sweep` and `gfp tune` hold SWEEP_DIR's lock while they plan
and run, so that a second driver on the same folder is refused instead of taking the first one's
running runs for stopped ones (and marking them failed, or training them twice).

Two files: `.driver.json` names the holder (host, pid, the process's start time, since when, the
command), written atomically (gfp.io), read by the refusal message and by `gfp sweep status`
(which never takes the lock); `.driver.flock` is held with fcntl.flock for as long as the driver
runs, so a live holder on the same host is certain (the OS drops the flock when the process dies,
even by SIGKILL). The flock file is never replaced or removed: a lock on a replaced file would
lock nothing.

Taking the lock: if the flock is held, the holder is alive: refused. Otherwise a `.driver.json`
left behind names a driver that is gone when it was on this host and its pid is not alive or now
belongs to a process started at another time: taken over with a one-line notice. One on another
host cannot be checked from here (its flock may not reach across machines): refused unless
`break_lock`.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from gfp.errors import ConfigError, DataError
from gfp.io import atomic_write_json
from gfp.sweep.plan import read_json

LOCK = ".driver.json"
FLOCK = ".driver.flock"


def proc_start(pid: int) -> str | None:
    """The start time of process `pid` (clock ticks since boot; None if there is no such process),
    which tells a live process from a later one that reuses its pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def read_lock(sweep_dir: Path | str) -> dict[str, Any] | None:
    """Who `.driver.json` says drives the folder; None if nobody (or the file is unreadable)."""
    try:
        return read_json(Path(sweep_dir) / LOCK)
    except DataError:
        return None


def holder_alive(info: dict[str, Any]) -> bool | None:
    """Whether the driver `info` names still runs: True/False on this host, None elsewhere."""
    if info.get("host") != socket.gethostname():
        return None
    pid, started = info.get("pid"), info.get("proc_start")
    return isinstance(pid, int) and started is not None and proc_start(pid) == started


def describe(info: dict[str, Any] | None) -> str:
    if not info:
        return "another process"
    return f"pid {info.get('pid')} on {info.get('host')} since {info.get('started')}"


def _refuse(sweep_dir: Path, info: dict[str, Any] | None, hint: str = "") -> ConfigError:
    return ConfigError(
        f"{sweep_dir} is being driven by {describe(info)}; watch it with gfp sweep status "
        f"{sweep_dir}{hint}"
    )


@contextlib.contextmanager
def driver_lock(
    sweep_dir: Path | str,
    *,
    break_lock: bool = False,
    command: str = "gfp sweep",
    log: Callable[[str], None] = print,
) -> Iterator[None]:
    """Hold SWEEP_DIR's driver lock for the `with` block (module docstring); ConfigError in one
    line naming the holder if another driver has it. Creates the folder."""
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    try:
        f: IO[str] = (sweep_dir / FLOCK).open("a")
    except OSError as e:
        raise ConfigError(f"{sweep_dir}: cannot create the driver lock ({e.strerror or e})") from e
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _refuse(sweep_dir, read_lock(sweep_dir)) from None
        old = read_lock(sweep_dir)
        if old:
            alive = holder_alive(old)
            if alive is True or (alive is None and not break_lock):
                hint = "" if alive else ", or --break-lock if that driver is gone"
                raise _refuse(sweep_dir, old, hint)
            why = "--break-lock" if alive is None else "no longer running"
            log(f"taking over {sweep_dir} from the driver {describe(old)} ({why})")
        pid = os.getpid()
        me = {
            "host": socket.gethostname(),
            "pid": pid,
            "proc_start": proc_start(pid),
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": command,
        }
        atomic_write_json(sweep_dir / LOCK, me)
        try:
            yield
        finally:
            if read_lock(sweep_dir) == me:
                with contextlib.suppress(OSError):
                    (sweep_dir / LOCK).unlink()
    finally:
        f.close()  # releases the flock
