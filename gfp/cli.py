"""gfp: Guided Flow Policy for offline RL. Train, evaluate, sweep, report and export policies.

Every agent hyperparameter is a flag of `gfp train` (built from the agents' Config dataclasses, with
their documentation as help). A flag left unset keeps the value of the preset/per-task table. Every
run setting is a flag too (built from the run settings' schema, gfp/settings.py), of `gfp train`
and of `gfp sweep` / `gfp tune`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Annotated, Any, Union

import tyro

from gfp import settings as run_settings
from gfp.agents.configs import CONFIGS
from gfp.errors import ConfigError, GfpError, Interrupted
from gfp.report.command import ReportCommand
from gfp.sweep.command import Sweep, Tune, cmd_sweep, cmd_tune, sweep_command, tune_command


def _agent_options_class() -> type:
    """A dataclass with one optional field per agent hyperparameter (the union over all agents).

    The help of each flag is the option's documentation plus each agent's default, since agents
    that share a name may differ in default (e.g. normalize_q_loss: gfp True, fql False).
    """
    import typing

    types: dict[str, Any] = {}
    helps: dict[str, str] = {}
    defaults: dict[str, list[str]] = {}
    for name, config in CONFIGS.items():
        hints = typing.get_type_hints(config)
        field_help = config.field_help()
        for f in dataclasses.fields(config):
            types.setdefault(f.name, hints[f.name])
            helps.setdefault(f.name, field_help[f.name])
            defaults.setdefault(f.name, []).append(f"{name} {f.default!r}")
    fields = []
    for key, typ in types.items():
        text = f"{helps[key]} [default: {', '.join(defaults[key])}; or the task's preset]"
        annotated = Annotated[Union[typ, None], tyro.conf.arg(help=text)]  # noqa: UP007
        fields.append((key, annotated, dataclasses.field(default=None)))
    return dataclasses.make_dataclass("AgentOptions", fields)


AgentOptions = _agent_options_class()


@dataclasses.dataclass
class Train:
    """Train an agent. With no arguments: the built-in default job (GFP, cpu preset, on
    cube-single-noisy task1 from a small dataset generated and cached on first use)."""

    task: str | None = None
    """OGBench task (e.g. cube-double-noisy-singletask-task2-v0), D4RL/Minari id, or a dataset
    file. Unset: the built-in default job."""
    agent: str = "gfp"
    """Agent: one of gfp, fql, rebrac, iql, bc, flow_bc (those installed)."""
    seed: int | None = None
    """Random seed, 0 to 2**31 - 1. Unset: 0."""
    seeds: str | None = None
    """Comma-separated seeds trained side by side (vmapped), one run directory each (OUT/seedS);
    instead of --seed."""
    out: Path | None = None
    """Run directory. Unset: runs/TASK/AGENT/seedS."""
    resume: Path | None = None
    """Continue the run in this directory (the --out of a killed or stopped run, the parent of the
    seedS folders for --seeds) from its checkpoints, with the settings in its config.json. Other
    flags must agree with them (only --dataset-dir and --video may change)."""
    overwrite: bool = False
    """Replace the run (finished or not) in the run directory."""
    video: bool = False
    """Record one episode per policy to RUN_DIR/<policy>.mp4 at the end."""
    json: bool = False
    """Print each run's summary (summary.json's keys) as one JSON line, RUN_DIR: {...}, instead of
    the table of scores."""
    # `settings` (one flag per run setting: --steps, --eval-every, ...) and `options` (one per
    # agent hyperparameter) are added by `train_command`.


def train_command() -> type:
    """`gfp train`'s arguments: Train's, a flag per run setting (gfp/settings.py), and one per
    agent hyperparameter (AgentOptions)."""
    options = Annotated[AgentOptions, tyro.conf.arg(name="")]  # type: ignore[valid-type]
    field = dataclasses.field(default_factory=AgentOptions)
    return run_settings.with_flags(Train, then=[("options", options, field)])


@dataclasses.dataclass
class Eval:
    """Evaluate the final parameters of a run directory, or of every seed of a multi-seed run
    (the parent of its seedS folders): a table per seed and the mean."""

    run_dir: tyro.conf.Positional[Path]
    episodes: int = 50
    """Episodes per policy."""
    seed: int = 0
    """Evaluation seed, 0 to 2**31 - 1: episode i starts from seed + i."""
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
    episode_length: int | None = None
    """Rows per episode. Unset: the official length (1001; pointmaze stitch 201, giant 2001)."""
    overwrite: bool = False
    """Replace an existing OUT/NAME.npz (and its -val file); without it an existing dataset is
    refused before any work. Finished episodes of a killed or interrupted run are always reused."""
    shard_size: int | None = None
    """Write a folder of shards of at most this many rows each, whole episodes per shard, in the
    layout of OGBench's 100M datasets (OUT/BASE-SIZE-v0/NAME-000.npz, ..., NAME-000-val.npz;
    docs: gfp/data/sharded.py). Unset: one file."""


@dataclasses.dataclass
class Info:
    """Print sizes, dimensions, reward/mask statistics and episode returns of a dataset."""

    task_or_path: tyro.conf.Positional[str]
    dataset_dir: Path | None = None
    obs_keys: str | None = None
    """LeRobot datasets: the features that make the observation, as gfp train's --obs-keys."""
    reward: str | None = None
    """LeRobot datasets: where the rewards come from, as gfp train's --reward (a column, or the
    rule success, success:COLUMN or episode-end); the report shows what it produced."""


