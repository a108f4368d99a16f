"""From result rows to the numbers a report shows: one final score per (task, column, seed), and
the learning curves.

Scores follow the paper's protocol (Sec. 4; docs/paper-vs-code.md #13):
* OGBench (state and pixel): success rate x 100, each seed's value being the mean of its LAST
  THREE evaluations (the paper's 800K/900K/1M checkpoints; fewer if the run has fewer);
* D4RL and Minari: the normalized return (already x 100 in eval.csv) at the LAST evaluation;
* other tasks: success x 100 where the environment reports success, else the normalized score,
  else the raw return.

A column is one (agent, policy): the paper reports one column per method and, for GFP, both the
one-step actor (pi_theta) and the VaBC policy (pi_omega). Settings follow the paper's protocol
(App. A: one setting per environment, chosen on tuning seeds kept apart from the evaluation
seeds): where the sources hold tuning runs of an (environment, agent) (`gfp tune`'s folders:
results.csv's `made_by`), the setting with the best mean over the environment's tasks and the
tuning seeds is chosen there and the tables show the evaluation runs of that setting; tuning runs
never enter the tables. Where there is only one set of seeds and several settings, none is
picked (a best-of on the seeds it reports is biased upward): every setting is shown in the
per-setting table and the heat map, and the main tables leave that agent out. Ties go to the
setting that sorts first, whatever the order of the inputs.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gfp.results import PROVENANCE_COLUMNS, RESULT_COLUMNS, VAL_PREFIX

OGBENCH_LAST_K = 3  # evaluations averaged per seed on OGBench (the paper's last 3 checkpoints)
# Policies reported per agent (the paper: GFP's actor and VaBC; every other agent's deployed
# policy). FQL's `flow` (its BC flow policy) is not a column in the paper.
REPORTED_POLICIES: dict[str, tuple[str, ...]] = {
    "gfp": ("actor", "vabc"),
    "flow_bc": ("flow",),
}
# Column order: the paper's (IQL, ReBRAC, FQL, GFP actor, GFP VaBC), others first.
AGENT_ORDER = ("bc", "flow_bc", "iql", "rebrac", "fql", "qc", "gfp")
AGENT_LABEL = {
    "gfp": "GFP",
    "fql": "FQL",
    "rebrac": "ReBRAC",
    "iql": "IQL",
    "bc": "BC",
    "flow_bc": "Flow BC",
    "qc": "QC",  # Q-chunking's best-of-N agent (Li, Zhou, Levine 2025)
}
POLICY_LABEL = {"actor": "actor", "vabc": "VaBC", "flow": "flow"}


@dataclass(frozen=True, order=True)
class Column:
    """One column of the tables: an agent's policy."""

    agent: str
    policy: str

    @property
    def key(self) -> str:
        return f"{self.agent}/{self.policy}"

    @property
    def label(self) -> str:
        name = AGENT_LABEL.get(self.agent, self.agent)
        if len(REPORTED_POLICIES.get(self.agent, ("actor",))) > 1:
            return f"{name} {POLICY_LABEL.get(self.policy, self.policy)}"
        return name

    def sort_key(self) -> tuple[int, str, int]:
        agent_rank = AGENT_ORDER.index(self.agent) if self.agent in AGENT_ORDER else -1
        pols = REPORTED_POLICIES.get(self.agent, ("actor",))
        return (agent_rank, self.agent, pols.index(self.policy) if self.policy in pols else 99)


def reported_policy(agent: str, policy: str, policies: Iterable[str]) -> bool:
    """Whether the report shows this policy of the agent (an unknown agent: its first policy)."""
    wanted = REPORTED_POLICIES.get(agent)
    if wanted is None:
        wanted = ("actor",) if "actor" in policies else tuple(sorted(policies))[:1]
    return policy in wanted


def score_of(row: Mapping[str, Any]) -> float:
    """The row's score on the report's scale (x 100), by the rules in the module docstring."""
    success, norm, ret = row["success"], row["normalized_score"], row["return"]
    bench = row["benchmark"]
    if bench in ("ogbench", "ogbench-pixel"):
        return 100.0 * success
    if bench in ("d4rl", "minari"):
        return norm
    if not math.isnan(success):
        return 100.0 * success
    return norm if not math.isnan(norm) else ret


