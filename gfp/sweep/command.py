"""The `gfp sweep` and `gfp tune` commands: their arguments (tyro dataclasses, which gfp/cli.py
puts in its command union) and handlers. Importing this module is cheap: no JAX, no Ray."""

from __future__ import annotations

import dataclasses
import shlex
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import tyro

from gfp import settings as run_settings
from gfp.errors import ConfigError, Interrupted


@dataclasses.dataclass
class RunOptions:
    """Dataset generation and Ray resources shared by `gfp sweep` and `gfp tune` (their run
    settings, the flags of gfp train's, are added from gfp/settings.py: `sweep_command`)."""

    generate_episodes: int | None = None
    """Episodes of an OGBench dataset the sweep generates because it is missing. Unset: the
    official size."""
    address: str | None = None
    """Ray cluster: 'auto' (this machine is in a cluster) or 'ray://HOST:PORT'. Unset: a local
    Ray with this machine's CPUs, nothing to set up."""
    cpus_per_run: float = 1.0
    """CPUs per run (one configuration, its seeds vmapped); its threads are kept to them."""
    gpus_per_run: float = 0.0
    """GPUs per run; a fraction (0.25) packs several runs onto one GPU."""
    max_retries: int = 3
    """Times a run whose worker process died (SIGKILL, killed by Ray's memory monitor for lack of
    memory, a lost node) is started again (Ray's max_retries); it resumes from its last
    checkpoint. Errors are not retried: they are the run's failed.json."""
    memory_per_run: float | None = None
    """GiB of memory each run declares to Ray, so that a node receives no more runs than fit.
    Unset: estimated from its dataset, networks, replay buffer and seeds
    (gfp/sweep/resources.py)."""
    pin_cpus: bool = True
    """Pin each run's process to CPUs of its own (with a whole number of --cpus-per-run)."""
    break_lock: bool = False
    """Take the sweep folder over from the driver its lock names even if that one may still run
    (on another host; see gfp/sweep/lock.py). A lock of a driver that is gone on this host is
    taken over without it."""


def _options(r: RunOptions) -> Any:
    from gfp.sweep.executor import Options

    return Options(
        address=r.address,
        cpus_per_run=r.cpus_per_run,
        gpus_per_run=r.gpus_per_run,
        max_retries=r.max_retries,
        pin_cpus=r.pin_cpus,
        generate_episodes=r.generate_episodes,
        memory_per_run=r.memory_per_run,
        break_lock=r.break_lock,
    )


def _settings(args: Any) -> dict[str, Any]:
    """The run settings given as flags (not given: None, the spec's value holds)."""
    return {k: v for k, v in run_settings.flag_values(args.settings).items() if v is not None}


def _grid(items: tuple[str, ...]) -> dict[str, list[str]]:
    from gfp.sweep.spec import parse_grid_arg

    grid: dict[str, list[str]] = {}
    for text in items:
        key, values = parse_grid_arg(text)
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice")
        grid[key] = values
    return grid


def _command() -> str:
    return "gfp " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "gfp"


@dataclasses.dataclass
class Sweep:
    """Run tasks x agents x seeds x a hyperparameter grid on Ray (local by default), resumable,
    into one folder with a results.csv. `gfp sweep SPEC.toml --out DIR` reads the same fields from
    a file (see gfp/sweep/spec.py); `gfp sweep status DIR` says where a sweep stands. The same
    command again skips finished runs and resumes unfinished ones."""

    args: tyro.conf.Positional[tuple[str, ...]] = ()
    """SPEC.toml, or `status SWEEP_DIR`."""
    tasks: str | None = None
    """Comma list of tasks, environments (cube-double-noisy: its 5 tasks) and suites
    (ogbench-manipulation, ogbench-locomotion, ogbench-noisy, ogbench-visual, d4rl, minari,
    paper)."""
    agents: str | None = None
    """Comma list of agents (gfp, fql, rebrac, iql, bc, flow_bc)."""
    seeds: str | None = None
    """Seeds, e.g. 0,1,2 or 0-7; a run trains all of them side by side (vmapped)."""
    grid: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """KEY=V1,V2,... (repeatable): an agent hyperparameter and its values; AGENT.KEY scopes it
    to one agent, e.g. --grid gfp.alpha=0.3,1,3. A single value fixes a setting."""
    out: Path | None = None
    """The sweep folder (on storage every node sees, on a cluster)."""
    retry_failed: bool = False
    """Run failed runs again (from their last checkpoint where they have one)."""
    run: Annotated[RunOptions, tyro.conf.arg(name="")] = dataclasses.field(
        default_factory=RunOptions
    )


