"""The boundary driver: one loop for the offline and the online phase.

A phase advances every seed's state from one boundary to the next (`Phase.advance`): the offline
phase runs a jitted chunk of updates (gfp.engine.chunk), the online phase one collection step of E
environment steps and E updates (gfp.engine.online). Python runs only at the boundaries, where
`drive` logs, evaluates, checkpoints, stops on a signal or on divergence, in this order:

* `on_log(step, per-seed rows)` whenever (before, step] crosses a multiple of `log_every`, and at
  the end; a row averages every update since the previous row (`LogSums`, also across chunks and
  resumes);
* `on_eval(step, states)` at multiples of `eval_every` (> 0) and at the end;
* `on_checkpoint(step, states, log sums)` at multiples of `checkpoint_every` (> 0), at the end,
  and when `stop()` turns true, after which `drive` returns (at that step).

A checkpoint is written after the log rows and the evaluation of its step, so its logs are
complete. Boundaries are global steps (multiples counted from 0): a run resumed at one of them
stops where the uninterrupted run stopped. Seeds may start at different steps (a multi-seed run
killed while writing its checkpoints): the loop starts at the earliest, and a seed that is ahead
sits out (its state unchanged, its row None) until the others reach it. A non-finite metric or
parameter raises DivergenceError naming the step and the terms, before any callback of that
boundary runs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import jax
import numpy as np
from tqdm.auto import tqdm

from gfp.agents.base import Agent, TrainState
from gfp.engine.chunk import Chunk, keep_seeds
from gfp.engine.frames import FrameSampler, check_settings
from gfp.engine.samplers import Sampler
from gfp.errors import DivergenceError


@dataclasses.dataclass
class LogSums:
    """One seed's metric sums since its last log row: a log row averages every update of its
    interval even when the interval spans several chunks (an evaluation or checkpoint inside it).
    Saved in checkpoints, so a resumed run writes the same rows."""

    sums: dict[str, float] = dataclasses.field(default_factory=dict)
    count: int = 0

    def add(self, means: Mapping[str, float], length: int) -> None:
        for k, v in means.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v) * length
        self.count += length

    def pop_row(self) -> dict[str, float]:
        row = {k: v / self.count for k, v in self.sums.items()} if self.count else {}
        self.sums, self.count = {}, 0
        return row

    def to_json(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "count": self.count}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any] | None) -> LogSums:
        if not obj:
            return cls()
        return cls({k: float(v) for k, v in obj["sums"].items()}, int(obj["count"]))


def log_rows(
    sums: Sequence[LogSums], active: Sequence[bool], updates: int, elapsed: float
) -> list[dict[str, float] | None]:
    """One log row per seed (None for a seed sitting out), with the interval's updates/s."""
    rows: list[dict[str, float] | None] = []
    for seed_sums, on in zip(sums, active, strict=True):
        row = seed_sums.pop_row() if on else None
        if row is not None:
            row["time/updates_per_s"] = updates / max(elapsed, 1e-9)
        rows.append(row)
    return rows


def divergence_error(
    start: int, step: int, health: Mapping[str, Any], i: int
) -> DivergenceError | None:
    """The error for seed index `i` if its updates (start, step] went non-finite, else None."""
    first = int(health["first_bad"][i])
    if first >= 0:
        names = [k for k, bad in health["bad_terms"].items() if bad[i]]
        names.sort(key=lambda k: ("loss" not in k, k))  # loss terms first
        shown = ", ".join(names[:6]) + (f" (+{len(names) - 6} more)" if len(names) > 6 else "")
        err = DivergenceError(f"training diverged at step {start + first + 1}: non-finite {shown}")
        err.step, err.terms = start + first + 1, names
    else:
        modules = [m for m, ok in health["params_finite"].items() if not ok[i]]
        if not modules:
            return None
        err = DivergenceError(
            f"training diverged at step {step}: non-finite parameters in {', '.join(modules)} "
            "(the losses were finite)"
        )
        err.step, err.terms = step, modules
    err.seed_index = i
    return err


def crossed(before: int, after: int, every: int) -> bool:
    """Whether (before, after] contains a multiple of `every` (> 0)."""
    return every > 0 and after // every > before // every


# The driver's callbacks: (step, per-seed log rows, None for a seed that sits out), (step, states)
# -> the figures to show, (step, states, per-seed partial log sums).
OnLog = Callable[[int, list[dict[str, float] | None]], None]
OnEval = Callable[[int, TrainState], dict[str, float] | None]
OnCheckpoint = Callable[[int, TrainState, list[LogSums]], None]


class Phase(Protocol):
    """What `drive` advances: the boundaries of (start, end] it stops at, and one advance."""

    def begin(self, states: TrainState, at: Sequence[int]) -> TrainState: ...

    def boundaries(self, start: int, end: int, every: Sequence[int], at: Sequence[int]) -> Any: ...

    def advance(
        self, states: TrainState, before: int, step: int, active: Sequence[bool]
    ) -> tuple[TrainState, Any, Any]:
        """States after the updates (before, step] of the `active` seeds (the others unchanged),
        with their mean metrics and health on the host."""
        ...


