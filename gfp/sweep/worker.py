"""The body of one Ray task: train one unit (one configuration, its seeds vmapped) in this process.

It runs in a fresh worker process (the task is submitted with max_calls=1), so that what it sets
before importing JAX holds: the CPUs it may use (an affinity mask over CPUs it claims on this
machine, so that XLA's and the evaluation pool's thread counts follow the CPUs Ray granted) and
the thread-count variables of its runtime environment.

What it trains is decided from the files, not from the submitted job alone, so that a retry after
the process was killed (SIGKILL, out of memory, a lost node) continues where the run is: seeds
that have a config.json resume from their checkpoints (bit-identical to an uninterrupted run on
CPU); seeds that have none start. A failure a retry cannot fix is written to the seed's
failed.json (its one-line error) and the task returns normally, so Ray does not retry it:

* DivergenceError: that seed is failed; the unit's other seeds start again without it (their
  checkpoints belong to the vmapped group with the diverged seed, so they cannot resume alone);
* ConfigError, DataError, WriteError and any unexpected exception: every seed of the unit;
* Interrupted (SIGINT/SIGTERM, or `ray.cancel` from a sweep stopped with Ctrl-C): the training
  loop checkpointed first; the task reports 'interrupted' and the next sweep resumes it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import json
import os
import socket
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import IO, Any

from gfp.errors import DivergenceError, GfpError, Interrupted
from gfp.io import atomic_write_json
from gfp.job import TrainJob, job_from_record
from gfp.sweep.lock import proc_start as _proc_start
from gfp.sweep.plan import FAILED, WORKER, out_for, read_seed_dir

_CLAIMS: list[IO[str]] = []  # CPU claim locks, held until the process exits


def claim_cpus(n: int) -> list[int] | None:
    """Pin this process to `n` CPUs no other gfp worker on this machine holds (a lock file per
    CPU, released by the OS when the process dies, even by SIGKILL). None (no pinning) if `n`
    covers the machine or that many CPUs are not free (more runs than CPUs)."""
    allowed = sorted(os.sched_getaffinity(0))
    if n >= len(allowed):
        return None
    lock_dir = Path(tempfile.gettempdir()) / f"gfp-cpu-claims-{os.getuid()}"
    lock_dir.mkdir(exist_ok=True)
    got: list[int] = []
    files: list[IO[str]] = []
    for cpu in allowed:
        f = (lock_dir / f"cpu{cpu}.lock").open("a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            continue
        got.append(cpu)
        files.append(f)
        if len(got) == n:
            break
    if len(got) < n:
        for f in files:
            f.close()
        return None
    os.sched_setaffinity(0, got)
    _CLAIMS.extend(files)
    return got


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def write_failed(run_dir: Path, error: BaseException | str, **extra: Any) -> None:
    """failed.json: the one-line error of a run that a retry cannot fix."""
    text = str(error) if isinstance(error, str) else _one_line(error)
    kind = "error" if isinstance(error, str) else type(error).__name__
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        run_dir / FAILED,
        {"error": text, "kind": kind, "time": _now(), "host": socket.gethostname(), **extra},
    )


def _one_line(e: BaseException) -> str:
    text = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
    return text if isinstance(e, GfpError) else f"{type(e).__name__}: {text}"


def _ray_node() -> str | None:
    """The Ray node this process runs on (None outside a Ray worker)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # an older Ray, or none: the node is only informative
        return None


def _wait_for_previous(job: TrainJob, timeout_s: float = 300.0) -> None:
    """Wait until no other live process on this host is announced in the job's run directories:
    a worker of a driver that was killed (SIGKILL) is stopped by Ray shortly after, and this run
    must not start on its files before then (the run directory's lock would refuse it). Waits for
    those processes to exit, at most `timeout_s`; on other hosts nothing can be checked."""
    deadline = time.monotonic() + timeout_s
    for d in job.run_dirs():
        try:
            info = json.loads((d / WORKER).read_text())
        except (OSError, ValueError):
            continue
        pid = info.get("pid") if info.get("host") == socket.gethostname() else None
        if not isinstance(pid, int) or pid == os.getpid() or info.get("proc_start") is None:
            continue
        while _proc_start(pid) == info["proc_start"] and time.monotonic() < deadline:
            print(f"[{_now()}] waiting for pid {pid}, which still holds {d}", flush=True)
            time.sleep(1.0)


