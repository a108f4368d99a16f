"""A training job: everything one `gfp train` needs, validated in one place.

Whatever builds a job goes through `TrainJob` (its `__post_init__` checks every setting) and the
agent's Config (which checks every hyperparameter, gfp/agents/configs.py): the CLI, the Python API
(`make_train_job`), `--resume` from a run's config.json (`job_from_record`), and the sweep. A bad
value is a ConfigError naming the setting, the value and what is allowed, raised before anything is
compiled or written. This module imports no JAX.

A job is recorded in each run's config.json (`job_record`); `config_hash` fingerprints the
settings that decide the run's results, and checkpoints carry it, so a resumed run can tell that
its config.json was edited and name the key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from gfp.agents.configs import BaseConfig, check_field, config_class, config_from_dict
from gfp.errors import ConfigError

DEFAULT_TASK = "cube-single-noisy-singletask-task1-v0"
# The built-in default job generates this many episodes of the default task on first use.
DEFAULT_EPISODES = 100
CPU_STEPS = 40_000
# `gfp train` checkpoints this often unless told otherwise (see gfp.cli.Train.checkpoint_every).
DEFAULT_CHECKPOINT_EVERY = 10_000
# OGBench singletask success decided after the action ('post': OGBench < 1.2, the paper's runs) or
# before it ('pre': OGBench >= 1.2's default). The datasets are identical; evaluation differs.
SUCCESS_TIMINGS = ("post", "pre")
PAPER_SUCCESS_TIMING = "post"
# Offline-to-online fine-tuning (gfp/online.py): the reference code's replay buffer capacity.
DEFAULT_BUFFER_SIZE = 1_000_000


def default_data_dir() -> Path:
    """Where the built-in default job caches its generated dataset (GFP_DATA_DIR overrides)."""
    return Path(os.environ.get("GFP_DATA_DIR", Path.home() / ".cache" / "gfp" / "data"))


def paper_steps(task: str) -> int:
    """Gradient steps of the paper's protocol for `task` (the task registry's record: 500K on D4RL
    and pixel tasks, else 1M; GFP.md 4)."""
    from gfp.tasks import parse_task

    return parse_task(task).paper_steps


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@dataclasses.dataclass
class TrainJob:
    """Everything `gfp train` needs. Building one validates it (ConfigError otherwise)."""

    task: str
    agent: str
    config: BaseConfig
    steps: int
    seeds: list[int]
    out: Path
    dataset_dir: Path | None = None
    preset: str = "paper"
    eval_every: int = 0  # 0: evaluate only at the end
    eval_episodes: int = 50
    log_every: int = 1000
    checkpoint_every: int = 0  # 0: only at the end (and on SIGINT/SIGTERM)
    success_timing: Literal["post", "pre"] = PAPER_SUCCESS_TIMING
    sources: dict[str, str] = dataclasses.field(default_factory=dict)
    overwrite: bool = False
    video: bool = False
    progress: bool = True
    resume: bool = False  # continue the run in `out` from its checkpoints
    recorded: dict[str, Any] | None = None  # a resumed run's config.json
    # Offline-to-online fine-tuning (gfp/online.py): after `steps` offline updates, this many
    # environment steps, each followed by one update (the global step counts on to
    # steps + online_steps); `online_envs` environments step in parallel, one update per env step.
    online_steps: int = 0
    balanced_sampling: bool = False  # half of each batch from the dataset, half from online rows
    buffer_size: int = DEFAULT_BUFFER_SIZE  # replay capacity (at least the dataset size + 1)
    online_envs: int = 1
    eta_online: float | None = None  # GFP's guidance temperature online (None: the offline eta)

    def __post_init__(self) -> None:
        # The types are checked before the conversions, which would fail with a traceback.
        _need(
            self.dataset_dir is None or isinstance(self.dataset_dir, str | os.PathLike),
            f"dataset_dir = {self.dataset_dir!r} must be a path",
        )
        _need(
            isinstance(self.seeds, Sequence) and not isinstance(self.seeds, str),
            f"seeds = {self.seeds!r} must be a list of integers >= 0",
        )
        self.out = Path(self.out)
        self.dataset_dir = Path(self.dataset_dir) if self.dataset_dir is not None else None
        self.seeds = list(self.seeds)
        self.validate()

    def validate(self) -> None:
        _need(isinstance(self.task, str) and bool(self.task.strip()), "task must be a name")
        cls = config_class(self.agent)
        _need(
            isinstance(self.config, cls),
            f"config must be a {cls.__name__} for agent {self.agent!r}, "
            f"got {type(self.config).__name__}",
        )
        _need(_is_int(self.steps) and self.steps >= 1, f"steps = {self.steps!r} must be >= 1")
        _need(
            _is_int(self.log_every) and self.log_every >= 1,
            f"log_every = {self.log_every!r} must be >= 1",
        )
        self.validate_online()
        for name in ("eval_every", "checkpoint_every"):
            v = getattr(self, name)
            _need(
                _is_int(v) and 0 <= v <= self.total_steps,
                f"{name} = {v!r} must be between 0 (never; only at the end) and the run's steps "
                f"({self.total_steps})",
            )
        _need(
            _is_int(self.eval_episodes) and self.eval_episodes >= 1,
            f"eval_episodes = {self.eval_episodes!r} must be >= 1",
        )
        _need(bool(self.seeds), "seeds must name at least one seed")
        _need(
            all(_is_int(s) and s >= 0 for s in self.seeds),
            f"seeds = {self.seeds!r} must be integers >= 0",
        )
        _need(len(set(self.seeds)) == len(self.seeds), f"seeds = {self.seeds} has duplicates")
        _need(
            self.success_timing in SUCCESS_TIMINGS,
            f"success_timing = {self.success_timing!r} must be one of {', '.join(SUCCESS_TIMINGS)}",
        )
        _need(not (self.resume and self.overwrite), "resume and overwrite exclude each other")

    def validate_online(self) -> None:
        """The online fine-tuning settings (gfp/online.py)."""
        m, e = self.online_steps, self.online_envs
        _need(_is_int(m) and m >= 0, f"online_steps = {m!r} must be >= 0 (0: offline only)")
        _need(_is_int(e) and e >= 1, f"online_envs = {e!r} must be >= 1")
        _need(
            m % e == 0,
            f"online_steps = {m} must be a multiple of online_envs = {e} (each collection step "
            "steps every environment once)",
        )
        _need(
            isinstance(self.balanced_sampling, bool),
            f"balanced_sampling = {self.balanced_sampling!r} must be true or false",
        )
        b = self.buffer_size
        _need(_is_int(b) and b >= e, f"buffer_size = {b!r} must be >= online_envs ({e})")
        if self.eta_online is not None:
            _need(
                self.agent == "gfp",
                f"eta_online is GFP's online guidance temperature; agent {self.agent!r} has none",
            )
            try:
                check_field(type(self.config), "eta", self.eta_online)  # eta's own range
            except ConfigError as e:
                raise ConfigError(str(e).replace("eta", "eta_online", 1)) from None
        if m == 0:
            given = [
                name
                for name, v, default in (
                    ("eta_online", self.eta_online, None),
                    ("balanced_sampling", self.balanced_sampling, False),
                    ("online_envs", self.online_envs, 1),
                )
                if v != default
            ]
            _need(not given, f"{', '.join(given)} set without online_steps (an offline run)")

    @property
    def total_steps(self) -> int:
        """Updates of the whole run: the offline steps, then one per online environment step."""
        return self.steps + self.online_steps

    def run_dirs(self) -> list[Path]:
        """One run directory per seed: `out` itself for one seed, else out/seedS."""
        if len(self.seeds) == 1:
            return [self.out]
        return [self.out / f"seed{s}" for s in self.seeds]


def make_train_job(
    task: str | None = None,
    agent: str = "gfp",
    *,
    preset: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    steps: int | None = None,
    seeds: list[int] | tuple[int, ...] = (0,),
    out: Path | str | None = None,
    dataset_dir: Path | str | None = None,
    eval_every: int | None = None,
    eval_episodes: int = 50,
    log_every: int = 1000,
    checkpoint_every: int | None = None,
    success_timing: str = PAPER_SUCCESS_TIMING,
    **flags: Any,
) -> TrainJob:
    """A validated job from user-level settings, filling in what is unset the way `gfp train`
    does: task None is the built-in default job (cpu preset, cached generated dataset); steps the
    preset's budget; eval_every half the run (cpu) or every 100K; checkpoints every 10K steps
    (rounded to the log interval) or every evaluation if that is more often. `flags`: overwrite,
    video, progress, and the online fine-tuning settings (online_steps, balanced_sampling,
    buffer_size, online_envs, eta_online; see TrainJob)."""
    from gfp.presets import resolve

    default_job = task is None
    task = DEFAULT_TASK if default_job else task
    preset = preset or ("cpu" if default_job else "paper")
    config, sources = resolve(agent, task, preset, overrides)
    if steps is None:
        steps = CPU_STEPS if preset == "cpu" else paper_steps(task)
    _need(_is_int(steps) and steps >= 1, f"steps = {steps!r} must be >= 1")
    if eval_every is None:
        eval_every = steps // 2 if preset == "cpu" else min(100_000, steps)
    _need(_is_int(log_every) and log_every >= 1, f"log_every = {log_every!r} must be >= 1")
    if checkpoint_every is None:
        every = max(log_every, DEFAULT_CHECKPOINT_EVERY // log_every * log_every)
        if isinstance(eval_every, int) and 0 < eval_every < every:
            every = eval_every
        checkpoint_every = min(every, steps)
    if dataset_dir is None and default_job:
        dataset_dir = default_data_dir()
    seeds = list(seeds)
    if out is None:
        leaf = f"seed{seeds[0]}" if len(seeds) == 1 else "seeds"
        out = Path("runs") / task / agent / leaf
    return TrainJob(
        task=task,
        agent=agent,
        config=config,
        sources=sources,
        steps=steps,
        seeds=seeds,
        out=Path(out),
        dataset_dir=Path(dataset_dir) if dataset_dir is not None else None,
        preset=preset,
        eval_every=eval_every,
        eval_episodes=eval_episodes,
        log_every=log_every,
        checkpoint_every=checkpoint_every,
        success_timing=success_timing,  # type: ignore[arg-type]
        **flags,
    )


# ---- the record in config.json ------------------------------------------------------------------
# The job settings config.json records, beside task/agent/seed(s)/agent_config.
RECORDED_SETTINGS = (
    "steps",
    "preset",
    "eval_every",
    "eval_episodes",
    "log_every",
    "checkpoint_every",
    "success_timing",
    "online_steps",
    "balanced_sampling",
    "buffer_size",
    "online_envs",
    "eta_online",
)
# Recorded (and hashed) only for a run with an online phase, so that an offline run's config.json
# and config_hash are those of a gfp without online fine-tuning.
ONLINE_SETTINGS = ("online_steps", "balanced_sampling", "buffer_size", "online_envs", "eta_online")
# Settings that decide what a run computes (its parameters and its logged numbers): an edit of any
# of them in config.json changes the run, so --resume refuses it.
RUN_DEFINING = ("task", "agent", "seeds", "agent_config", *RECORDED_SETTINGS)


def job_record(job: TrainJob) -> dict[str, Any]:
    """The job part of config.json (JSON types only)."""
    record = {
        "task": job.task,
        "agent": job.agent,
        "seeds": list(job.seeds),
        **{
            k: getattr(job, k)
            for k in RECORDED_SETTINGS
            if job.online_steps > 0 or k not in ONLINE_SETTINGS
        },
        "dataset_dir": str(job.dataset_dir) if job.dataset_dir else None,
        "agent_config": json.loads(json.dumps(dataclasses.asdict(job.config))),
        "agent_config_sources": job.sources,
    }
    record["config_hash"] = config_hash(record)
    return record


def run_defining(record: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a config.json that decides the run (what `config_hash` fingerprints); the
    online settings only where recorded (a run with an online phase)."""
    return {k: record.get(k) for k in RUN_DEFINING if k not in ONLINE_SETTINGS or k in record}


