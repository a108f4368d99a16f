"""Experiments at scale: `gfp sweep` runs tasks x agents x seeds x hyperparameter grids on Ray
(local by default, or a cluster), resumable, into one folder whose results.csv gathers every
evaluation; `gfp tune` is the paper's tuning protocol built on it.

    spec.py      what to run: command-line flags or a TOML file -> blocks (no JAX, no Ray)
    plan.py      blocks -> validated TrainJobs with stable run directories, reconciled with what
                 the folder holds (finished runs skipped, unfinished ones resumed); sweep.json
    datasets.py  every dataset checked (or generated) once, in the driver, before any run starts
    lock.py      one driver per sweep folder (a lock file naming it, and flock)
    resources.py what a run asks Ray for: CPUs, GPUs, a memory estimate, retries
    worker.py    the body of one Ray task: one configuration, its seeds vmapped, in one process
    executor.py  Ray: resources, retries, progress, Ctrl-C, results.csv
    status.py    where a sweep stands, from its files (`gfp sweep status`)
    tune.py      `gfp tune ENV`: alpha sweep at eta 1e-3, then eta, scored over the env's tasks
    command.py   the command-line front ends

Python API: `run_sweep(spec, out, Options(...))` with a `SweepSpec` (or `load_spec(path)`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from gfp.sweep.executor import Options, Outcome, RunsFailed, execute, import_ray
from gfp.sweep.lock import driver_lock
from gfp.sweep.plan import make_plan
from gfp.sweep.spec import Block, SweepSpec, load_spec

__all__ = ["Block", "Options", "Outcome", "RunsFailed", "SweepSpec", "load_spec", "run_sweep"]


def run_sweep(
    spec: SweepSpec,
    out: Path | str,
    opts: Options | None = None,
    *,
    retry_failed: bool = False,
    command: str = "gfp sweep (Python API)",
) -> Outcome:
    """Plan `spec` into `out` (every job validated before anything is written or started) and run
    what is left of it, holding the folder's driver lock (gfp/sweep/lock.py: a second driver is
    refused); see gfp/sweep/executor.py."""
    import_ray()  # say which extra to install before any work
    opts = opts or Options()
    make_plan(
        spec, out, retry_failed=retry_failed
    )  # every job validated before anything is written
    with driver_lock(out, break_lock=opts.break_lock, command=command, log=_note):
        plan = make_plan(spec, out, retry_failed=retry_failed)  # again: the folder is ours now
        return execute(plan, opts, command)


def _note(text: str) -> None:
    print(f"gfp sweep: {text}", file=sys.stderr, flush=True)
