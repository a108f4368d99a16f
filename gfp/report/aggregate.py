"""Aggregate statistics with rliable (Agarwal et al. 2021), the library itself: IQM, mean, median
and optimality gap with stratified-bootstrap 95% confidence intervals per column (agent/policy),
performance profiles, and the probability of improvement of each column over a baseline.

rliable wants one (runs x tasks) matrix per column, on the same tasks. So: the tasks are those
every column has; the runs per task are the smallest seed count among them (the lowest seed
numbers are kept); both choices are recorded in aggregate.json. Scores are given to rliable on
the fraction scale (score / 100: 1.0 = 100% success or the expert's normalized return), so that
the optimality gap uses its default threshold gamma = 1; every number is reported x 100 again.

rliable draws its bootstrap indices from NumPy's global RNG (it ignores `random_state` under arch
7), so each call runs under a fixed global seed (restored afterwards): the same inputs give the
same intervals.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from gfp.errors import ConfigError
from gfp.report.scores import REPORTED_POLICIES, Collected, Column, SeedScore

METRIC_NAMES = ("IQM", "Mean", "Median", "Optimality gap")
DEFAULT_REPS = 2000
# rliable's probability of improvement runs scipy's Mann-Whitney U per task and replicate: about
# 1 ms each, so 2000 replicates of 100 tasks x 2 pairs take minutes. Its interval uses at most
# this many replicates (recorded in aggregate.json); the point estimate needs none.
IMPROVEMENT_REPS = 200
PROFILE_POINTS = 101


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _metrics(scores: np.ndarray) -> np.ndarray:
    from rliable import metrics

    return np.array(
        [
            metrics.aggregate_iqm(scores),
            metrics.aggregate_mean(scores),
            metrics.aggregate_median(scores),
            metrics.aggregate_optimality_gap(scores),
        ]
    )


def score_matrices(
    finals: Sequence[SeedScore], columns: Sequence[Column]
) -> tuple[dict[Column, np.ndarray], list[str], int, dict[str, list[str]]]:
    """({column: (runs x tasks) matrix on the fraction scale}, tasks, runs per task, {column:
    tasks it has that others lack})."""
    values: dict[Column, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for f in finals:
        per_seed = values[f.column][f.task]
        seed = f.seed
        while seed in per_seed:  # two runs with one seed number: keep both
            seed += 1_000_000
        per_seed[seed] = f.value
    columns = [c for c in columns if c in values]
    if not columns:
        return {}, [], 0, {}
    common = sorted(set.intersection(*(set(values[c]) for c in columns)))
    dropped = {c.key: sorted(set(values[c]) - set(common)) for c in columns}
    if not common:
        return {}, [], 0, dropped
    runs = min(len(values[c][t]) for c in columns for t in common)
    mats = {}
    for c in columns:
        cols = [[values[c][t][s] for s in sorted(values[c][t])[:runs]] for t in common]
        mats[c] = np.array(cols, dtype=float).T / 100.0
    return mats, common, runs, {k: v for k, v in dropped.items() if v}


def baseline_column(baseline: str, columns: Sequence[Column]) -> Column | None:
    """`fql` (its first reported policy) or `fql/flow`; None if the sources lack it."""
    agent, _, policy = baseline.partition("/")
    if not agent:
        raise ConfigError("--baseline: give an agent name such as fql (or agent/policy)")
    policy = policy or REPORTED_POLICIES.get(agent, ("actor",))[0]
    col = Column(agent, policy)
    return col if col in columns else None


def check_baseline(baseline: str, columns: Sequence[Column]) -> None:
    """A ConfigError naming what is there unless `baseline` (agent or agent/policy) is one of the
    report's columns: a baseline the user chose must be measured against, not skipped."""
    if baseline_column(baseline, columns) is not None:
        return
    agent = baseline.partition("/")[0]
    policies: dict[str, list[str]] = {}
    for c in columns:
        if c.policy not in policies.setdefault(c.agent, []):
            policies[c.agent].append(c.policy)
    if agent in policies:
        raise ConfigError(
            f"--baseline {baseline}: agent {agent} has no such policy in the sources (its "
            f"policies there: {', '.join(policies[agent])}); give --baseline {agent}/POLICY"
        )
    there = ", ".join(f"{a} ({', '.join(ps)})" for a, ps in sorted(policies.items()))
    raise ConfigError(
        f"--baseline {baseline}: no agent {agent} in the sources; the agents there: {there}"
    )


