"""Where a sweep stands, from its files alone: what `gfp sweep status SWEEP_DIR` prints and what
the running sweep shows as its progress line.

Each run sweep.json lists is, by its run directory:
* done: summary.json exists;
* failed: failed.json (its one-line error);
* running: a worker announced itself there (.worker.json) and is alive: the same pid with the
  same start time on this host; on another host, a worker file or metrics row written in the last
  `REMOTE_ALIVE_S` seconds;
* pending: anything else, including a stopped run that the next sweep resumes.
Progress is the step of a run's last metrics.csv row; the rate is the sum over running runs of
their last logged updates per second (per seed, so a run of 8 vmapped seeds counts 8 updates per
step); the ETA is the updates left over that rate. The rate excludes evaluation time, so the ETA
leans optimistic. The latest evaluation is the last row of the most recently written eval.csv
among done and running runs: its first policy's success (the deployed one-step actor for GFP and
FQL; the return where the task has no success). This module imports neither JAX nor Ray.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import socket
import time
from pathlib import Path
from typing import Any

from gfp.sweep.plan import FAILED, WORKER, read_json, read_sweep_file

STATES = ("done", "running", "failed", "pending")
REMOTE_ALIVE_S = 1800.0
_RATE = "time/updates_per_s"


@dataclasses.dataclass(frozen=True)
class LastEval:
    """A run's last evaluation: when eval.csv was written, its step, the figure shown."""

    mtime: float
    step: int
    policy: str
    metric: str
    value: float
    run: str = ""  # the run directory, relative to the sweep folder (set by Scanner)


@dataclasses.dataclass
class RunStatus:
    path: Path
    entry: dict[str, Any]
    state: str
    step: int = 0
    rate: float = 0.0
    error: str = ""
    where: str = ""  # host:pid of a running run
    last_eval: LastEval | None = None

    @property
    def total(self) -> int:
        return int(self.entry.get("steps") or 0)


def _last_row(path: Path) -> dict[str, str]:
    """The last complete row of a CSV log (reading its header and its tail only); {} if none."""
    try:
        with path.open("rb") as f:
            header = f.readline().decode(errors="replace")
            size = f.seek(0, os.SEEK_END)
            f.seek(max(len(header), size - 8192))
            tail = f.read().decode(errors="replace")
    except OSError:
        return {}
    lines = [x for x in tail.split("\n")[:-1] if x]  # the last piece may be half a row
    if not header.strip() or not lines:
        return {}
    return next(csv.DictReader(io.StringIO(header + lines[-1] + "\n")), None) or {}


def last_metrics(path: Path) -> tuple[int, float]:
    """(step, updates per second) of the last complete row of a metrics.csv; (0, 0) if none."""
    row = _last_row(path)
    try:
        return int(float(row.get("step") or 0)), float(row.get(_RATE) or 0.0)
    except ValueError:
        return 0, 0.0


def last_eval(path: Path) -> LastEval | None:
    """The last complete row of an eval.csv as a LastEval (module docstring); None if none."""
    row = _last_row(path)
    try:
        mtime, step = path.stat().st_mtime, int(float(row.get("step") or 0))
    except (OSError, ValueError):
        return None
    policies = [c.rpartition("/")[0] for c in row if c.endswith(("/success", "/return"))]
    for metric in ("success", "return"):
        for policy in dict.fromkeys(policies):
            try:
                value = float(row.get(f"{policy}/{metric}") or "nan")
            except ValueError:
                continue
            if math.isfinite(value):
                return LastEval(mtime, step, policy, metric, value)
    return None


def _worker_alive(info: dict[str, Any] | None, files: list[Path]) -> bool:
    if not info:
        return False
    if info.get("host") == socket.gethostname():
        from gfp.sweep.worker import _proc_start

        pid, started = info.get("pid"), info.get("proc_start")
        return isinstance(pid, int) and started is not None and _proc_start(pid) == started
    newest = max((p.stat().st_mtime for p in files if p.exists()), default=0.0)
    return time.time() - newest < REMOTE_ALIVE_S


def run_status(path: Path, entry: dict[str, Any]) -> RunStatus:
    if (path / "summary.json").is_file():
        steps = int(entry.get("steps") or 0)
        return RunStatus(path, entry, "done", step=steps, last_eval=last_eval(path / "eval.csv"))
    try:
        failed = read_json(path / FAILED)
    except Exception:  # a damaged marker still marks a failed run
        failed = {"error": f"{path / FAILED} is damaged"}
    step, rate = last_metrics(path / "metrics.csv")
    if failed is not None:
        return RunStatus(path, entry, "failed", step=step, error=str(failed.get("error", "")))
    try:
        info = read_json(path / WORKER)
    except Exception:
        info = None
    if _worker_alive(info, [path / WORKER, path / "metrics.csv"]):
        where = f"{info.get('host')}:{info.get('pid')}"
        evaluated = last_eval(path / "eval.csv")
        return RunStatus(path, entry, "running", step, rate, where=where, last_eval=evaluated)
    return RunStatus(path, entry, "pending", step=step)


