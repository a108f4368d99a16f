"""`gfp tune ENV`: the paper's tuning protocol (App. A, with Tab. 4) as one command.

1. alpha over a log grid with eta fixed at 1e-3 (agents without eta: alpha alone);
2. eta over its grid at the best alpha;
on tuning seeds (100-103 by default; the evaluation seeds 0-7 are refused), every setting trained
on each of the environment's tasks (its five OGBench tasks) and scored by the mean over tasks of
the mean over seeds of each run's last three evaluations (success on OGBench, the normalized score
on D4RL and Minari) of the agent's `actor` policy. The paper shares one setting per environment,
so the winner is ONE row per key for the environment, written to the user presets table
(gfp/presets.py: `$GFP_PRESETS` or ~/.config/gfp/presets.csv) under the preset name `tuned`, with
its source (`gfp tune DIR DATE: score ...`): `gfp train --preset tuned` then uses it.

Both phases run as sweeps in one folder (default tune/ENV/AGENT), so tuning resumes like a sweep:
the same command again trains only what is missing.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gfp.agents.configs import config_class
from gfp.errors import ConfigError, DataError, Interrupted
from gfp.sweep.executor import Options, execute, ray_session
from gfp.sweep.lock import driver_lock
from gfp.sweep.plan import Plan, make_plan
from gfp.sweep.spec import Block, SweepSpec

DEFAULT_ALPHAS = (10.0, 3.0, 1.0, 0.3, 0.1, 0.03, 0.01)  # the span of the paper's GFP alphas
DEFAULT_ETAS = (1.0, 0.1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)  # the span of the paper's GFP etas
FIXED_ETA = 1e-3  # eta during the alpha sweep (paper App. A)
TUNING_SEEDS = (100, 101, 102, 103)
EVALUATION_SEEDS = range(8)
POLICY = "actor"  # every agent's main policy


@dataclasses.dataclass
class Setting:
    """One (alpha, eta) setting and its score over the tuning runs."""

    values: dict[str, float]
    score: float  # NaN when some of its runs failed or have not finished
    runs: int
    failed: int


def env_tasks(env: str, tasks: Sequence[str] | None = None) -> tuple[str, list[str]]:
    """(environment key, tasks): the environment's tasks (OGBench: task1..task5), or the given
    subset of them; ConfigError for a task of another environment."""
    from gfp.tasks import expand_tasks, parse_task

    all_tasks = expand_tasks(env)
    keys = {parse_task(t).env_key for t in all_tasks}
    if len(keys) != 1:
        raise ConfigError(f"gfp tune tunes one environment at a time; {env!r} names {len(keys)}")
    key = keys.pop()
    if not tasks:
        return key, all_tasks
    short = {f"task{i}": f"{key}-singletask-task{i}-v0" for i in range(1, 6)}  # --tasks task1
    chosen = expand_tasks(",".join(short.get(t.strip(), t) for t in tasks))
    other = [t for t in chosen if parse_task(t).env_key != key]
    if other:
        raise ConfigError(f"--tasks {', '.join(other)}: not tasks of the environment {key}")
    return key, chosen


def _metric(benchmark: str) -> str:
    return "success" if benchmark.startswith("ogbench") else "normalized_score"


def score_settings(
    rows: Sequence[dict[str, Any]], plan: Plan, keys: Sequence[str]
) -> list[Setting]:
    """Each setting of `plan` (by its values of `keys`) scored from results rows: per run the mean
    of its last three evaluations, then the mean over seeds per task, then over tasks."""
    by_run: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["policy"] == POLICY:
            by_run.setdefault(str(Path(row["run_dir"]).resolve()), []).append(row)
    settings: dict[tuple, dict[str, Any]] = {}
    for run in plan.runs:
        values = {k: float(run.grid[k]) for k in keys}
        s = settings.setdefault(tuple(values.values()), {"values": values, "tasks": {}, "bad": 0})
        evals = sorted(by_run.get(str(run.path.resolve()), []), key=lambda r: r["step"])
        done = bool(evals) and evals[-1]["finished"] and evals[-1]["step"] == run.steps
        if not done:
            s["bad"] += 1
            continue
        metric = _metric(evals[-1]["benchmark"])
        last3 = [float(r[metric]) for r in evals[-3:]]
        s["tasks"].setdefault(run.task, []).append(sum(last3) / len(last3))
    out = []
    for s in settings.values():
        per_task = [sum(v) / len(v) for v in s["tasks"].values()]
        n = sum(len(v) for v in s["tasks"].values())
        score = sum(per_task) / len(per_task) if per_task and not s["bad"] else math.nan
        out.append(Setting(s["values"], score, n + s["bad"], s["bad"]))
    return out


def best(settings: Sequence[Setting]) -> Setting:
    scored = [s for s in settings if not math.isnan(s.score)]
    if not scored:
        raise DataError(
            "no setting could be scored: every one has failed or unfinished runs (see "
            "gfp sweep status on the tuning folder)"
        )
    return max(scored, key=lambda s: s.score)


def write_winner(
    path: Path, name: str, agent: str, env: str, values: dict[str, float], source: str, note: str
) -> None:
    """Put the winner's rows into the user presets table at `path` (atomically), replacing that
    preset's earlier rows for (agent, env, key); other rows are kept as they are."""
    from gfp.agents.configs import format_value
    from gfp.io import atomic_write_bytes
    from gfp.presets import COLUMNS, load_user_table

    kept: list[list[str]] = []
    if path.is_file():
        load_user_table(path)  # refuse to rewrite a table that is already broken
        with path.open(newline="", encoding="utf-8") as f:
            kept = [r for r in csv.reader(f)][1:]
    ours = {(name, agent, env, k) for k in values}
    kept = [r for r in kept if r and tuple(c.strip() for c in r[:4]) not in ours]
    new = [[name, agent, env, k, format_value(v), source, note] for k, v in values.items()]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows([*kept, *new])
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue().encode())
    load_user_table(path)  # what was written must read back