@contextlib.contextmanager
def _announced(job: TrainJob):
    """.worker.json in each run directory while this process trains it (what `gfp sweep status`
    reads to tell a running run from a stopped one): host, pid, start time, Ray node."""
    pid = os.getpid()
    info = {"host": socket.gethostname(), "pid": pid, "proc_start": _proc_start(pid)}
    info |= {"node": _ray_node(), "started": _now()}
    for d in job.run_dirs():
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_json(d / WORKER, info)
    try:
        yield
    finally:
        for d in job.run_dirs():
            with contextlib.suppress(OSError):
                (d / WORKER).unlink()


def _job_now(job: TrainJob, config_dir: Path) -> TrainJob | None:
    """The job to run given the files (module docstring): the unit's seeds that have not failed,
    resumed if their runs exist, new otherwise; None if nothing is left."""
    dirs = {s: read_seed_dir(config_dir / f"seed{s}") for s in job.seeds}
    seeds = [s for s, d in dirs.items() if d.failed is None]
    if not seeds or all(dirs[s].finished for s in seeds):
        return None
    records = [dirs[s] for s in seeds if dirs[s].record is not None]
    out = out_for(config_dir, seeds)
    if records and all(r.record.get("seeds") == seeds for r in records):
        d = records[0]
        resumed = job_from_record(d.record, d.path / "config.json", out, progress=False)
        resumed.dataset_dir = job.dataset_dir or resumed.dataset_dir
        return resumed
    # New, or the group changed (a seed diverged after these runs started): start them afresh.
    overwrite = bool(records)
    return dataclasses.replace(
        job, seeds=seeds, out=out, resume=False, recorded=None, overwrite=overwrite, progress=False
    )


def _redirect_output(path: Path) -> None:
    """This process's stdout/stderr (Python's and the C libraries') into the unit's log file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def run_unit(job: TrainJob, config_dir: str, cpus: float = 1.0, pin: bool = True) -> dict:
    """Train a unit to the end (module docstring). Returns {'status': 'done' | 'failed' |
    'interrupted' | 'skipped', 'failed': {seed: error}}; raises nothing a retry could not fix."""
    config_dir = Path(config_dir)
    _redirect_output(config_dir / "worker.log")
    pinned = claim_cpus(int(cpus)) if pin and cpus >= 1 and float(cpus).is_integer() else None
    failed: dict[int, str] = {}
    print(f"[{_now()}] gfp sweep worker pid {os.getpid()} on {socket.gethostname()}, CPUs "
          f"{pinned if pinned else 'not pinned'}: {job.task} {job.agent} seeds {job.seeds}",
          flush=True)  # fmt: skip
    while True:
        try:
            now = _job_now(job, config_dir)
        except GfpError as e:  # a damaged config.json: nothing a retry changes
            for s in job.seeds:
                write_failed(config_dir / f"seed{s}", e)
                failed[s] = _one_line(e)
            return {"status": "failed", "failed": failed}
        if now is None:
            return {"status": "failed" if failed else "done", "failed": failed}
        print(f"[{_now()}] {'resuming' if now.resume else 'starting'} seeds {now.seeds}",
              flush=True)  # fmt: skip
        _wait_for_previous(now)
        try:
            with _announced(now):
                from gfp.run import run_training  # JAX: imported after the CPUs are pinned

                run_training(now)
        except DivergenceError as e:
            seed = now.seeds[e.seed_index]
            write_failed(config_dir / f"seed{seed}", e, step=e.step)
            failed[seed] = _one_line(e)
            print(f"[{_now()}] seed {seed} diverged: {_one_line(e)}", flush=True)
            continue  # the other seeds again, without it
        except (Interrupted, KeyboardInterrupt) as e:
            print(f"[{_now()}] interrupted: {e}", flush=True)
            return {"status": "interrupted", "failed": failed}
        except Exception as e:  # ConfigError, DataError, WriteError or a bug: a retry won't fix it
            traceback.print_exc()
            for s in now.seeds:
                write_failed(config_dir / f"seed{s}", e)
                failed[s] = _one_line(e)
            return {"status": "failed", "failed": failed}
        print(f"[{_now()}] finished seeds {now.seeds}", flush=True)
        return {"status": "failed" if failed else "done", "failed": failed}