# tyro takes a field's docstring, or else the comments next to it, as its help text: lint
# comments never go on or beside a field.
@dataclasses.dataclass
class Data:
    """Datasets: generate offline, inspect."""

    command: (
        Annotated[Generate, tyro.conf.subcommand("generate")]
        | Annotated[Info, tyro.conf.subcommand("info")]
    )
    """Generate a dataset, or describe one."""


@dataclasses.dataclass
class Presets:
    """Print the resolved configuration for a task and the source of each value."""

    task: tyro.conf.Positional[str]
    agent: str = "gfp"
    preset: str = "paper"


@dataclasses.dataclass
class Bench:
    """Run the speed benchmark suite (training, evaluation, data generation, memory; see
    BENCHMARKS.md) and print the figures against their targets."""

    quick: bool = False
    """A run of a few minutes: fewer repetitions and updates, 20 evaluation episodes."""
    json: bool = False
    """Print one JSON object (every figure, the machine, versions, load) instead of the report."""
    out: Path | None = None
    """Also write the JSON object to this file."""


@dataclasses.dataclass
class Export:
    """Export a run's policy for deployment: ONNX (run it with `gfp.deploy.load_policy`, numpy and
    onnxruntime only) or serialized StableHLO (`jax.export.deserialize`), with a JSON sidecar."""

    run_dir: tyro.conf.Positional[Path]
    out: Path
    """The model file to write (its sidecar: FILE.json)."""
    policy: str = "actor"
    """The policy: actor (one network call) or the flow (vabc for GFP, flow for FQL)."""
    format: str = "onnx"
    """onnx or stablehlo."""
    batch: str = "dynamic"
    """A fixed batch size N, or dynamic."""
    deterministic: bool = False
    """Bake the noise z = 0 into the model (otherwise z, batch x action_dim, is an input)."""
    opset: str = "auto"
    """ONNX opset: auto (the lowest the policy's graph needs, for the oldest onnxruntime) or N."""
    overwrite: bool = False
    """Replace an existing FILE and FILE.json (never the run's own files)."""


@dataclasses.dataclass
class Ope:
    """Off-policy evaluation of a finished run's policy from data alone: fitted Q evaluation
    (FQE) of the policy on the run's dataset, its value from the evaluation episodes' initial
    states and a 95% bootstrap interval over those episodes; a table, and RUN_DIR/ope.json."""

    run_dir: tyro.conf.Positional[Path]
    policy: str = "actor"
    """The policy evaluated: actor (the one-step actor) or the flow (vabc for GFP, flow for FQL)."""
    fit_on: str = "val"
    """The transitions FQE fits on: val (the evaluation split's), train (the run's training data)
    or all (both). The initial states are always the first states of the evaluation split's
    episodes."""
    val_episodes: float | None = None
    """The evaluation split: N whole episodes (or a fraction 0 < f < 1 of them) held out of the
    training data as gfp train's --val-episodes holds them out; 0: the dataset's own validation
    file (OGBench's -val.npz). Unset: the run's own --val-episodes (0 unless it had one)."""
    dataset_dir: Path | None = None
    """Where the run's dataset is now (unset: the run's own dataset_dir)."""
    steps: int = 20_000
    """FQE gradient steps."""
    batch_size: int = 256
    """FQE minibatch size."""
    hidden_dims: tuple[int, ...] = (256, 256)
    """Hidden layer sizes of FQE's Q network (2 members, LayerNorm, GELU)."""
    lr: float = 3e-4
    """FQE's Adam learning rate."""
    gamma: float | None = None
    """Discount (unset: the run's agent config gamma)."""
    tau: float = 0.005
    """Polyak rate of FQE's target network."""
    seed: int = 0
    """Seed of FQE's initialisation, minibatches, policy noise and bootstrap."""
    bootstrap: int = 1000
    """Bootstrap resamples of the evaluation episodes for the 95% interval."""
    policy_samples: int = 4
    """Noise draws of pi(s') per transition, drawn once before the fit."""


