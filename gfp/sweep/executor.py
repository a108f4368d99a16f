"""Running a plan on Ray: local by default (Ray started in this process with this machine's CPUs),
or on a cluster (`address='auto'` or 'ray://HOST:PORT').

One Ray task per unit (gfp/sweep/worker.py), with the CPUs and GPUs of `Options` and its memory
estimate as its resources (gfp/sweep/resources.py) so that Ray packs runs onto machines, in a
fresh worker process (max_calls=1) whose environment limits its threads to its CPUs. A worker
that dies (SIGKILL, Ray's out-of-memory kill, a lost node) is retried up to `max_retries` times
and the retry resumes from the run's checkpoint. The driver shows progress from the run
directories, and on Ctrl-C cancels the tasks gently (`ray.cancel`, which interrupts a task like
SIGINT: the run writes a checkpoint and stops); a second Ctrl-C stops at once (runs then resume
from their last checkpoint). results.csv is rebuilt from the run directories at the end, whatever
happened.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from gfp.errors import ConfigError, GfpError
from gfp.sweep.plan import FAILED, Plan, Unit, read_seed_dir, read_sweep_file, write_sweep_file
from gfp.sweep.resources import GIB, estimate_memory, remote_options
from gfp.sweep.status import Scanner, format_line


class RunsFailed(GfpError):
    """Some runs of a sweep failed (each run's error is in its failed.json)."""

    exit_code = 1


@dataclasses.dataclass
class Options:
    address: str | None = None  # None: a local Ray started here; 'auto' or 'ray://HOST:PORT'
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    max_retries: int = 3
    pin_cpus: bool = True  # each run's process keeps to CPUs of its own (see worker.claim_cpus)
    generate_episodes: int | None = None  # size of generated datasets (None: official)
    memory_per_run: float | None = None  # GiB a run declares to Ray (None: estimate_memory)
    break_lock: bool = False  # take over the sweep folder from its driver (gfp/sweep/lock.py)
    num_cpus: int | None = None  # a local Ray's CPUs (None: this machine's)
    progress: bool = True
    refresh_s: float = 2.0

    def __post_init__(self) -> None:
        if not self.cpus_per_run > 0:
            raise ConfigError(f"--cpus-per-run {self.cpus_per_run} must be > 0")
        if not self.gpus_per_run >= 0:
            raise ConfigError(f"--gpus-per-run {self.gpus_per_run} must be >= 0")
        if self.gpus_per_run > 1 and not float(self.gpus_per_run).is_integer():
            raise ConfigError(
                f"--gpus-per-run {self.gpus_per_run}: more than one GPU must be a whole number"
            )
        if self.memory_per_run is not None and not self.memory_per_run > 0:
            raise ConfigError(f"--memory-per-run {self.memory_per_run} must be > 0 (GiB)")
        if not (isinstance(self.max_retries, int) and self.max_retries >= 0):
            raise ConfigError(f"--max-retries {self.max_retries} must be an integer >= 0")


@dataclasses.dataclass
class Outcome:
    counts: dict[str, int]  # done / running / failed / pending over every run of the folder
    failed: dict[str, str]  # run directory -> error, for runs that failed in this invocation
    interrupted: bool
    tasks: int  # Ray tasks submitted
    wall_s: float
    ray_start_s: float = 0.0  # time to start (or connect to) Ray


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "gfp sweep runs on Ray, which is not installed: pip install 'gfp[sweep]'"
        ) from None
    return ray


def connect(ray: Any, opts: Options) -> bool:
    """Start or join Ray; True if this call started it (and so shuts it down)."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if opts.address is None:
        kwargs |= {"num_cpus": opts.num_cpus or os.cpu_count(), "include_dashboard": False}
        # Ray's own default for a local cluster (token authentication on), said explicitly: Ray
        # prints a warning into the sweep's output when the mode is left unset.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    else:
        kwargs["address"] = opts.address
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = opts.address or "a local Ray"
        raise ConfigError(f"cannot start or reach Ray ({where}): {e}") from None
    return True


@contextlib.contextmanager
def ray_session(opts: Options):
    """Ray started (or joined) for several sweeps in a row (`gfp tune`'s phases); each `execute`
    inside finds it running and leaves it up."""
    ray = import_ray()
    started = connect(ray, opts)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _path_exists(path: str, token: str | None = None) -> tuple[bool, str]:
    """On a node: whether `path` exists there (and, given `token`, is a file holding it)."""
    import socket

    if token is None:
        return os.path.exists(path), socket.gethostname()
    try:
        with open(path) as f:
            return f.read() == token, socket.gethostname()
    except OSError:
        return False, socket.gethostname()


def invisible_nodes(ray: Any, path: Path, token: str | None = None) -> list[str]:
    """The alive nodes of the cluster on which `path` does not exist (or, given `token`, is not
    a file holding that text), each as 'ADDRESS (HOST)'; one task per node, pinned to it."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0, max_retries=0)(_path_exists)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    refs = [
        probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(str(path), token)
        for n in nodes
    ]
    found = ray.get(refs, timeout=300)
    return [
        f"{n.get('NodeManagerAddress')} ({host})"
        for n, (ok, host) in zip(nodes, found, strict=True)
        if not ok
    ]


