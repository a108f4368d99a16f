"""Planning: a spec becomes validated training jobs with stable run directories, reconciled with
what the sweep directory already holds.

Layout: one folder per (task, agent, configuration), holding one run directory per seed,

    SWEEP_DIR/<task>/<agent>/<config_id>/seed<S>/   (config.json, metrics.csv, eval.csv, ...)

where `config_id` is `gfp.results.config_id` of the resolved agent configuration (the same id
results.csv carries), so a configuration keeps its folder whatever command or block named it. The
folder's name is the configuration's swept values, readable, then that id: `alpha=10,eta=0.3-<id>`
(`config_dirname`); a configuration is found by its id alone, so a folder made by an older gfp
(the id only) or named after another block's grid is the one used again. A
unit of work (one Ray task) is one `TrainJob` over several seeds of one configuration, vmapped;
its `out` is the configuration folder (or the seed folder for a single seed), so `run_dirs()` are
the seedS folders either way.

Every job is built (and so validated, like `gfp train`'s) before anything is written or started.
Against the folder's contents: a seed whose run finished (summary.json) is skipped; a seed with an
unfinished run resumes from its checkpoint together with the seeds it was started with (a
checkpoint is made for that group of seeds); a seed that failed (failed.json) is left alone unless
`retry_failed`; seeds that have no run yet form a new job. A run there made with other settings
(say another --eval-every) is an error naming them: a folder means one configuration. A sweep
folder keeps one budget per task (`BUDGET_KEYS`: steps, online steps, preset, dataset, evaluation
episodes), across its configurations and agents and across invocations: a sweep asking another is
refused in one line naming the setting (another --out keeps it apart), so that a report never
compares a 10-step run with 2000-step ones.

This module imports neither JAX nor Ray.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gfp.errors import ConfigError, DataError
from gfp.io import atomic_write_json
from gfp.job import TrainJob, changed_keys, job_from_record, job_record, make_train_job
from gfp.results import config_id
from gfp.sweep.spec import Block, SweepSpec

SWEEP_FILE = "sweep.json"  # what the sweep directory is meant to hold (every planned run)
FAILED = "failed.json"  # in a run directory: why the run failed (a retry could not fix it)
WORKER = ".worker.json"  # in a run directory while a worker trains it: host, pid, start time
SWEEP_FORMAT = 1
_SEED_DIR = re.compile(r"seed(\d+)")


def task_dirname(task: str) -> str:
    """A task as one folder name: Minari ids and file paths lose their slashes."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", task.strip()).strip("._")
    return name or "task"


NAME_MAX = 80  # characters of a configuration folder's readable part (the id follows it)
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]+")


def _value_text(value: Any) -> str:
    """A resolved hyperparameter as short text: 0.001, 256x256, true."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple | list):
        return "x".join(_value_text(v) for v in value) or "none"
    return str(value)


def config_dirname(values: dict[str, Any], cid: str) -> str:
    """A configuration folder's name: its grid values, readable and file-system safe (letters,
    digits and . _ = , + - only; at most NAME_MAX characters, cut at a whole value where it can
    be), then '-' and the configuration id, which alone identifies it: 'alpha=10,eta=0.3-<id>'.
    No values: the id alone."""
    text = ",".join(f"{k}={_value_text(v)}" for k, v in values.items())
    text = _UNSAFE.sub("_", text).strip("._-,")
    if len(text) > NAME_MAX:
        cut = text[:NAME_MAX]
        text = (cut.rsplit(",", 1)[0] if "," in cut else cut).rstrip("._-,=")
    return f"{text}-{cid}" if text else cid


def find_config_dir(parent: Path, cid: str, name: str, seen: dict[Path, dict[str, Path]]) -> Path:
    """The folder of configuration `cid` under `parent` (SWEEP_DIR/<task>/<agent>): an existing
    one named `<cid>` (older sweeps) or `<anything>-<cid>`, else `parent/name`. `seen` caches each
    parent's listing for one planning."""
    if parent not in seen:
        found: dict[str, Path] = {}
        if parent.is_dir():
            for d in sorted(parent.iterdir()):
                if d.is_dir():
                    found.setdefault(d.name.rsplit("-", 1)[-1], d)
        seen[parent] = found
    return seen[parent].setdefault(cid, parent / name)


