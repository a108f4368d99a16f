"""Timed windows that record the machine's load beside the wall time, and the interleaving of
cases so that a drift of that load hits every case alike."""

from __future__ import annotations

import dataclasses
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any


def log(msg: str) -> None:
    """Progress goes to stderr, so `gfp bench --json` prints only the JSON object on stdout."""
    print(f"[gfp bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


_TICK = os.sysconf("SC_CLK_TCK")


def _system_busy_seconds() -> float:
    """CPU-seconds all processes have used since boot (/proc/stat: everything but idle/iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / _TICK


def own_cpu_seconds() -> float:
    """CPU-seconds of this process, its reaped children and its live descendants (workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = time.process_time() + children.ru_utime + children.ru_stime
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry)
        parent[pid] = int(rest[1])
        cpu[pid] = (int(rest[11]) + int(rest[12])) / _TICK
    me = os.getpid()
    for pid in cpu:
        p, seen = parent.get(pid), 0
        while p and p != me and seen < 64:
            p, seen = parent.get(p), seen + 1
        if p == me:
            own += cpu[pid]
    return own


@dataclasses.dataclass
class Window:
    """One timed window: wall seconds, our CPU-seconds, other processes' load (cores) and the
    1-minute load average at its end."""

    wall: float
    cpu: float
    foreign: float
    load1: float


def timed(fn: Callable[[], Any]) -> tuple[Any, Window]:
    """Run fn() (which must block until its work is done) in a measured window."""
    busy0, own0 = _system_busy_seconds(), own_cpu_seconds()
    t0 = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    own = own_cpu_seconds() - own0
    foreign = max(0.0, (_system_busy_seconds() - busy0 - own) / wall)
    return out, Window(wall, own, foreign, os.getloadavg()[0])


def interleave(
    cases: dict[str, Callable[[], Any]],
    reps: int,
    block: int = 1,
    outputs: dict[str, Any] | None = None,
) -> dict[str, list[Window]]:
    """Run every case `reps` times, interleaved A B B A A B ... so a drift of the machine's load
    hits every case alike; returns the windows of each case.

    `block` consecutive cases (in the order of `cases`) always run together and in their order,
    e.g. a cold run and then the warm rerun that reuses its state. `outputs`, if given, receives
    the last output of each case.
    """
    names = list(cases)
    blocks = [names[i : i + block] for i in range(0, len(names), block)]
    windows: dict[str, list[Window]] = {n: [] for n in names}
    for r in range(reps):
        for group in blocks if r % 2 == 0 else blocks[::-1]:
            for name in group:
                out, window = timed(cases[name])
                windows[name].append(window)
                if outputs is not None:
                    outputs[name] = out
    return windows


def summary(windows: Sequence[Window], per: float = 1.0) -> dict[str, Any]:
    """Median wall and CPU seconds (divided by `per`, e.g. updates), all walls, and the load."""
    walls = [w.wall / per for w in windows]
    return {
        "wall_s": statistics.median(walls),
        "cpu_s": statistics.median(w.cpu / per for w in windows),
        "walls_s": [round(x, 6) for x in walls],
        "foreign_cores": round(statistics.median(w.foreign for w in windows), 2),
        "loadavg1": round(statistics.median(w.load1 for w in windows), 2),
    }
