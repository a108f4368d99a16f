"""A training job: everything one `gfp train` needs, validated in one place.

Whatever builds a job goes through `TrainJob` (it checks every setting: the run settings through
their schema, gfp/settings.py, the rest here) and the agent's Config (which checks every
hyperparameter, gfp/agents/configs.py): the CLI, the Python API (`make_train_job`), `--resume`
from a run's config.json (`job_from_record`), and the sweep. A bad value is a ConfigError naming
the setting, the value and what is allowed, raised before anything is compiled or written. This
module imports no JAX.

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
from typing import Any

from gfp import settings as run_settings
from gfp.agents.configs import (
    BaseConfig,
    check_field,
    config_class,
    config_from_dict,
    is_int,
    recorded_agent_config,
    require,
)
from gfp.errors import ConfigError
from gfp.settings import RunSettings

DEFAULT_TASK = "cube-single-noisy-singletask-task1-v0"
# The built-in default job generates this many episodes of the default task on first use.
DEFAULT_EPISODES = 100
CPU_STEPS = 40_000
# `gfp train` checkpoints this often unless told otherwise (RunSettings.checkpoint_every).
DEFAULT_CHECKPOINT_EVERY = 10_000
# The train state counts updates in an int32 (gfp.agents.base.TrainState.step, which the update
# schedule and the checkpoints read): a longer run would wrap around to negative steps.
MAX_TOTAL_STEPS = 2**31 - 1
# Seeds are int32 too (PRNG keys, NumPy's seeds): 0 .. 2**31 - 1.
MAX_SEED = 2**31 - 1


def default_data_dir() -> Path:
    """Where the built-in default job caches its generated dataset (GFP_DATA_DIR overrides)."""
    return Path(os.environ.get("GFP_DATA_DIR", Path.home() / ".cache" / "gfp" / "data"))


def paper_steps(task: str) -> int:
    """Gradient steps of the paper's protocol for `task` (the task registry's record: 500K on D4RL
    and pixel tasks, else 1M; paper Tab. 4 and App. A)."""
    from gfp.tasks import parse_task

    return parse_task(task).paper_steps


@dataclasses.dataclass(init=False)
class TrainJob:
    """Everything `gfp train` needs. Building one validates it (ConfigError otherwise).

    The run settings (gfp/settings.py) are `job.settings`, and read as attributes of the job too
    (`job.steps`, `job.online_steps`, ...); `TrainJob(task=..., steps=...)` takes them as keywords.
    Setting one (`job.dataset_dir = ...`) replaces `job.settings`, checked again.
    """

    task: str
    agent: str
    config: BaseConfig
    seeds: list[int]
    out: Path
    settings: RunSettings
    sources: dict[str, str]
    overwrite: bool
    video: bool
    progress: bool
    resume: bool  # continue the run in `out` from its checkpoints
    recorded: dict[str, Any] | None  # a resumed run's config.json

    def __init__(
        self,
        *,
        task: str,
        agent: str,
        config: BaseConfig,
        seeds: Sequence[int],
        out: Path | str,
        settings: RunSettings | None = None,
        sources: Mapping[str, str] | None = None,
        overwrite: bool = False,
        video: bool = False,
        progress: bool = True,
        resume: bool = False,
        recorded: dict[str, Any] | None = None,
        **values: Any,
    ) -> None:
        # The types are checked before the conversions, which would fail with a traceback.
        require(
            isinstance(seeds, Sequence) and not isinstance(seeds, str),
            f"seeds = {seeds!r} must be a list of integers >= 0",
        )
        self.task, self.agent, self.config = task, agent, config
        self.seeds, self.out = list(seeds), Path(out)
        self.sources = dict(sources or {})
        self.overwrite, self.video, self.progress = overwrite, video, progress
        self.resume, self.recorded = resume, recorded
        if settings is None:
            self.settings = run_settings.SCHEMA(**values)
        else:
            self.settings = dataclasses.replace(settings, **values)
        self.validate()

    def __getattr__(self, name: str) -> Any:
        # only called for what the job itself lacks: a run setting
        settings = self.__dict__.get("settings")
        if settings is not None and name in run_settings.names(type(settings)):
            return getattr(settings, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        settings = self.__dict__.get("settings")
        if settings is not None and name in run_settings.names(type(settings)):
            name, value = "settings", dataclasses.replace(settings, **{name: value})
        object.__setattr__(self, name, value)

    def validate(self) -> None:
        require(isinstance(self.task, str) and bool(self.task.strip()), "task must be a name")
        cls = config_class(self.agent)
        require(
            isinstance(self.config, cls),
            f"config must be a {cls.__name__} for agent {self.agent!r}, "
            f"got {type(self.config).__name__}",
        )
        require(bool(self.seeds), "seeds must name at least one seed")
        require(
            all(is_int(s) and 0 <= s <= MAX_SEED for s in self.seeds),
            f"seeds = {self.seeds!r} must be integers from 0 to 2**31 - 1 ({MAX_SEED})",
        )
        require(len(set(self.seeds)) == len(self.seeds), f"seeds = {self.seeds} has duplicates")
        if self.eta_online is not None:
            require(
                self.agent == "gfp",
                f"eta_online is GFP's online guidance temperature; agent {self.agent!r} has none",
            )
            try:
                check_field(type(self.config), "eta", self.eta_online)  # eta's own range
            except ConfigError as e:
                raise ConfigError(str(e).replace("eta", "eta_online", 1)) from None
        require(not (self.resume and self.overwrite), "resume and overwrite exclude each other")
        online = f" + online_steps = {self.online_steps}" if self.online_steps else ""
        require(
            self.total_steps <= MAX_TOTAL_STEPS,
            f"steps = {self.steps}{online} is more than the {MAX_TOTAL_STEPS} updates a run can "
            "count (its step counter is an int32)",
        )

    @property
    def total_steps(self) -> int:
        """Updates of the whole run: the offline steps, then one per online environment step."""
        return self.settings.total_steps

    def run_dirs(self) -> list[Path]:
        """One run directory per seed: `out` itself for one seed, else out/seedS."""
        if len(self.seeds) == 1:
            return [self.out]
        return [self.out / f"seed{s}" for s in self.seeds]


def make_train_job(
    task: str | None = None,
    agent: str = "gfp",
    *,
    overrides: Mapping[str, Any] | None = None,
    seeds: list[int] | tuple[int, ...] = (0,),
    out: Path | str | None = None,
    overwrite: bool = False,
    video: bool = False,
    progress: bool = True,
    **settings: Any,
) -> TrainJob:
    """A validated job from user-level settings, filling in what is unset the way `gfp train`
    does. `settings`: the run settings (gfp/settings.py; None or absent: unset). Task None is the
    built-in default job (cpu preset, cached generated dataset); steps the preset's budget;
    eval_every half the run (cpu) or every 100K; checkpoints every 10K steps (rounded to the log
    interval) or every evaluation if that is more often."""
    from gfp.presets import resolve

    values = run_settings.given(settings)
    default_job = task is None
    task = DEFAULT_TASK if default_job else task
    preset = values["preset"] = values["preset"] or ("cpu" if default_job else "paper")
    config, sources = resolve(agent, task, preset, overrides)
    if values["steps"] is None:
        values["steps"] = CPU_STEPS if preset == "cpu" else paper_steps(task)
    # steps and log_every first: the unset intervals are computed from them
    run_settings.check_setting("steps", values["steps"])
    run_settings.check_setting("log_every", values["log_every"])
    steps, log_every, eval_every = values["steps"], values["log_every"], values["eval_every"]
    if eval_every is None:
        eval_every = values["eval_every"] = steps // 2 if preset == "cpu" else min(100_000, steps)
    if values["checkpoint_every"] is None:
        every = max(log_every, DEFAULT_CHECKPOINT_EVERY // log_every * log_every)
        if isinstance(eval_every, int) and 0 < eval_every < every:
            every = eval_every
        values["checkpoint_every"] = min(every, steps)
    if values["dataset_dir"] is None and default_job:
        values["dataset_dir"] = default_data_dir()
    seeds = list(seeds)
    if out is None:
        leaf = f"seed{seeds[0]}" if len(seeds) == 1 else "seeds"
        out = Path("runs") / task / agent / leaf
    return TrainJob(
        task=task,
        agent=agent,
        config=config,
        sources=sources,
        seeds=seeds,
        out=Path(out),
        overwrite=overwrite,
        video=video,
        progress=progress,
        **values,
    )


# ---- the record in config.json ------------------------------------------------------------------
# config.json: task, agent, seeds, the recorded run settings (gfp/settings.py), agent_config and
# its sources, config_hash. Run-defining (hashed; --resume refuses an edit): these and the
# run-defining settings, the online ones only where recorded (a run with an online phase).
_RUN_DEFINING = ("task", "agent", "seeds", "agent_config")


def run_defining_keys() -> list[str]:
    return [*_RUN_DEFINING, *run_settings.run_defining()]


def job_record(job: TrainJob) -> dict[str, Any]:
    """The job part of config.json (JSON types only)."""
    # Options added later, at their defaults, are left out with their sources (the record of a
    # job that does not use them is the one gfp wrote before them).
    agent_config = recorded_agent_config(
        job.agent, json.loads(json.dumps(dataclasses.asdict(job.config)))
    )
    dropped = set(dataclasses.asdict(job.config)) - set(agent_config)
    record = {
        "task": job.task,
        "agent": job.agent,
        "seeds": list(job.seeds),
        **run_settings.record(job.settings),
        "agent_config": agent_config,
        "agent_config_sources": {k: v for k, v in job.sources.items() if k not in dropped},
    }
    record["config_hash"] = config_hash(record)
    return record


def run_defining(record: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a config.json that decides the run (what `config_hash` fingerprints); the
    online settings only where recorded (a run with an online phase)."""
    # online and when_set settings count only where recorded, so a run without them keeps the
    # hash it had before they existed
    optional = {*run_settings.online_only(), *run_settings.when_set_only()}
    out = {k: record.get(k) for k in run_defining_keys() if k not in optional or k in record}
    if isinstance(out.get("agent_config"), dict):  # options added later, at their defaults: out
        out["agent_config"] = recorded_agent_config(str(record.get("agent")), out["agent_config"])
    return out