def score_name(benchmarks: Iterable[str]) -> str:
    kinds = set()
    for b in benchmarks:
        kinds.add("success rate x 100" if b.startswith("ogbench") else "normalized return x 100")
    return " / ".join(sorted(kinds))


@dataclass
class SeedScore:
    """The final score of one seed (one run) in one column."""

    task: str
    env: str
    benchmark: str
    column: Column
    setting: tuple  # the grid values in `Collected.grid_keys` order, then the total steps
    seed: int
    run_dir: str
    value: float
    last_step: int
    total_steps: int
    finished: bool
    success_timing: str
    tuning: bool = False  # a run of `gfp tune` (tuning seeds)
    provenance: dict[str, str] = field(default_factory=dict)  # results.PROVENANCE_COLUMNS
    # (horizon, action_chunking) of the run (`chunking_of`), None where not known
    chunking: tuple[int, bool] | None = None


@dataclass
class Collected:
    """Everything the tables, aggregates and figures need, after the setting selection."""

    finals: list[SeedScore]
    curves: dict[tuple[str, Column], dict[int, dict[int, float]]]  # (task, col) -> seed -> step
    columns: list[Column]
    grid_keys: list[str]
    # (env, agent) -> (chosen setting, {column label: its env mean}, number of settings), where
    # a choice was made
    selected: dict[tuple[str, str], tuple[tuple, dict[str, float], int]] = field(
        default_factory=dict
    )
    # every setting's env-level mean per column (the alpha x eta heat maps):
    # (env, column key 'gfp/actor', setting) -> mean over the env's tasks of the per-task means
    setting_means: dict[tuple[str, str, tuple], float] = field(default_factory=dict)
    timings: dict[str, int] = field(default_factory=dict)  # success_timing -> number of runs
    phase: str = "offline"
    # (env, agent) with several settings on one set of seeds: none chosen; their scores here
    per_setting: list[SeedScore] = field(default_factory=list)
    # (env, agent) whose setting chosen on tuning seeds has no evaluation runs -> that setting
    unevaluated: dict[tuple[str, str], tuple] = field(default_factory=dict)
    # runs whose evaluations repeat another run's exactly (same task, policy, setting and seed:
    # e.g. an offline-then-online run's offline phase beside the offline run), counted once
    repeats: list[str] = field(default_factory=list)

    def setting_label(self, setting: tuple) -> str:
        """'alpha=3.0, eta=0.01' (and '8000 steps' when the run lengths differ)."""
        *grid, steps = setting
        parts = [f"{k}={v}" for k, v in zip(self.grid_keys, grid, strict=True)]
        if len({s[-1] for (_, _, s) in self.setting_means}) > 1:
            parts.append(f"{steps} steps")
        return ", ".join(parts)