def cmd_ope(args: Ope) -> None:
    from gfp.ope import Evaluation, FQEConfig, format_result, run_ope

    folder = Path(args.run_dir)
    options = {f.name: getattr(args, f.name) for f in dataclasses.fields(FQEConfig)
               if hasattr(args, f.name)}  # fmt: skip
    config = FQEConfig(**options)
    config.check()
    ev = Evaluation(folder, args.policy, args.fit_on, args.val_episodes, args.dataset_dir)
    result = run_ope(ev, config)
    print(format_result(result), flush=True)


def cmd_export(args: Export) -> None:
    from gfp.export import cli_main

    batch: int | str = int(args.batch) if args.batch.isdigit() else args.batch
    opset = None if args.opset == "auto" else args.opset
    cli_main(
        args.run_dir,
        args.policy,
        args.format,
        args.out,
        batch,
        args.deterministic,
        opset=opset,
        overwrite=args.overwrite,
    )


def cmd_report(args: ReportCommand) -> None:
    code = args.run()
    if code:
        raise SystemExit(code)


def commands() -> Any:
    """The subcommands, with the run settings' flags of the schema now (gfp/settings.py)."""
    return Union[  # noqa: UP007
        Annotated[train_command(), tyro.conf.subcommand("train")],
        Annotated[Eval, tyro.conf.subcommand("eval")],
        Annotated[Data, tyro.conf.subcommand("data")],
        Annotated[Presets, tyro.conf.subcommand("presets")],
        Annotated[Bench, tyro.conf.subcommand("bench")],
        Annotated[sweep_command(), tyro.conf.subcommand("sweep")],
        Annotated[tune_command(), tyro.conf.subcommand("tune")],
        Annotated[ReportCommand, tyro.conf.subcommand("report")],
        Annotated[Export, tyro.conf.subcommand("export")],
        Annotated[Ope, tyro.conf.subcommand("ope")],
    ]


def check_seed(flag: str, seed: int) -> None:
    from gfp.job import MAX_SEED

    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{flag} {seed} is out of range: seeds are 0 to 2**31 - 1 ({MAX_SEED})")


def _seeds(args: Train) -> list[int]:
    """The seeds of --seed or --seeds (not both), each in range."""
    if args.seeds is None:
        seed = 0 if args.seed is None else args.seed
        check_seed("--seed", seed)
        return [seed]
    if args.seed is not None:
        raise ConfigError(
            f"--seed {args.seed} and --seeds {args.seeds} exclude each other: give the seeds "
            "in --seeds alone"
        )
    if not args.seeds.strip():
        raise ConfigError("--seeds is empty: give comma-separated seeds, e.g. --seeds 0,1,2")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
    for seed in seeds:
        check_seed("--seeds", seed)
    return seeds


def _overrides(args: Train) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(args.options).items() if v is not None}


def train_job(args: Train):
    """The TrainJob of the arguments (validated by the job itself, before any compilation), and
    whether it is the built-in default job."""
    from gfp.job import make_train_job

    seeds = _seeds(args)  # checked on --resume too: a bad value is refused before the comparison
    if args.resume is not None:
        return resume_job(args), False
    job = make_train_job(
        args.task,
        args.agent,
        overrides=_overrides(args),
        seeds=seeds,
        out=args.out,
        overwrite=args.overwrite,
        video=args.video,
        **run_settings.flag_values(args.settings),
    )
    return job, args.task is None


