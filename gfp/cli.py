"""The `gfp` command (typed with tyro): train, eval, data generate/info, presets.

Every agent hyperparameter is a flag of `gfp train` (built from the agents' Config dataclasses, with
their documentation as help). A flag left unset keeps the value of the preset/per-task table.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Union

import tyro

from gfp.agents import AGENTS
from gfp.errors import ConfigError, GfpError


def _agent_options_class() -> type:
    """A dataclass with one optional field per agent hyperparameter (union over all agents)."""
    fields: dict[str, tuple[Any, Any]] = {}
    for cls in AGENTS.values():
        helps = cls.Config.field_help()
        for f in dataclasses.fields(cls.Config):
            if f.name in fields:
                continue
            help_text = f"{helps[f.name]} [default: {f.default!r}, or the task's preset]"
            annotated = Annotated[Union[f.type, None], tyro.conf.arg(help=help_text)]  # noqa: UP007
            fields[f.name] = (annotated, dataclasses.field(default=None))
    return dataclasses.make_dataclass(
        "AgentOptions", [(name, t, d) for name, (t, d) in fields.items()]
    )


def _resolved_types(cls: type) -> None:
    # make_dataclass stores string annotations from `from __future__ import annotations` configs;
    # resolve them so tyro sees real types.
    import typing

    hints: dict[str, Any] = {}
    for agent in AGENTS.values():
        mod = sys.modules[agent.Config.__module__]
        hints |= typing.get_type_hints(agent.Config, globalns=vars(mod))
    for f in dataclasses.fields(cls):
        help_text = f.type.__metadata__[0].help if hasattr(f.type, "__metadata__") else ""
        f.type = Annotated[Union[hints[f.name], None], tyro.conf.arg(help=help_text)]  # noqa: UP007
        cls.__annotations__[f.name] = f.type


AgentOptions = _agent_options_class()
_resolved_types(AgentOptions)


@dataclasses.dataclass
class Train:
    """Train an agent. With no arguments: the built-in default job (GFP, cpu preset, on
    cube-single-noisy task1 from a small dataset generated and cached on first use)."""

    task: str | None = None
    """OGBench task (e.g. cube-double-noisy-singletask-task2-v0), D4RL/Minari id, or a dataset
    file. Unset: the built-in default job."""
    agent: str = "gfp"
    """Agent: one of gfp, fql, rebrac, iql, bc, flow_bc (those installed)."""
    steps: int | None = None
    """Gradient steps. Unset: the paper's budget (1M, 500K on D4RL/pixel) or 20K with --preset cpu."""
    seed: int = 0
    """Random seed."""
    seeds: str | None = None
    """Comma-separated seeds trained side by side (vmapped), one run directory each (OUT/seedS)."""
    out: Path | None = None
    """Run directory. Unset: runs/TASK/AGENT/seedS."""
    dataset_dir: Path | None = None
    """Where the dataset files live. Unset: OGBench's default directory (~/.ogbench/data), or the
    gfp cache (~/.cache/gfp/data, GFP_DATA_DIR) for the built-in default job."""
    preset: str | None = None
    """'paper' (the paper's sizes + per-task table) or 'cpu' (smaller networks/batch, same
    algorithm). Unset: paper, or cpu for the built-in default job."""
    eval_every: int | None = None
    """Evaluate every E steps (and at the end). Unset: 100K (paper) or steps/4 (cpu); 0 = only at
    the end."""
    eval_episodes: int = 50
    """Episodes per evaluation (the paper's final protocol uses 100)."""
    log_every: int = 1000
    """Average metrics over this many updates per log row (also the fused scan length)."""
    overwrite: bool = False
    """Replace a finished run in the run directory."""
    video: bool = False
    """Record one episode per policy to RUN_DIR/<policy>.mp4 at the end."""
    options: Annotated[AgentOptions, tyro.conf.arg(name="")] = dataclasses.field(  # type: ignore[valid-type]
        default_factory=AgentOptions
    )


@dataclasses.dataclass
class Eval:
    """Evaluate the final parameters of a run directory."""

    run_dir: tyro.conf.Positional[Path]
    episodes: int = 50
    """Episodes per policy."""
    seed: int = 0
    video: bool = False
    """Also record one episode per policy to RUN_DIR/<policy>.mp4."""


@dataclasses.dataclass
class Generate:
    """Generate an OGBench dataset offline with OGBench's own scripted oracles."""

    name: tyro.conf.Positional[str]
    """OGBench dataset name, e.g. cube-single-noisy-v0."""
    episodes: int = 1000
    """Training episodes (validation: episodes // 10, at least 1). Official: 1000."""
    out: Path = Path("data")
    """Output directory: writes OUT/NAME.npz and OUT/NAME-val.npz."""
    workers: int | None = None
    """Worker processes. Unset: all cores."""
    seed: int = 0
    episode_length: int = 1001
    """Rows per episode (official: 1001)."""


@dataclasses.dataclass
class Info:
    """Print sizes, dimensions, reward/mask statistics and episode returns of a dataset."""

    task_or_path: tyro.conf.Positional[str]
    dataset_dir: Path | None = None