def config_hash(record: Mapping[str, Any]) -> str:
    """sha256 (16 hex digits) of the run-defining settings, in canonical JSON."""
    blob = json.dumps(run_defining(record), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def changed_keys(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Names of the run-defining settings that differ ('agent_config.alpha' for a field)."""
    a, b = run_defining(before), run_defining(after)
    out = []
    for k in [k for k in run_defining_keys() if k in a or k in b]:
        x, y = a.get(k), b.get(k)
        if k == "agent_config" and isinstance(x, dict) and isinstance(y, dict):
            keys = sorted(set(x) | set(y))
            out += [f"agent_config.{f}" for f in keys if x.get(f) != y.get(f)]
        elif x != y:
            out.append(k)
    return out


# The keys of config.json besides the recorded settings: the job's (`job_record`) and the run
# directory's own (its seed, the dataset it trains on, versions; gfp.run.run_config).
_JOB_KEYS = ("task", "agent", "seeds", "agent_config", "agent_config_sources", "config_hash")
_RUN_DIR_KEYS = ("seed", "dataset", "versions")


def record_keys() -> list[str]:
    """Every top-level key a run's config.json may hold (a record made by an earlier gfp holds a
    subset)."""
    recorded = [s.name for s in run_settings.schema() if s.recorded]
    return [*_JOB_KEYS[:3], *recorded, *_JOB_KEYS[3:], *_RUN_DIR_KEYS]


def check_record_keys(record: Mapping[str, Any], where: str) -> None:
    """ConfigError naming `where` and the key for a top-level key no gfp writes: a new run refuses
    an unknown setting, so a resumed one must not drop it silently."""
    unknown = sorted(set(record) - set(record_keys()))
    require(
        not unknown,
        f"{where}: unknown key(s) {', '.join(map(repr, unknown))} (config.json holds "
        f"{', '.join(record_keys())}); undo the edit",
    )


def check_record_seed(record: Mapping[str, Any], seeds: Sequence[int], where: str) -> None:
    """A run directory's `seed` is one of the job's `seeds`, and for a multi-seed run the one of
    its folder (seedS). `seeds` is the one source of the seeds trained: a `seed` edited alone
    would train another seed than every later tool (results, reports, export) labels it with."""
    seed = record.get("seed")
    require(is_int(seed) and seed >= 0, f"{where}: seed = {seed!r} must be an integer >= 0")
    if len(seeds) == 1:
        require(
            seed == seeds[0],
            f"{where}: seed = {seed} disagrees with seeds = {list(seeds)} (the run trains seeds; "
            "undo the edit, or start a new run with --seed and another --out)",
        )
        return
    folder = Path(where).parent.name
    require(
        seed in seeds and folder == f"seed{seed}",
        f"{where}: seed = {seed} is not this folder's seed of seeds = {list(seeds)} (folder "
        f"{folder}); undo the edit",
    )


def _check_sibling_records(job: TrainJob, record: Mapping[str, Any], where: str) -> None:
    """The other seeds' config.json of a multi-seed run describe the same run (only the first is
    read to rebuild the job; an edit of another would go unnoticed and mislabel its results)."""
    for run_dir in job.run_dirs():
        path = run_dir / "config.json"
        if not path.is_file() or path.resolve() == Path(where).resolve():
            continue
        try:
            sibling = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"{path}: cannot be read as JSON ({e})") from None
        require(isinstance(sibling, dict), f"{path}: expected a JSON object")
        check_record_keys(sibling, str(path))
        check_record_seed(sibling, job.seeds, str(path))
        keys = changed_keys(record, sibling)
        require(
            not keys,
            f"{path}: differs from {where} in {', '.join(keys)} (the seeds of one run share their "
            "settings); undo the edit",
        )


def job_from_record(
    record: Mapping[str, Any], where: Path | str, out: Path, **flags: Any
) -> TrainJob:
    """The job a run's config.json describes, validated like a new one: a missing, unknown or
    mistyped key, an invalid option, a seed that is not the run's are a ConfigError naming `where`
    and the key; so is another seed's config.json of a multi-seed run that disagrees. `flags`: the
    job's own fields (video, progress)."""
    where = str(where)
    for key in ("task", "agent", "seed", "agent_config"):
        require(key in record, f"{where}: missing key {key!r}")
    check_record_keys(record, where)
    values = run_settings.from_record(record, where)
    require(isinstance(record["agent_config"], dict), f"{where}: agent_config must be an object")
    agent = record["agent"]
    require(isinstance(agent, str), f"{where}: agent must be a name")
    try:
        config_class(agent)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    config = config_from_dict(agent, record["agent_config"], f"{where}: agent_config")
    sources = record.get("agent_config_sources")
    try:
        job = TrainJob(
            task=record["task"],
            agent=agent,
            config=config,
            sources=sources if isinstance(sources, dict) else {},
            seeds=record.get("seeds") or [record["seed"]],
            out=out,
            resume=True,
            recorded=dict(record),
            **values,
            **flags,
        )
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    check_record_seed(record, job.seeds, where)
    _check_sibling_records(job, record, where)
    return job


def resume_hint(job: TrainJob) -> str:
    """How to go on with `job` after it stopped: `--resume` once one of its run directories holds
    a config.json (a run with no checkpoint yet resumes from scratch), else the same command
    again (nothing that a new run would refuse was written)."""
    if any((d / "config.json").is_file() for d in job.run_dirs()):
        return f"continue with: gfp train --resume {job.out}"
    return "nothing was written yet: run the same command again"