def resume_job(args: Train):
    """The TrainJob of the run in args.resume, from its config.json (validated as a new job);
    every other flag that is set (differs from its default) must agree with the recorded setting,
    except --video and the settings that are not run-defining (--dataset-dir: the data may have
    moved; a checksum makes sure it is the same data), which the resumed run takes."""
    from gfp.job import job_from_record
    from gfp.results import read_run_config

    root = Path(args.resume)
    path = root / "config.json"
    if not path.is_file():
        found = sorted(root.glob("seed*/config.json"))
        if not found:
            why = "it has no config.json" if root.is_dir() else "it does not exist"
            raise ConfigError(f"--resume {root}: not a gfp run directory ({why})")
        path = found[0]
    cfg = read_run_config(path.parent)  # one line if unreadable, not JSON or not a run's
    job = job_from_record(cfg, path, root, video=args.video)
    if path.parent == root and len(job.seeds) > 1:
        raise ConfigError(
            f"{root} is seed {cfg.get('seed')} of the multi-seed run {root.parent}; resume the "
            f"whole run: --resume {root.parent}"
        )
    if args.overwrite:
        raise ConfigError("--resume and --overwrite exclude each other")
    seeds = job.seeds
    defaults = Train()
    conflicts = []
    # a flag given as its default is indistinguishable from one not given
    for name in ("task", "agent", "seed", "seeds", "out"):
        value = getattr(args, name)
        if value == getattr(defaults, name):
            continue
        flag = "--" + name
        if name == "seed" and [value] != seeds:
            conflicts.append(f"{flag} {value} (run: --seeds {','.join(map(str, seeds))})")
        elif name == "seeds" and value.replace(" ", "") != ",".join(map(str, seeds)):
            conflicts.append(f"{flag} {value} (run: {','.join(map(str, seeds))})")
        elif name == "out" and Path(value).resolve() != root.resolve():
            conflicts.append(f"{flag} {value} (resuming: {root})")
        elif name in ("task", "agent") and value != getattr(job, name):
            conflicts.append(f"{flag} {value} (run: {getattr(job, name)})")
    taken = {}  # settings that are not run-defining: the resumed run takes the flag's value
    for s in run_settings.schema():
        value = getattr(args.settings, s.name)
        if value == s.flag_default:
            continue
        if not s.run_defining:
            taken[s.name] = value
        elif value != getattr(job, s.name):
            conflicts.append(f"{s.flag} {value} (run: {getattr(job, s.name)})")
    overrides = _overrides(args)
    if overrides:
        from gfp.presets import resolve

        given, _ = resolve(job.agent, job.task, job.preset, overrides)
        for key in overrides:
            have = json.loads(json.dumps(getattr(given, key)))
            was = json.loads(json.dumps(getattr(job.config, key)))
            if have != was:
                conflicts.append(f"--{key.replace('_', '-')} {have} (run: {was})")
    if conflicts:
        raise ConfigError(
            f"--resume continues {root} with its recorded settings, and these flags differ from "
            f"them: {', '.join(conflicts)}; drop them, or start a new run with another --out"
        )
    moved = taken.get("dataset_dir")
    if moved is not None and job.dataset_dir is not None and Path(moved) != job.dataset_dir:
        print(f"gfp: reading the data from {moved} (the run used {job.dataset_dir})")
    for name, value in taken.items():
        setattr(job, name, value)  # checked again by the job
    return job


def cmd_train(args: Train) -> None:
    from gfp import run

    job, default_job = train_job(args)
    if default_job:
        run.ensure_default_dataset(job.task, job.dataset_dir)
    summaries = run.run_training(job)
    if args.json:
        for path, summary in zip(job.run_dirs(), summaries, strict=True):
            rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()}
            print(f"{path}: {json.dumps(rounded)}")
    else:
        print(train_table(job.run_dirs(), summaries))


# The score a table shows per policy, the first a summary has: the normalized score where the
# task has reference returns (D4RL, Minari), else the success rate (OGBench), else the return.
SCORES = ("normalized_score", "success", "return")


def train_table(run_dirs: list[Path], summaries: list[dict[str, Any]]) -> str:
    """The end of `gfp train`: per run directory and policy (and phase, for a run with online
    fine-tuning) the score, its final value and the mean of the last three evaluations (the
    paper's protocol, summary.json's *_final and *_last3) and the steps."""
    header = ["policy", "score", "final", "mean of last 3", "steps", "run dir"]
    rows = []
    for path, summary in zip(run_dirs, summaries, strict=True):
        online = int(summary.get("online_steps") or 0)
        phases = [("offline/", summary["steps"]), ("online/", summary["steps"] + online)]
        # an offline run's summary has the keys without a phase too (the same values)
        for phase, steps in phases if online else [("", summary["steps"])]:
            keys = [k[len(phase) :] for k in summary if k.startswith(phase)]
            keys = [k for k in keys if k.count("/") == 1]  # policy/metric_final, no phase
            policies = dict.fromkeys(k.split("/")[0] for k in keys if k.endswith("_final"))
            for policy in policies:
                metric = next(m for m in SCORES if f"{policy}/{m}_final" in keys)
                final = summary[f"{phase}{policy}/{metric}_final"]
                last3 = summary.get(f"{phase}{policy}/{metric}_last3", final)
                name = f"{phase}{policy}" if phase else policy
                rows.append([name, metric, f"{final:.4f}", f"{last3:.4f}", str(steps), str(path)])
        if not any(row[-1] == str(path) for row in rows):  # --no-eval, or no evaluation made
            rows.append(["-", "not evaluated", "-", "-", str(summary["steps"]), str(path)])
    return format_table(header, rows)