@dataclasses.dataclass
class Data:
    """Datasets: generate offline, inspect."""

    command: Union[  # noqa: UP007
        Annotated[Generate, tyro.conf.subcommand("generate")],
        Annotated[Info, tyro.conf.subcommand("info")],
    ]


@dataclasses.dataclass
class Presets:
    """Print the resolved configuration for a task and the source of each value."""

    task: tyro.conf.Positional[str]
    agent: str = "gfp"
    preset: str = "paper"


Command = Union[  # noqa: UP007
    Annotated[Train, tyro.conf.subcommand("train")],
    Annotated[Eval, tyro.conf.subcommand("eval")],
    Annotated[Data, tyro.conf.subcommand("data")],
    Annotated[Presets, tyro.conf.subcommand("presets")],
]


def train_job(args: Train):
    """Validate the train arguments and resolve them into a TrainJob (before any compilation)."""
    from gfp import run

    default_job = args.task is None
    task = run.DEFAULT_TASK if default_job else args.task
    preset = args.preset or ("cpu" if default_job else "paper")
    if args.agent not in AGENTS:
        raise ConfigError(f"unknown agent {args.agent!r}; choose one of: {', '.join(AGENTS)}")
    overrides = {k: v for k, v in dataclasses.asdict(args.options).items() if v is not None}
    config, sources = run.resolve_config(args.agent, task, preset, overrides)
    steps = args.steps if args.steps is not None else (
        run.CPU_STEPS if preset == "cpu" else run.paper_steps(task)
    )
    if steps <= 0:
        raise ConfigError(f"--steps must be positive, got {steps}")
    eval_every = args.eval_every
    if eval_every is None:
        eval_every = steps // 4 if preset == "cpu" else min(100_000, steps)
    if eval_every < 0 or eval_every > steps:
        raise ConfigError(f"--eval-every {eval_every} must be between 0 and --steps {steps}")
    if args.log_every <= 0:
        raise ConfigError(f"--log-every must be positive, got {args.log_every}")
    seeds = [args.seed]
    if args.seeds:
        try:
            seeds = [int(s) for s in args.seeds.split(",")]
        except ValueError:
            raise ConfigError(f"--seeds must be comma-separated integers, got {args.seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"--seeds has duplicates: {args.seeds}")
    dataset_dir = args.dataset_dir
    if default_job and dataset_dir is None:
        dataset_dir = run.default_data_dir()
    out = args.out or Path("runs") / task / args.agent / (
        f"seed{seeds[0]}" if len(seeds) == 1 else "seeds"
    )
    job = run.TrainJob(
        task=task,
        agent=args.agent,
        config=config,
        sources=sources,
        steps=steps,
        seeds=seeds,
        out=out,
        dataset_dir=dataset_dir,
        preset=preset,
        eval_every=eval_every,
        eval_episodes=args.eval_episodes,
        log_every=args.log_every,
        overwrite=args.overwrite,
        video=args.video,
    )
    return job, default_job


def cmd_train(args: Train) -> None:
    from gfp import run

    job, default_job = train_job(args)
    if default_job:
        run.ensure_default_dataset(job.task, job.dataset_dir)
    summaries = run.run_training(job)
    for path, summary in zip(job.run_dirs(), summaries, strict=True):
        print(f"{path}: " + json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                        for k, v in summary.items()}))


def cmd_eval(args: Eval) -> None:
    from gfp import run

    agent, params, cfg = run.load_run(args.run_dir)
    env_name = cfg["dataset"]["env_name"]
    if not env_name:
        raise ConfigError(f"{args.run_dir}: the dataset names no environment to evaluate in")
    row = run.evaluate_policies(
        agent, params, env_name, episodes=args.episodes, seed=args.seed,
        video_dir=args.run_dir if args.video else None,
    )
    from gfp.rundir import atomic_write_json

    atomic_write_json(Path(args.run_dir) / "eval_final.json", row)
    for k, v in row.items():
        print(f"{k:32s} {v:.4f}")


def cmd_data(args: Data) -> None:
    if isinstance(args.command, Generate):
        from gfp.data.generate import generate

        c = args.command
        paths = generate(c.name, c.episodes, c.out, workers=c.workers, seed=c.seed,
                         episode_length=c.episode_length)
        print("\n".join(str(p) for p in paths))
    else:
        from gfp.data.info import dataset_info

        print(dataset_info(args.command.task_or_path, args.command.dataset_dir))


def cmd_presets(args: Presets) -> None:
    from gfp.presets import format_presets

    print(format_presets(args.agent, args.task, args.preset))


def main(argv: list[str] | None = None) -> None:
    args = tyro.cli(
        Command,
        args=argv,
        prog="gfp",
        description=__doc__.splitlines()[0],
        config=(tyro.conf.OmitSubcommandPrefixes, tyro.conf.OmitArgPrefixes),
    )
    handlers = {Train: cmd_train, Eval: cmd_eval, Data: cmd_data, Presets: cmd_presets}
    try:
        handlers[type(args)](args)
    except GfpError as e:
        print(f"gfp: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