def _format(settings: Sequence[Setting]) -> list[str]:
    lines = []
    for s in sorted(settings, key=lambda s: tuple(s.values.values()), reverse=True):
        shown = ", ".join(f"{k} {v:g}" for k, v in s.values.items())
        score = "failed/unfinished" if math.isnan(s.score) else f"{s.score:.4f}"
        lines.append(f"  {shown}: {score} ({s.runs} runs)")
    return lines


def run_tune(
    env: str,
    agent: str,
    block: Block,
    opts: Options,
    *,
    out: Path,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    etas: Sequence[float] = DEFAULT_ETAS,
    presets_file: Path,
    name: str = "tuned",
    command: str = "gfp tune",
) -> dict[str, float]:
    """Tune (module docstring); returns the winning values. `block` carries the tasks, seeds and
    training settings (its agents and grid are set here; single grid values are kept as fixed
    settings, e.g. network sizes)."""
    fields = {f.name for f in dataclasses.fields(config_class(agent))}
    if "alpha" not in fields:
        raise ConfigError(f"gfp tune sweeps alpha (and eta); agent {agent!r} has no alpha")
    early = sorted(set(block.seeds) & set(EVALUATION_SEEDS))
    if early:
        raise ConfigError(
            f"tuning seeds {early} are evaluation seeds (0-7): tune on separate seeds, e.g. "
            "--seeds 100-103"
        )
    env_key, _ = env_tasks(env, block.tasks)
    keys = ["alpha", "eta"] if "eta" in fields else ["alpha"]
    fixed = {k: v for k, v in block.grid.items() if k not in keys}
    first = {"alpha": list(alphas), **({"eta": [FIXED_ETA]} if "eta" in keys else {})}

    def phase(grid: dict[str, list[Any]]) -> Plan:
        spec = SweepSpec([dataclasses.replace(block, agents=[agent], grid={**fixed, **grid})])
        plan = make_plan(spec, out)
        outcome = execute(plan, opts, command)
        if outcome.interrupted:
            raise Interrupted(
                f"tuning stopped; the same command continues it (folder {out})", signum=2
            )
        return plan

    spec_check = SweepSpec([dataclasses.replace(block, agents=[agent], grid={**fixed, **first})])
    make_plan(spec_check, out)  # every setting of phase 1 validated before anything runs
    lock = driver_lock(out, break_lock=opts.break_lock, command=command,
                       log=lambda text: print(f"gfp tune: {text}", file=sys.stderr))  # fmt: skip
    with lock, ray_session(opts):
        from gfp.results import build_results

        plans = [phase(first)]
        scored = score_settings(build_results(out, keys), plans[0], keys)
        at = f" at eta {FIXED_ETA:g}" if "eta" in keys else ""
        print(f"gfp tune: {env_key}, alpha{at}:")
        print("\n".join(_format(scored)))
        if "eta" in keys:
            alpha = best(scored).values["alpha"]
            plans.append(phase({"alpha": [alpha], "eta": list(etas)}))
            merged = Plan(out, plans[0].runs + plans[1].runs, [], keys)
            scored = score_settings(build_results(out, keys), merged, keys)
            print(f"gfp tune: {env_key}, eta at alpha {alpha:g}:")
            print("\n".join(_format([s for s in scored if s.values["alpha"] == alpha])))
    win = best(scored)
    metric = _metric_of(plans[0])
    n_tasks = len({r.task for r in plans[0].runs})
    date = datetime.date.today().isoformat()
    source = (
        f"gfp tune {out} {date}: mean last-3 {metric} {win.score:.4f} over {n_tasks} task(s) x "
        f"{len(block.seeds)} seed(s)"
    )
    grids = "; ".join(
        f"{k} grid {' '.join(f'{v:g}' for v in (alphas if k == 'alpha' else etas))}" for k in keys
    )
    note = f"{grids}; {block.steps or 'preset'} steps; preset {block.preset or 'paper'}"
    write_winner(presets_file, name, agent, env_key, win.values, source, note)
    shown = ", ".join(f"{k} {v:g}" for k, v in win.values.items())
    print(f"gfp tune: best for {agent} on {env_key}: {shown} ({metric} {win.score:.4f})")
    print(f"gfp tune: written to {presets_file} as preset {name!r}: gfp train --task TASK "
          f"--agent {agent} --preset {name}")  # fmt: skip
    return win.values


def _metric_of(plan: Plan) -> str:
    from gfp.tasks import parse_task

    return _metric(parse_task(plan.runs[0].task).benchmark)