def seed_dirs(folder: Path) -> list[Path]:
    """The seedS run directories of a multi-seed run's folder (`gfp train --seeds`), in seed
    order; [] for a run directory itself or any other folder."""
    if (folder / "config.json").is_file():
        return []
    found = [p for p in folder.glob("seed*") if re.fullmatch(r"seed\d+", p.name) and p.is_dir()]
    return sorted((p for p in found if (p / "config.json").is_file()),
                  key=lambda p: int(p.name[4:]))  # fmt: skip


def format_table(header: list[str], rows: list[list[str]]) -> str:
    """Columns left-aligned to their widest cell, two spaces apart."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    )


def _evaluate_run(args: Eval, run_dir: Path) -> dict[str, float]:
    """One run directory's final parameters evaluated (`gfp eval`), saved to its
    eval_final.json after they are returned to be printed (a read-only run still shows them)."""
    from gfp import run

    agent, params, cfg = run.load_run(run_dir)
    env_name = (cfg.get("dataset") or {}).get("env_name")
    if not env_name:
        raise ConfigError(
            f"{run_dir / 'config.json'}: dataset.env_name is missing: the run names no "
            "environment to evaluate in"
        )
    return run.evaluate_policies(
        agent,
        params,
        env_name,
        episodes=args.episodes,
        seed=args.seed,
        video_dir=run_dir if args.video else None,
        success_timing=cfg.get("success_timing"),
        task=cfg.get("task"),
    )


def _save_eval(run_dir: Path, row: dict[str, float]) -> None:
    from gfp.errors import WriteError
    from gfp.io import atomic_write_json

    try:
        atomic_write_json(run_dir / "eval_final.json", row)
    except WriteError as e:
        raise WriteError(f"the results above could not be saved: {e}") from None


def cmd_eval(args: Eval) -> None:
    """Evaluate a run's final parameters, or each seed's of a multi-seed run's folder (as
    --resume and gfp report accept it); the results are printed first and then saved to each
    RUN_DIR/eval_final.json, so a read-only run directory still shows them."""
    import numpy as np

    if args.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
    check_seed("--seed", args.seed)
    folder = Path(args.run_dir)
    seeds = seed_dirs(folder)
    if not seeds:
        row = _evaluate_run(args, folder)
        for k, v in row.items():
            print(f"{k:32s} {v:.4f}", flush=True)
        _save_eval(folder, row)
        return
    rows = {}
    for path in seeds:  # every seed evaluated before any file is written
        rows[path.name] = _evaluate_run(args, path)
    keys = list(dict.fromkeys(k for row in rows.values() for k in row))
    cell = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    table = [[name, *(cell(row.get(k)) for k in keys)] for name, row in rows.items()]
    means = [float(np.mean([r[k] for r in rows.values() if k in r])) for k in keys]
    table.append([f"mean ({len(rows)} seeds)", *map(cell, means)])
    print(format_table(["run", *keys], table), flush=True)
    for path in seeds:
        _save_eval(path, rows[path.name])


def cmd_data(args: Data) -> None:
    if isinstance(args.command, Generate):
        from gfp.datagen.generate import generate

        c = args.command
        paths = generate(
            c.name,
            c.episodes,
            c.out,
            workers=c.workers,
            seed=c.seed,
            episode_length=c.episode_length,
            overwrite=c.overwrite,
            shard_size=c.shard_size,
        )
        print("\n".join(str(p) for p in paths))
    else:
        from gfp.data.info import dataset_info

        c = args.command
        print(dataset_info(c.task_or_path, c.dataset_dir, obs_keys=c.obs_keys, reward=c.reward))


def cmd_bench(args: Bench) -> None:
    from gfp.bench import main as bench_main

    bench_main(quick=args.quick, as_json=args.json, out=args.out)


def cmd_presets(args: Presets) -> None:
    from gfp.presets import format_presets

    print(format_presets(args.agent, args.task, args.preset))


def quiet_harmless_warnings() -> None:
    # OGBench imports glfw, which warns when there is no display (rendering is offscreen anyway),
    # and its Box spaces warn about float64 bounds; none of the notes concerns the user. The
    # data commands import OGBench without building an environment (gfp.evaluate does this too).
    from gfp.render import quiet_library_warnings

    quiet_library_warnings()


def _one_line(text: str) -> str:
    """tyro's boxed parse error as one line: its message, 'did you mean' flags and help hint.
    (The box is drawn with Unicode lines on a terminal and with ASCII dashes otherwise.)"""
    sections: list[list[str]] = [[]]
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith(("╭", "╰")):
            continue
        line = line.strip("│").strip()
        if line and set(line) <= {"─", "-"}:
            sections.append([])
        elif line or sections[-1]:
            sections[-1].append(line)
    sections = [sec for sec in sections if any(sec)]
    # the message is the first section with a colon; a box title ("Value error") has none
    # ... or, without one, the first that is more than a box title ("Invalid choice")
    titles = [i for i, sec in enumerate(sections) if len([x for x in sec if x]) == 1 and
              len(sec[0].split()) <= 3]  # fmt: skip
    main = next((i for i, sec in enumerate(sections) if ":" in sec[0]), None)
    if main is None:
        main = next((i for i in range(len(sections)) if i not in titles), 0)
    head: list[str] = []
    for line in sections[main] if sections else []:
        if not line:
            break
        head.append(line)
    out = " ".join(head) or " ".join(text.split())
    for section in sections[main + 1 :]:
        lines = [x for x in section if x]
        if lines[0].startswith("Perhaps you meant"):
            flags = [x.split()[0] for x in lines[1:] if x.startswith("-")]
            if flags:
                out += f" (did you mean {' or '.join(dict.fromkeys(flags))}?)"
        elif lines[0].startswith("Available subcommands"):
            out += f"; {lines[0]}"
    hint = re.search(r"(gfp[\w -]*--help)", " ".join(text.split()))
    return out + (f"; see `{hint.group(1)}`" if hint else "")


def _parse(argv: list[str] | None) -> Any:
    buf = io.StringIO()
    try:
        with contextlib.redirect_stderr(buf):
            args = tyro.cli(
                commands(),
                args=argv,
                prog="gfp",
                description=__doc__.splitlines()[0],
                config=(tyro.conf.OmitSubcommandPrefixes, tyro.conf.OmitArgPrefixes),
            )
    except SystemExit as e:
        text = buf.getvalue()
        if e.code not in (0, None) and text.strip():
            print(f"gfp: error: {_one_line(text)}", file=sys.stderr)
            raise SystemExit(2) from None
        sys.stderr.write(text)
        raise
    sys.stderr.write(buf.getvalue())
    return args


def main(argv: list[str] | None = None) -> None:
    """The `gfp` command. Output into a pipe closed early (`gfp train --help | head -1`) ends it
    quietly, with 128 + SIGPIPE as a process the signal stopped."""
    try:
        _main(argv)
    except BrokenPipeError:
        # Later writes, and the flush at exit, go nowhere instead of raising again (Python's
        # documented way: the standard output's file descriptor pointed at os.devnull).
        with contextlib.suppress(AttributeError, OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(128 + signal.SIGPIPE) from None


def _main(argv: list[str] | None) -> None:
    quiet_harmless_warnings()
    args = _parse(argv)
    handlers = {Train: cmd_train, Eval: cmd_eval, Data: cmd_data, Presets: cmd_presets,
                Bench: cmd_bench, Sweep: cmd_sweep, Tune: cmd_tune, ReportCommand: cmd_report,
                Export: cmd_export, Ope: cmd_ope}  # fmt: skip
    # train, sweep and tune parse into subclasses with the settings' flags (`commands`)
    handler = next(h for cls, h in handlers.items() if isinstance(args, cls))
    try:
        if getattr(args, "video", False):  # before anything imports mujoco (OGBench does)
            from gfp.render import configure_gl

            configure_gl()
        handler(args)
    except GfpError as e:
        message = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
        prefix = "gfp: " if isinstance(e, Interrupted) else "gfp: error: "
        print(prefix + message, file=sys.stderr)
        raise SystemExit(e.exit_code) from None
    except KeyboardInterrupt:  # Ctrl-C in a command without a handler of its own (eval, export,
        # report, data info): its files are written atomically at the end, so none is half done
        print("\ngfp: stopped by SIGINT (Ctrl-C)", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