@dataclasses.dataclass
class Snapshot:
    runs: list[RunStatus]
    counts: dict[str, int]
    updates_per_s: float
    updates_left: int
    eta_s: float | None
    last_eval: LastEval | None = None  # the newest evaluation of a done or running run


class Scanner:
    """Reads a sweep's run directories; done and failed runs are read once (they stay so while a
    sweep runs), so refreshing a large sweep stays cheap."""

    def __init__(self, sweep_dir: Path | str):
        self.sweep_dir = Path(sweep_dir)
        self.final: dict[str, RunStatus] = {}

    def scan(self) -> Snapshot:
        entries = read_sweep_file(self.sweep_dir)["runs"]
        runs = []
        for rel, entry in sorted(entries.items()):
            st = self.final.get(rel) or run_status(self.sweep_dir / rel, entry)
            if st.state in ("done", "failed"):
                self.final[rel] = st
            runs.append(st)
        counts = {s: sum(r.state == s for r in runs) for s in STATES}
        rate = sum(r.rate for r in runs if r.state == "running")
        left = sum(max(r.total - r.step, 0) for r in runs if r.state in ("running", "pending"))
        eta = left / rate if rate > 0 else (0.0 if left == 0 else None)
        evals = [
            dataclasses.replace(r.last_eval, run=rel)
            for (rel, _), r in zip(sorted(entries.items()), runs, strict=True)
            if r.last_eval is not None and r.state in ("done", "running")
        ]
        newest = max(evals, key=lambda e: (e.mtime, e.run), default=None)
        return Snapshot(runs, counts, rate, left, eta, newest)

    def forget(self, rel: str) -> None:
        self.final.pop(rel, None)


def _duration(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    if s >= 86400:
        return f"{s // 86400}d{s % 86400 // 3600:02d}h"
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s"


def _rate(x: float) -> str:
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"


def format_line(snap: Snapshot) -> str:
    """'12/48 done, 4 running, 1 failed, 31 pending | 5.2k updates/s | ETA 1h23m', then the latest
    evaluation where there is one: ' | last eval: actor success 0.40 at step 20000 (RUN)'."""
    c = snap.counts
    total = sum(c.values())
    line = (
        f"{c['done']}/{total} done, {c['running']} running, {c['failed']} failed, "
        f"{c['pending']} pending | {_rate(snap.updates_per_s)} updates/s | "
        f"ETA {_duration(snap.eta_s)}"
    )
    e = snap.last_eval
    if e is not None:
        line += f" | last eval: {e.policy} {e.metric} {e.value:.3g} at step {e.step} ({e.run})"
    return line


def format_status(sweep_dir: Path | str) -> str:
    """What `gfp sweep status` prints: the progress line, the driver (gfp/sweep/lock.py), then the
    running runs (step of steps,
    where), the stopped ones (pending, with a step logged) and the failed ones with their
    errors."""
    from gfp.sweep.lock import describe, holder_alive, read_lock

    snap = Scanner(sweep_dir).scan()
    lines = [f"{sweep_dir}: {format_line(snap)}"]
    driver = read_lock(sweep_dir)  # read, never taken: status works while a driver runs
    if driver and holder_alive(driver) is not False:
        lines.append(f"driven by {describe(driver)}: {driver.get('command', '')}")
    root = Path(sweep_dir)
    running = [r for r in snap.runs if r.state == "running"]
    if running:
        lines.append("running:")
        lines += [
            f"  {r.path.relative_to(root)}  step {r.step}/{r.total}  {_rate(r.rate)}/s  {r.where}"
            for r in running
        ]
    stopped = [r for r in snap.runs if r.state == "pending" and r.step > 0]
    if stopped:
        lines.append("stopped (the same gfp sweep command resumes them from their checkpoints):")
        lines += [f"  {r.path.relative_to(root)}  step {r.step}/{r.total}" for r in stopped]
    failed = [r for r in snap.runs if r.state == "failed"]
    if failed:
        lines.append("failed:")
        lines += [f"  {r.path.relative_to(root)}: {r.error}" for r in failed]
    return "\n".join(lines)