def format_point(point: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items()) or "no grid"


@dataclasses.dataclass
class PlannedRun:
    """One seed of one configuration: what sweep.json records and `gfp sweep status` counts."""

    path: Path
    task: str
    agent: str
    config_id: str
    seed: int
    steps: int
    grid: dict[str, Any]

    def entry(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "agent": self.agent,
            "config_id": self.config_id,
            "seed": self.seed,
            "steps": self.steps,
            "grid": self.grid,
        }


@dataclasses.dataclass
class Unit:
    """One Ray task: `job` trains its seeds side by side; `clear` lists seed folders whose failed
    run is replaced (--retry-failed), emptied by the driver before the job starts."""

    job: TrainJob
    config_dir: Path
    grid: dict[str, Any]
    resume: bool
    clear: list[Path] = dataclasses.field(default_factory=list)

    @property
    def name(self) -> str:
        j = self.job
        return f"{j.task} {j.agent} {format_point(self.grid)} seeds {','.join(map(str, j.seeds))}"


@dataclasses.dataclass
class Plan:
    sweep_dir: Path
    runs: list[PlannedRun]  # every seed the spec names
    units: list[Unit]  # the work left to do
    grid_keys: list[str]


def out_for(config_dir: Path, seeds: list[int]) -> Path:
    """A job's `out` such that its run_dirs() are config_dir/seedS."""
    return config_dir / f"seed{seeds[0]}" if len(seeds) == 1 else config_dir