def check_shared_storage(ray: Any, sweep_dir: Path) -> None:
    """On a cluster every node must see the sweep folder (the runs write there, the driver reads
    there): a marker file the driver writes into it, with a random token, must be found with that
    token by a task on every alive node, else ConfigError naming the nodes that cannot see it.
    Runs before any run is submitted."""
    token = f"gfp sweep storage probe {secrets.token_hex(8)}\n"
    probe = sweep_dir.resolve() / f".probe-{secrets.token_hex(6)}"
    probe.write_text(token)
    try:
        missing = invisible_nodes(ray, probe, token)
    finally:
        probe.unlink(missing_ok=True)
    if missing:
        raise ConfigError(
            f"the sweep folder {sweep_dir.resolve()} is not visible from node(s) "
            f"{', '.join(missing)}: on a cluster --out must be on storage every node sees (a "
            "shared file system mounted at the same path), as must the datasets"
        )


def unit_memory(unit: Unit, opts: Options, sweep_dir: Path) -> int:
    """The memory a unit's task declares: --memory-per-run, else the estimate from its dataset's
    recorded size (gfp/sweep/resources.py)."""
    if opts.memory_per_run is not None:
        return int(opts.memory_per_run * GIB)
    from gfp.sweep.datasets import dataset_size

    size = dataset_size(unit.job, sweep_dir)
    return estimate_memory(unit.job, size, gpu=opts.gpus_per_run > 0)


def check_memory_fits(ray: Any, memory: int) -> None:
    """ConfigError if no alive node offers `memory` bytes of Ray's memory resource (Ray would keep
    such a task pending for ever)."""
    offered = [n.get("Resources", {}).get("memory", 0.0) for n in ray.nodes() if n.get("Alive")]
    if offered and memory > max(offered):
        raise ConfigError(
            f"a run needs about {memory / GIB:.1f} GiB of memory (its dataset, networks and "
            f"replay buffer; gfp/sweep/resources.py) and the largest node offers "
            f"{max(offered) / GIB:.1f} GiB: use nodes with more memory, fewer seeds per run, or "
            "set --memory-per-run"
        )


def write_results(sweep_dir: Path) -> int:
    """Rebuild SWEEP_DIR/results.csv from the run directories (atomically); returns its rows."""
    from gfp.results import build_results, write_results_csv

    keys = read_sweep_file(sweep_dir).get("grid_keys") or []
    rows = build_results(sweep_dir, keys)
    write_results_csv(sweep_dir / "results.csv", rows)
    return len(rows)