def config_hash(record: Mapping[str, Any]) -> str:
    """sha256 (16 hex digits) of the run-defining settings, in canonical JSON."""
    blob = json.dumps(run_defining(record), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def changed_keys(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Names of the run-defining settings that differ ('agent_config.alpha' for a field)."""
    a, b = run_defining(before), run_defining(after)
    out = []
    for k in [k for k in RUN_DEFINING if k in a or k in b]:
        x, y = a.get(k), b.get(k)
        if k == "agent_config" and isinstance(x, dict) and isinstance(y, dict):
            keys = sorted(set(x) | set(y))
            out += [f"agent_config.{f}" for f in keys if x.get(f) != y.get(f)]
        elif x != y:
            out.append(k)
    return out


def job_from_record(
    record: Mapping[str, Any], where: Path | str, out: Path, **flags: Any
) -> TrainJob:
    """The job a run's config.json describes, validated like a new one: a missing or mistyped key,
    an unknown or invalid option is a ConfigError naming `where` and the key."""
    where = str(where)
    for key in ("task", "agent", "seed", "agent_config", *RECORDED_SETTINGS):
        if key == "success_timing" or key in ONLINE_SETTINGS:
            continue  # success_timing: runs recorded before it existed used OGBench's default
        _need(key in record, f"{where}: missing key {key!r}")
    _need(isinstance(record["agent_config"], dict), f"{where}: agent_config must be an object")
    agent = record["agent"]
    _need(isinstance(agent, str), f"{where}: agent must be a name")
    try:
        config_class(agent)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    config = config_from_dict(agent, record["agent_config"], f"{where}: agent_config")
    seeds = record.get("seeds") or [record["seed"]]
    dataset_dir = record.get("dataset_dir")
    try:
        return TrainJob(
            task=record["task"],
            agent=agent,
            config=config,
            sources=sources
            if isinstance(sources := record.get("agent_config_sources"), dict)
            else {},
            steps=record["steps"],
            seeds=seeds,
            out=out,
            dataset_dir=dataset_dir or None,
            preset=record["preset"],
            eval_every=record["eval_every"],
            eval_episodes=record["eval_episodes"],
            log_every=record["log_every"],
            checkpoint_every=record["checkpoint_every"],
            success_timing=record.get("success_timing", "pre"),
            online_steps=record.get("online_steps", 0),
            balanced_sampling=record.get("balanced_sampling", False),
            buffer_size=record.get("buffer_size", DEFAULT_BUFFER_SIZE),
            online_envs=record.get("online_envs", 1),
            eta_online=record.get("eta_online"),
            resume=True,
            recorded=dict(record),
            **flags,
        )
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