# ---- what a seed folder holds -------------------------------------------------------------------
@dataclasses.dataclass
class SeedDir:
    path: Path
    record: dict[str, Any] | None  # config.json
    finished: bool
    failed: dict[str, Any] | None  # failed.json


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file, or None if there is none; DataError naming a damaged one."""
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot be read as JSON ({e})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a JSON object")
    return obj


def read_seed_dir(path: Path) -> SeedDir:
    return SeedDir(
        path,
        read_json(path / "config.json"),
        (path / "summary.json").is_file(),
        read_json(path / FAILED),
    )


# ---- planning -----------------------------------------------------------------------------------
def block_jobs(
    block: Block, sweep_dir: Path, folders: dict[Path, dict[str, Path]] | None = None
) -> Iterable[tuple[TrainJob, Path, dict[str, Any]]]:
    """(job over all the block's seeds, configuration folder, grid point) for every task x agent x
    grid point of a block; each job built, so validated, here. The folder is named after the
    swept values (keys with several values; without any, every grid key) and found by the
    configuration id (`find_config_dir`; `folders` caches the listings)."""
    from gfp.tasks import expand_tasks

    tasks = expand_tasks(",".join(block.tasks))
    grids = block.grid_for_agents()
    folders = {} if folders is None else folders
    for task in tasks:
        for agent in block.agents:
            grid = grids[agent]
            named = [k for k, v in grid.items() if len(v) > 1] or list(grid)
            for values in itertools.product(*grid.values()):
                point = dict(zip(grid, values, strict=True))
                try:
                    job = make_train_job(
                        task,
                        agent,
                        overrides=point,
                        seeds=block.seeds,
                        out=sweep_dir,
                        progress=False,
                        **block.settings,
                    )
                except ConfigError as e:
                    where = f"{block.where}: " if block.where else ""
                    raise ConfigError(
                        f"{where}{task}, {agent}, {format_point(point)}: {e}"
                    ) from None
                cid = config_id(task, agent, job_record(job)["agent_config"], job.steps)
                name = config_dirname({k: getattr(job.config, k) for k in named}, cid)
                parent = sweep_dir / task_dirname(task) / agent
                yield job, find_config_dir(parent, cid, name, folders), point


def _same_settings(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Run-defining settings that differ between two job records, seeds and preset aside (a
    preset only matters through the agent config it resolves to)."""
    return [
        k
        for k in changed_keys({**a, "seeds": None}, {**b, "seeds": None})
        if k not in ("preset", "seeds")
    ]


BUDGET_KEYS = ("steps", "online_steps", "preset", "dataset_dir", "eval_episodes")


def _budget(record: dict[str, Any]) -> dict[str, Any]:
    out = {k: record.get(k) for k in BUDGET_KEYS}
    out["online_steps"] = out["online_steps"] or 0  # recorded only for runs with an online phase
    return out


def check_budgets(sweep_dir: Path, jobs: Iterable[TrainJob]) -> None:
    """One budget per task in a sweep folder: among the planned jobs and against every run the
    folder already holds (config.json). ConfigError naming the setting and both values. A
    recorded dataset folder that no longer exists (the data moved) is not compared."""
    from gfp.results import find_run_dirs

    def differ(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
        keys = [k for k in BUDGET_KEYS if a[k] != b[k]]
        if "dataset_dir" in keys and not all(
            v is None or Path(v).exists() for v in (a["dataset_dir"], b["dataset_dir"])
        ):
            keys.remove("dataset_dir")
        return keys

    planned: dict[str, dict[str, Any]] = {}
    for job in jobs:
        budget = _budget(job_record(job))
        had = planned.setdefault(job.task, budget)
        keys = differ(had, budget)
        if keys:
            k = keys[0]
            raise ConfigError(
                f"{job.task}: the sweep asks for two budgets ({k} {had[k]} and {budget[k]}); a "
                "sweep folder keeps one budget per task: sweep them into separate --out folders"
            )
    if not sweep_dir.is_dir():
        return
    for run_dir in find_run_dirs(sweep_dir):
        record = read_json(run_dir / "config.json")
        if not record or record.get("task") not in planned:
            continue
        want, have = planned[record["task"]], _budget(record)
        keys = differ(have, want)
        if keys:
            k = keys[0]
            raise ConfigError(
                f"{sweep_dir}: holds {record['task']} runs with {k} {have[k]} "
                f"({run_dir.relative_to(sweep_dir)}), this sweep asks {k} {want[k]}; a sweep "
                "folder keeps one budget per task: use another --out for this one"
            )


def make_plan(spec: SweepSpec, sweep_dir: Path | str, *, retry_failed: bool = False) -> Plan:
    """Every job of `spec` (validated), reconciled with the runs already in `sweep_dir`. Writes
    nothing. ConfigError for a bad value or a folder holding the configuration with other
    settings."""
    sweep_dir = Path(sweep_dir)
    configs: dict[Path, tuple[TrainJob, dict[str, Any]]] = {}
    folders: dict[Path, dict[str, Path]] = {}
    for block in spec.blocks:
        for job, config_dir, point in block_jobs(block, sweep_dir, folders):
            if config_dir in configs:  # the same configuration named twice: one job, all seeds
                had, _ = configs[config_dir]
                diff = _same_settings(job_record(had), job_record(job))
                if diff:
                    raise ConfigError(
                        f"{job.task}, {job.agent}, {format_point(point)} is given twice with "
                        f"different settings ({', '.join(diff)})"
                    )
                had.seeds = list(dict.fromkeys([*had.seeds, *job.seeds]))
            else:
                configs[config_dir] = (job, point)
    runs: list[PlannedRun] = []
    units: list[Unit] = []
    for config_dir, (job, point) in configs.items():
        cid = config_id(job.task, job.agent, job_record(job)["agent_config"], job.steps)
        runs += [
            PlannedRun(config_dir / f"seed{s}", job.task, job.agent, cid, s, job.total_steps, point)
            for s in job.seeds
        ]
        units += _reconcile(job, config_dir, point, retry_failed)
    # after _reconcile: a configuration's own folder with other settings is its error to name
    check_budgets(sweep_dir, (job for job, _ in configs.values()))
    return Plan(sweep_dir, runs, units, spec.grid_keys)


def _reconcile(
    job: TrainJob, config_dir: Path, point: dict[str, Any], retry_failed: bool
) -> list[Unit]:
    """The units still to run for `job`'s seeds, given what config_dir holds."""
    planned = job_record(job)
    seen = {}
    if config_dir.is_dir():
        for d in sorted(config_dir.iterdir()):
            m = _SEED_DIR.fullmatch(d.name)
            if m and d.is_dir():
                seen[int(m[1])] = read_seed_dir(d)
    groups: dict[tuple[int, ...], SeedDir] = {}
    fresh: list[int] = []
    clear: list[Path] = []
    for seed in job.seeds:
        sd = seen.get(seed)
        if sd is None or (sd.record is None and sd.failed is None):
            fresh.append(seed)
            continue
        if sd.failed is not None:
            if retry_failed:
                fresh.append(seed)
                clear.append(sd.path)
            continue
        diff = _same_settings(sd.record, planned)
        if diff:
            raise ConfigError(
                f"{sd.path / 'config.json'}: this sweep directory holds seed {seed} of "
                f"{job.task}, {job.agent}, {format_point(point)} with other settings "
                f"({', '.join(diff)}); use another --out, or the settings it was made with"
            )
        group = tuple(sd.record.get("seeds") or [sd.record.get("seed")])
        groups.setdefault(group, sd)
    units = []
    for group, sd in groups.items():
        members = [seen.get(s) for s in group]
        live = [m for m in members if m is not None and m.failed is None]
        if all(m.finished for m in live):
            continue
        resumed = job_from_record(
            sd.record, sd.path / "config.json", out_for(config_dir, list(group)), progress=False
        )
        if job.dataset_dir is not None:  # the data may have moved (its checksum is checked)
            resumed.dataset_dir = job.dataset_dir
        units.append(Unit(resumed, config_dir, point, resume=True))
    if fresh:
        new = dataclasses.replace(job, seeds=fresh, out=out_for(config_dir, fresh))
        units.append(Unit(new, config_dir, point, resume=False, clear=clear))
    return units


# ---- sweep.json ---------------------------------------------------------------------------------
def read_sweep_file(sweep_dir: Path) -> dict[str, Any]:
    """sweep.json of a sweep directory; ConfigError if the folder holds none."""
    data = read_json(Path(sweep_dir) / SWEEP_FILE)
    if data is None:
        raise ConfigError(
            f"{sweep_dir}: no {SWEEP_FILE} here; not a gfp sweep directory (made by gfp sweep)"
        )
    if not isinstance(data.get("runs"), dict):
        raise DataError(f"{Path(sweep_dir) / SWEEP_FILE}: no 'runs' object")
    return data


def write_sweep_file(plan: Plan, command: str) -> None:
    """Add this plan's runs and grid keys to sweep.json (atomically): the folder's record of
    everything it is meant to hold, across invocations."""
    path = plan.sweep_dir / SWEEP_FILE
    old = read_json(path) or {}
    runs = dict(old.get("runs") or {})
    for run in plan.runs:
        runs[run.path.relative_to(plan.sweep_dir).as_posix()] = run.entry()
    keys = list(dict.fromkeys([*(old.get("grid_keys") or []), *plan.grid_keys]))
    now = datetime.datetime.now().isoformat(timespec="seconds")
    history = [*(old.get("invocations") or []), {"time": now, "command": command}]
    plan.sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        path, {"format": SWEEP_FORMAT, "grid_keys": keys, "runs": runs, "invocations": history}
    )