class OfflinePhase:
    """Updates from a sampler, a jitted chunk per boundary; the boundaries are the multiples of
    the intervals, the seeds' starting steps and the end."""

    def __init__(self, agent: Agent, sampler: Sampler):
        check_settings(agent.config, isinstance(sampler, FrameSampler))
        self.chunk = Chunk(agent, sampler)
        self.ahead: TrainState | None = None

    def begin(self, states: TrainState, at: Sequence[int]) -> TrainState:
        self.at = list(at)
        # Kept on the host while some seed sits out (restored after each chunk).
        self.ahead = jax.device_get(states) if max(at) > min(at) else None
        return states

    def boundaries(self, start: int, end: int, every: Sequence[int], at: Sequence[int]):
        return chunk_boundaries(start, end, *every, extra=at)

    def advance(self, states, before, step, active):
        states, metrics, health = self.chunk(states, step - before)
        if not all(active):
            states = keep_seeds(states, self.ahead, [not a for a in active])
        if step >= max(self.at):
            self.ahead = None
        return (states, *jax.device_get((metrics, health)))


def chunk_boundaries(
    start: int, steps: int, *every: int, extra: Sequence[int] = ()
) -> Iterator[int]:
    """Steps in (start, steps] at which the loop must stop: multiples of each interval, the steps
    in `extra` and the end. They are global (multiples counted from 0), so a run resumed at one of
    them stops where the uninterrupted run stopped. Made one at a time (the nearest next one), so
    memory does not grow with the run's length (all of them at once: 1e9 for 1e12 steps)."""
    intervals = [e for e in every if e > 0]
    marks, i = sorted(m for m in set(extra) if start < m < steps), 0  # marks[i]: the next one
    step = start
    while step < steps:
        step = min([steps, *marks[i : i + 1], *(e * (step // e + 1) for e in intervals)])
        while i < len(marks) and marks[i] <= step:
            i += 1
        yield step


# What the progress bar shows of an evaluation, per policy: the normalized score where the task
# has reference returns (D4RL, Minari), else the success rate (OGBench).
SHOWN_SCORES = ("normalized_score", "success")


def progress_scores(result: Mapping[str, float]) -> dict[str, str]:
    """The progress bar's figures of an evaluation (`on_eval`'s 'policy/metric' -> value): per
    policy the first finite score of SHOWN_SCORES (a task scored by return reports success as
    NaN, which is left out); a figure of no policy is shown as it is, if finite."""
    finite = {k: float(v) for k, v in result.items() if np.isfinite(v)}
    shown: dict[str, str] = {}
    for key, value in finite.items():
        policy, _, metric = key.rpartition("/")
        if not policy:
            shown[key] = f"{value:.3g}"
        elif metric in SHOWN_SCORES:
            best = next(m for m in SHOWN_SCORES if f"{policy}/{m}" in finite)
            if metric == best:
                shown[key] = f"{value:.3g}"
    return shown


def drive(
    phase: Phase,
    states: TrainState,
    *,
    at: Sequence[int],
    end: int,
    log_every: int = 1000,
    eval_every: int = 0,
    checkpoint_every: int = 0,
    on_log: OnLog | None = None,
    on_eval: OnEval | None = None,
    on_checkpoint: OnCheckpoint | None = None,
    stop: Callable[[], bool] | None = None,
    log_sums: Sequence[LogSums] | None = None,
    check_finite: bool = True,
    progress: bool = True,
) -> TrainState:
    """Advance `phase` from min(`at`) to `end` (global steps; seed i starts at at[i]), with the
    boundary work of the module docstring. `log_sums` carries partial log intervals across a
    resume."""
    n_seeds, step = len(at), min(at)
    sums = [LogSums.from_json(s.to_json()) for s in log_sums] if log_sums else []
    sums += [LogSums() for _ in range(n_seeds - len(sums))]
    states = phase.begin(states, at)
    bar = tqdm(total=end, initial=step, unit="step", disable=not progress, dynamic_ncols=True)
    t_step, t0 = step, time.perf_counter()
    every = (log_every, eval_every, checkpoint_every)
    try:
        for boundary in phase.boundaries(step, end, every, at):
            before, step = step, boundary
            active = [before >= a for a in at]  # seed i's updates count once it reached at[i]
            states, metrics, health = phase.advance(states, before, step, active)
            for i in (i for i in range(n_seeds) if active[i]):
                err = divergence_error(before, step, health, i) if check_finite else None
                if err is not None:
                    raise err
                sums[i].add({k: v[i] for k, v in metrics.items()}, step - before)
            bar.update(step - bar.n)
            if on_log and (crossed(before, step, log_every) or step == end):
                on_log(step, log_rows(sums, active, step - t_step, time.perf_counter() - t0))
                t_step, t0 = step, time.perf_counter()
            if on_eval and (crossed(before, step, eval_every) or step == end):
                result = on_eval(step, states)
                shown = progress_scores(result or {})
                if shown:
                    bar.set_postfix(shown)
            stopping = stop is not None and stop()
            if on_checkpoint and (
                stopping or step == end or crossed(before, step, checkpoint_every)
            ):
                on_checkpoint(step, states, sums)
            if stopping:
                break
    finally:
        bar.close()  # also on an error, so that its message starts a new line
    return states


def train(
    agent: Agent, sampler: Sampler, states: TrainState, *, steps: int, **kwargs: Any
) -> TrainState:
    """The offline phase: updates from `states.step` to `steps` for every seed in `states`
    (seeds at different steps: see the module docstring), minibatches from `sampler`
    (gfp.engine.placement.make_sampler). Keyword arguments: those of `drive`."""
    phase = OfflinePhase(agent, sampler)  # checks the data and settings first
    at = [int(s) for s in np.asarray(jax.device_get(states.step)).reshape(-1)]
    return drive(phase, states, at=at, end=steps, **kwargs)