def grid_keys_of(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    keys: list[str] = []
    for row in rows:
        for k in row:
            # a run's validation metrics (results.csv's val_*) are figures, not settings
            if k not in RESULT_COLUMNS and k not in keys and not k.startswith(VAL_PREFIX):
                keys.append(k)
    return keys


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return {"true": True, "1": True, "false": False, "0": False}.get(text)


def chunking_of(row: Mapping[str, Any], configs: dict[str, Any] | None = None):
    """(horizon, action_chunking) of a row's run, for the comparisons with Q-chunking's numbers:
    the row's own `horizon` / `action_chunking` columns where it has them (swept keys), else the
    run's config.json (`configs` caches them by run directory); a config without `horizon`
    predates action chunking, so horizon 1. None where neither says (a results.csv whose run
    directories are elsewhere)."""
    from gfp.errors import GfpError
    from gfp.results import read_run_config

    horizon, chunk = row.get("horizon", ""), row.get("action_chunking", "")
    if horizon in ("", None) or chunk in ("", None):
        run_dir = str(row.get("run_dir") or "")
        configs = {} if configs is None else configs
        if run_dir not in configs and not run_dir:
            configs[run_dir] = None
        elif run_dir not in configs:
            try:
                configs[run_dir] = read_run_config(run_dir).get("agent_config") or {}
            except (GfpError, OSError):
                configs[run_dir] = None
        agent_config = configs[run_dir]
        if isinstance(agent_config, dict):
            if horizon in ("", None):
                horizon = agent_config.get("horizon", 1)
            if chunk in ("", None):
                chunk = agent_config.get("action_chunking", True)
    try:
        h = int(horizon)
    except (TypeError, ValueError):
        return None
    flag = _flag(chunk) if chunk not in ("", None) else None
    return (h, True if flag is None else flag)


def _final(values: list[tuple[int, float]], benchmark: str) -> float:
    values = sorted(values)
    if benchmark in ("ogbench", "ogbench-pixel"):
        last = [v for _, v in values[-OGBENCH_LAST_K:]]
        return float(np.mean(last))
    return float(values[-1][1])


def collect(rows: Sequence[Mapping[str, Any]], phase: str = "offline") -> Collected:
    """Per-seed final scores and curves of the reported policies of one phase ('offline': the
    paper's tables; 'online': the evaluations of the online fine-tuning after it), keeping the
    best setting per (env, agent) when a source holds several."""
    rows = [r for r in rows if (r.get("phase") or "offline") == phase]
    check_budgets(rows)
    grid_keys = grid_keys_of(rows)
    policies_of: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        policies_of[row["agent"]].add(row["policy"])
    per_run: dict[tuple, list[tuple[int, float]]] = defaultdict(list)
    meta: dict[tuple, Mapping[str, Any]] = {}
    for row in rows:
        if not reported_policy(row["agent"], row["policy"], policies_of[row["agent"]]):
            continue
        value = score_of(row)
        if math.isnan(value):
            continue
        # a setting: the swept values, and the run length (runs of different lengths never mix)
        setting = (*(_hashable(row.get(k, "")) for k in grid_keys), int(row["total_steps"]))
        key = (row["task"], Column(row["agent"], row["policy"]), setting, row["run_dir"])
        per_run[key].append((int(row["step"]), value))
        meta[key] = row
    repeats = _drop_repeats(per_run, meta)
    configs: dict[str, Any] = {}
    finals = []
    curves: dict[tuple[str, Column], dict[int, dict[int, float]]] = {}
    for key, values in per_run.items():
        task, col, setting, run_dir = key
        row = meta[key]
        finals.append(
            SeedScore(
                task=task,
                env=row["env"],
                benchmark=row["benchmark"],
                column=col,
                setting=setting,
                seed=int(row["seed"]),
                run_dir=run_dir,
                value=_final(values, row["benchmark"]),
                last_step=max(s for s, _ in values),
                total_steps=int(row["total_steps"]),
                finished=bool(row["finished"]),
                success_timing=str(row.get("success_timing") or ""),
                tuning=str(row.get("made_by") or "") == "gfp tune",
                provenance={c: str(row.get(c, "") or "") for c in PROVENANCE_COLUMNS},
                chunking=chunking_of(row, configs),
            )
        )
    finals, selected, setting_means, per_setting, unevaluated = _select_settings(finals)
    kept = {(f.task, f.column, f.setting, f.run_dir) for f in finals}
    for key, values in per_run.items():
        if key in kept:
            task, col, _, run_dir = key
            seed = int(meta[key]["seed"])
            # two runs with one seed number (copies): keep them apart with the run's index
            per_seed = curves.setdefault((task, col), {})
            while seed in per_seed:
                seed += 1_000_000
            per_seed[seed] = dict(sorted(values))
    timings: dict[str, int] = defaultdict(int)
    for run in {(f.run_dir, f.success_timing) for f in finals}:
        timings[run[1]] += 1
    columns = sorted({f.column for f in finals}, key=Column.sort_key)
    return Collected(
        finals,
        curves,
        columns,
        grid_keys,
        selected,
        setting_means,
        dict(timings),
        phase,
        per_setting,
        unevaluated,
        repeats,
    )


def _drop_repeats(per_run: dict[tuple, list], meta: dict[tuple, Mapping[str, Any]]) -> list[str]:
    """Remove from `per_run` the runs whose evaluations equal, step for step, those of another
    run of the same task, policy, setting and seed (the same computation: training is
    deterministic), keeping the first run directory in sorted order; returns the removed ones.
    An offline-then-online run's offline phase is the offline run of its seed: counting both would
    count one seed twice."""
    first: dict[tuple, tuple] = {}
    removed: set[str] = set()
    for key in sorted(per_run, key=lambda k: str(k[3])):
        task, col, setting, run_dir = key
        twin = (task, col, setting, int(meta[key]["seed"]), tuple(sorted(per_run[key])))
        if twin in first:
            removed.add(str(run_dir))
        else:
            first[twin] = key
    for key in [k for k in per_run if str(k[3]) in removed]:
        del per_run[key]
        del meta[key]
    return sorted(removed)


# What makes two runs comparable (their budget): the result columns, and the words a message uses
BUDGET = {
    "total_steps": "steps",
    "preset": "preset",
    "dataset": "dataset",
    "eval_episodes": "eval episodes",
}


def check_budgets(rows: Sequence[Mapping[str, Any]]) -> None:
    """Refuse (ConfigError, one line) rows in which one environment (its tasks: a per-environment
    row averages them) has runs of different budgets (steps, preset, dataset, evaluation
    episodes): their scores are not comparable, and a best-of over them would pick across budgets.
    A value a run does not record (older runs) is not compared."""
    from gfp.errors import ConfigError

    runs: dict[str, dict[str, dict[str, list[str]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    seen: set[tuple[str, str]] = set()
    for row in rows:
        if (row["env"], row["run_dir"]) in seen:
            continue
        seen.add((row["env"], row["run_dir"]))
        for col in BUDGET:
            value = str(row.get(col, ""))
            if value not in ("", "-1"):
                runs[row["env"]][col][value].append(str(row["run_dir"]))
    for env in sorted(runs):
        for col, by_value in runs[env].items():
            if len(by_value) > 1:
                parts = " and ".join(
                    f"{BUDGET[col]} {v} ({len(d)} run{'s' * (len(d) > 1)}, e.g. {min(d)})"
                    for v, d in sorted(by_value.items(), key=lambda kv: _natural(kv[0]))
                )
                raise ConfigError(
                    f"gfp report: {env} has runs of different budgets, {parts}; a report compares "
                    "one budget per environment: report each budget's runs on their own"
                )


def _natural(text: str) -> tuple:
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def _hashable(v: Any) -> Any:
    """A grid value usable in a dict key (lists from JSON become tuples)."""
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    return v


def setting_order(setting: tuple) -> tuple:
    """A total order of settings that does not depend on the inputs' order (ties go to the
    first)."""
    return tuple(_natural(str(v)) for v in setting)


def _select_settings(finals: list[SeedScore]):
    """One setting per (env, agent), by the module docstring's protocol: chosen on the tuning
    runs where there are some (the best mean over the env's tasks of the first reported policy,
    ties by its other policies, then `setting_order`), and reported on the evaluation runs of it;
    with only one set of seeds, kept when it is the only setting, else none chosen (all of them
    go to `per_setting`). Returns (kept scores, choices {(env, agent): (setting, {column label:
    tuning mean}, number of settings)}, every (env, column, setting) mean — of the tuning runs
    where there are some —, per-setting scores, chosen settings without evaluation runs)."""
    tuned_agents = {(f.env, f.column.agent) for f in finals if f.tuning}
    pool = [f for f in finals if f.tuning or (f.env, f.column.agent) not in tuned_agents]
    by_col: dict[tuple[str, Column], dict[tuple, dict[str, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for f in pool:
        by_col[(f.env, f.column)][f.setting][f.task].append(f.value)
    setting_means: dict[tuple[str, str, tuple], float] = {}
    for (env, col), settings in by_col.items():
        for st, per_task in settings.items():
            setting_means[(env, col.key, st)] = float(
                np.mean([np.mean(v) for v in per_task.values()])
            )
    selected, kept, per_setting, unevaluated = {}, [], [], {}
    for env, agent in sorted({(env, col.agent) for env, col in by_col}):
        cols = sorted((c for e, c in by_col if e == env and c.agent == agent), key=Column.sort_key)
        settings = sorted({st for c in cols for st in by_col[(env, c)]}, key=setting_order)
        mine = [f for f in finals if (f.env, f.column.agent) == (env, agent) and not f.tuning]
        if (env, agent) in tuned_agents:
            rank = {
                st: tuple(setting_means.get((env, c.key, st), -np.inf) for c in cols)
                for st in settings
            }
            best = max(settings, key=rank.__getitem__)  # the first of equals in setting_order
            means = {c.label: m for c, m in zip(cols, rank[best], strict=True)}
            selected[(env, agent)] = (best, means, len(settings))
            chosen = [f for f in mine if f.setting == best]
            kept += chosen
            if not chosen:
                unevaluated[(env, agent)] = best
        elif len(settings) > 1:
            per_setting += mine
        else:
            kept += mine
    return kept, selected, setting_means, per_setting, unevaluated