@dataclasses.dataclass
class Tune:
    """The paper's tuning protocol for one environment: alpha over a log grid with eta at 1e-3,
    then eta at the best alpha, on tuning seeds, scored by the mean over the environment's tasks
    of the last three evaluations; the winner is written as a user preset (`--preset tuned`)."""

    env: tyro.conf.Positional[str]
    """An environment, e.g. cube-double-noisy (its five tasks) or pen-human."""
    agent: str = "gfp"
    seeds: str = "100-103"
    """Tuning seeds (never the evaluation seeds 0-7)."""
    alphas: str = "10,3,1,0.3,0.1,0.03,0.01"
    """The alpha grid (phase 1, eta fixed at 1e-3)."""
    etas: str = "1,0.1,0.01,1e-3,1e-4,1e-5,1e-6"
    """The eta grid (phase 2, at the best alpha; agents without eta skip it)."""
    tasks: str | None = None
    """A subset of the environment's tasks (e.g. to try the protocol quickly). Unset: all."""
    grid: Annotated[tuple[str, ...], tyro.conf.UseAppendAction] = ()
    """KEY=VALUE settings held fixed while tuning, e.g. --grid actor_hidden_dims=256x256."""
    out: Path | None = None
    """The tuning folder. Unset: tune/ENV/AGENT."""
    name: str = "tuned"
    """The preset name the winner is written under."""
    presets_file: Path | None = None
    """The user presets table to write. Unset: $GFP_PRESETS or ~/.config/gfp/presets.csv."""
    run: Annotated[RunOptions, tyro.conf.arg(name="")] = dataclasses.field(
        default_factory=RunOptions
    )


def sweep_command() -> type:
    """`gfp sweep`'s arguments: Sweep's, and a flag per run setting (not given: None)."""
    return run_settings.with_flags(Sweep, unset=True)


def tune_command() -> type:
    """`gfp tune`'s arguments: Tune's, and a flag per run setting (not given: None)."""
    return run_settings.with_flags(Tune, unset=True)


def _floats(text: str, flag: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{flag} must be comma-separated numbers, got {text!r}") from None


def cmd_sweep(args: Sweep) -> None:
    from gfp.sweep.status import format_status

    if args.args[:1] == ("status",):
        if len(args.args) != 2:
            raise ConfigError("usage: gfp sweep status SWEEP_DIR")
        print(format_status(Path(args.args[1])))
        return
    if len(args.args) > 1:
        raise ConfigError(f"expected one SPEC.toml (or `status DIR`), got {' '.join(args.args)}")
    if args.out is None:
        raise ConfigError("gfp sweep needs --out SWEEP_DIR (the folder the runs are written to)")
    from gfp.sweep import import_ray, run_sweep
    from gfp.sweep.spec import SweepSpec, block_from_fields, load_spec

    import_ray()  # say which extra to install before any work
    fields: dict[str, Any] = {
        k: v for k in ("tasks", "agents", "seeds") if (v := getattr(args, k)) is not None
    }
    fields |= _settings(args)
    if args.grid:
        fields["grid"] = _grid(args.grid)
    if args.args:
        spec = load_spec(args.args[0], **fields)
    else:
        spec = SweepSpec([block_from_fields(fields, "gfp sweep")])
    try:
        outcome = run_sweep(
            spec, args.out, _options(args.run), retry_failed=args.retry_failed, command=_command()
        )
    except KeyboardInterrupt:  # before the runs started (planning, datasets, starting Ray)
        raise Interrupted("sweep stopped before its runs started", signal.SIGINT) from None
    _report(outcome, args.out)


def _report(outcome: Any, out: Path) -> None:
    from gfp.sweep import RunsFailed

    c = outcome.counts
    total = sum(c.values())
    print(f"gfp sweep: {out}: {c['done']}/{total} runs done, {c['failed']} failed; results in "
          f"{out / 'results.csv'} ({outcome.wall_s:.0f} s)")  # fmt: skip
    if outcome.interrupted:
        raise Interrupted(
            f"sweep stopped: running runs wrote a checkpoint; the same command continues ({out})",
            signal.SIGINT,
        )
    if c["failed"]:
        raise RunsFailed(
            f"{c['failed']} of {total} runs failed; their errors: gfp sweep status {out}"
        )


def cmd_tune(args: Tune) -> None:
    from gfp.presets import user_presets_path
    from gfp.sweep import import_ray
    from gfp.sweep.spec import block_from_fields
    from gfp.sweep.tune import env_tasks, run_tune

    import_ray()
    _, tasks = env_tasks(args.env, args.tasks.split(",") if args.tasks else None)
    fields: dict[str, Any] = {"tasks": tasks, "agents": [args.agent], "seeds": args.seeds}
    fields |= _settings(args) | {"grid": _grid(args.grid)}
    block = block_from_fields(fields, "gfp tune")
    out = args.out or Path("tune") / args.env / args.agent
    run_tune(
        args.env,
        args.agent,
        block,
        _options(args.run),
        out=out,
        alphas=_floats(args.alphas, "--alphas"),
        etas=_floats(args.etas, "--etas"),
        presets_file=args.presets_file or user_presets_path(),
        name=args.name,
        command=_command(),
    )