def _interval(point: float, low: float, high: float) -> dict[str, float]:
    return {"point": 100 * float(point), "low": 100 * float(low), "high": 100 * float(high)}


def aggregate_subset(
    finals: Sequence[SeedScore],
    columns: Sequence[Column],
    baseline: str,
    reps: int = DEFAULT_REPS,
    seed: int = 0,
) -> dict[str, Any] | None:
    """The rliable statistics of one set of tasks; None when no task is shared by all columns."""
    from rliable import library as rly
    from rliable import metrics

    mats, tasks, runs, dropped = score_matrices(finals, columns)
    if not mats:
        return None
    by_key = {c.key: m for c, m in mats.items()}
    with _seeded(seed):
        points, cis = rly.get_interval_estimates(by_key, _metrics, reps=reps)
    out: dict[str, Any] = {
        "tasks": tasks,
        "runs_per_task": runs,
        "tasks_dropped": dropped,
        "metrics": {
            key: {
                name: _interval(points[key][i], cis[key][0, i], cis[key][1, i])
                for i, name in enumerate(METRIC_NAMES)
            }
            for key in by_key
        },
    }
    top = max(1.0, max(float(m.max()) for m in mats.values()))
    taus = np.linspace(0.0, top, PROFILE_POINTS)
    with _seeded(seed + 1):
        profiles, profile_cis = rly.create_performance_profile(by_key, taus, reps=reps)
    out["profile"] = {
        "tau": [100 * float(t) for t in taus],
        "fraction_of_runs_above": {
            key: {
                "point": [float(v) for v in profiles[key]],
                "low": [float(v) for v in profile_cis[key][0]],
                "high": [float(v) for v in profile_cis[key][1]],
            }
            for key in by_key
        },
    }
    base = baseline_column(baseline, list(mats))
    if base is None:
        out["improvement"] = {"baseline": baseline, "missing": True}
        return out
    pairs = {c.key: (mats[c], mats[base]) for c in mats if c != base}
    improvement: dict[str, Any] = {"baseline": base.key, "over": {}}
    improvement["reps"] = min(reps, IMPROVEMENT_REPS)
    if pairs:
        with _seeded(seed + 2):
            p_points, p_cis = rly.get_interval_estimates(
                pairs, metrics.probability_of_improvement, reps=improvement["reps"]
            )
        for key in pairs:
            low, high = np.ravel(p_cis[key])
            improvement["over"][key] = {
                "point": float(p_points[key]),
                "low": float(low),
                "high": float(high),
            }
    out["improvement"] = improvement
    return out


def compute_aggregates(
    data: Collected, baseline: str = "fql", reps: int = DEFAULT_REPS, seed: int = 0
) -> dict[str, Any]:
    """aggregate.json: the statistics over all tasks, and per benchmark when there are several."""
    from gfp.report.tables import BENCHMARK_LABEL

    subsets: dict[str, list[SeedScore]] = {"all": list(data.finals)}
    benchmarks = sorted({f.benchmark for f in data.finals})
    if len(benchmarks) > 1:
        for b in benchmarks:
            subsets[b] = [f for f in data.finals if f.benchmark == b]
    results = {}
    for name, finals in subsets.items():
        got = aggregate_subset(finals, data.columns, baseline, reps=reps, seed=seed)
        if got is not None:
            got["label"] = "all tasks" if name == "all" else BENCHMARK_LABEL.get(name, name)
            results[name] = got
    return {
        "about": (
            "rliable stratified-bootstrap 95% confidence intervals (percentile method). Scores "
            "x 100: success rate (OGBench) or normalized return (D4RL, Minari); each run's score "
            "as in the tables (OGBench: mean of the last three evaluations). Optimality gap: "
            "100 - mean(min(score, 100)). Probability of improvement P(X > baseline) per task, "
            "averaged over tasks (Mann-Whitney U), in [0, 1]."
        ),
        "reps": reps,
        "confidence": 0.95,
        "columns": {c.key: c.label for c in data.columns},
        "subsets": results,
    }