class _Display:
    """The progress line: redrawn in place on a terminal, a plain line now and then otherwise."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.last = 0.0

    def show(self, line: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            sys.stderr.write(f"\r\x1b[Kgfp sweep: {line}")
            sys.stderr.flush()
        elif force or now - self.last >= 60:
            print(f"gfp sweep: {line}", file=sys.stderr, flush=True)
        self.last = now

    def note(self, text: str) -> None:
        if self.tty:
            sys.stderr.write("\r\x1b[K")
        print(f"gfp sweep: {text}", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


@contextlib.contextmanager
def _sigint_counter():
    """Count SIGINTs instead of raising KeyboardInterrupt (main thread only)."""
    hits = {"n": 0}
    if threading.current_thread() is not threading.main_thread():
        yield hits
        return

    def handler(signum: int, frame: Any) -> None:
        hits["n"] += 1

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield hits
    finally:
        signal.signal(signal.SIGINT, old)


def _fail_unfinished(unit: Unit, error: str) -> dict[str, str]:
    """failed.json for the unit's seeds that neither finished nor failed (the worker died more
    often than it may be retried)."""
    from gfp.sweep.worker import write_failed

    out = {}
    for seed in unit.job.seeds:
        d = read_seed_dir(unit.config_dir / f"seed{seed}")
        if not d.finished and d.failed is None:
            write_failed(d.path, error)
            out[str(d.path)] = error
    return out


def execute(plan: Plan, opts: Options, command: str = "gfp sweep") -> Outcome:
    """Run what is left of `plan` (module docstring); returns the Outcome. Records the plan in
    sweep.json first, checks the datasets, then trains; results.csv is rebuilt at the end."""
    t0 = time.perf_counter()
    sweep_dir = plan.sweep_dir
    ray = import_ray() if plan.units else None
    write_sweep_file(plan, command)
    display = _Display(opts.progress)
    scanner = Scanner(sweep_dir)
    snap = scanner.scan()
    to_run = sum(len(u.job.seeds) for u in plan.units)
    display.note(
        f"{len(plan.runs)} runs in {sweep_dir} ({snap.counts['done']} done, "
        f"{snap.counts['failed']} failed before); {to_run} to train as {len(plan.units)} Ray "
        f"task(s) of {opts.cpus_per_run:g} CPU"
        + (f" + {opts.gpus_per_run:g} GPU" if opts.gpus_per_run else "")
        + " each"
    )
    if not plan.units:
        write_results(sweep_dir)
        return Outcome(snap.counts, {}, False, 0, time.perf_counter() - t0)
    from gfp.sweep.datasets import prepare_datasets

    prepare_datasets([u.job for u in plan.units], sweep_dir, episodes=opts.generate_episodes,
                     log=display.note)  # fmt: skip
    for unit in plan.units:  # --retry-failed: the worker decides how to restart these
        for path in unit.clear:
            (path / FAILED).unlink(missing_ok=True)
            scanner.forget(path.relative_to(sweep_dir).as_posix())
    t_ray = time.perf_counter()
    started = connect(ray, opts)
    ray_start_s = time.perf_counter() - t_ray
    failed: dict[str, str] = {}
    interrupted = False
    try:
        if opts.address is not None:
            check_shared_storage(ray, sweep_dir)
        from gfp.sweep.worker import run_unit

        memory = {id(u): unit_memory(u, opts, sweep_dir) for u in plan.units}
        check_memory_fits(ray, max(memory.values()))
        remote = ray.remote(max_calls=1)(run_unit)
        pending = {
            remote.options(**remote_options(opts, sweep_dir, memory[id(u)])).remote(
                u.job, str(u.config_dir), opts.cpus_per_run, opts.pin_cpus
            ): u
            for u in plan.units
        }
        with _sigint_counter() as hits:
            cancelled, next_draw = False, 0.0
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
                for ref in ready:
                    failed |= _collect(ray, ref, pending.pop(ref), opts, display)
                if hits["n"] and not cancelled:
                    cancelled = interrupted = True
                    display.note(
                        "stopping: running runs write a checkpoint and stop (Ctrl-C again to "
                        "stop at once; they then resume from their last checkpoint)"
                    )
                    for ref in pending:
                        ray.cancel(ref, force=False)
                if hits["n"] >= 2:
                    for ref in pending:
                        ray.cancel(ref, force=True)
                    break
                if time.monotonic() >= next_draw:
                    t_scan = time.monotonic()
                    display.show(format_line(scanner.scan()))
                    # a large sweep on a slow file system: scanning takes at most a tenth of it
                    spent = time.monotonic() - t_scan
                    every = opts.refresh_s if display.tty else 60.0
                    next_draw = time.monotonic() + max(every, 10 * spent)
    finally:
        if started:
            ray.shutdown()
        snap = scanner.scan()
        display.show(format_line(snap), force=True)
        display.done()
        write_results(sweep_dir)
    interrupted = interrupted and snap.counts["done"] + snap.counts["failed"] < len(snap.runs)
    return Outcome(
        snap.counts, failed, interrupted, len(plan.units), time.perf_counter() - t0, ray_start_s
    )


def _collect(ray: Any, ref: Any, unit: Unit, opts: Options, display: _Display) -> dict[str, str]:
    """A finished task's result; the runs that failed in it (path -> error)."""
    try:
        result = ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        return {}
    except ray.exceptions.RayTaskError as e:  # an error outside run_unit's own handling
        cause = getattr(e, "cause", None) or e
        error = " ".join(f"{type(cause).__name__}: {cause}".split())[:500]
        display.note(f"failed: {unit.name}: {error}")
        return _fail_unfinished(unit, error)
    except ray.exceptions.RayError as e:  # the worker died more often than it may be retried
        first = (str(e).strip().splitlines() or [""])[0]
        error = (
            f"the worker process died {opts.max_retries + 1} time(s); last: "
            f"{type(e).__name__}: {first}"
        )
        display.note(f"failed: {unit.name}: {error}")
        return _fail_unfinished(unit, error)
    failed = {str(unit.config_dir / f"seed{s}"): err for s, err in result["failed"].items()}
    for path, err in failed.items():
        display.note(f"failed: {path}: {err}")
    return failed
