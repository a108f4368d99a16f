"""The training loop: the dataset on the device, minibatches sampled inside jitted code, K updates
fused per call with `lax.scan`, seeds trained side by side with `vmap`. No Python in the hot loop.

Python runs only at chunk boundaries (multiples of the log, evaluation and checkpoint intervals,
counted from step 0): logging, evaluation, checkpoints, the stop check for SIGINT/SIGTERM, and the
divergence guard, whose non-finite test is computed inside the same jitted call. The whole state
(parameters, targets, optimizer, RNG key, which also drives minibatch sampling, step) is one
pytree, so a run restored from a checkpoint continues exactly: on CPU, K updates in one call equal
K1 + K2 updates in two calls bit for bit, and the boundaries after a resume are the same anyway.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from gfp.agents.base import BATCH_KEYS, Agent, Batch, Metrics, TrainState
from gfp.data import frames
from gfp.data.frame_layout import OBS_KEYS, is_frame_form, is_pixels  # OBS_KEYS: kept uint8
from gfp.errors import DivergenceError

TRAIN_KEYS = BATCH_KEYS  # what every agent reads
DERIVED_KEYS = ("next_actions",)  # computed here when the dataset lacks them (ReBRAC reads them)


def next_actions(transitions: Mapping[str, np.ndarray]) -> np.ndarray:
    """a' for every row: the action of the next row of the same episode.

    Rows are consecutive within an episode and `terminals` = 1 marks an episode's last row. There
    the true next action is not in the data (for a real terminal mask = 0 makes it irrelevant; for
    a time-limit end it is unknown) and the row's own action stands in, as on the array's last row.
    Without `terminals` the rows are read as one stream, shifted by one (FQL's implementation does
    this everywhere, so it pairs an episode's last row with the next episode's first action).
    """
    a = np.asarray(transitions["actions"])
    shifted = np.concatenate([a[1:], a[-1:]])
    if "terminals" not in transitions:
        return shifted
    ends = np.asarray(transitions["terminals"]).astype(bool)
    return np.where(ends[:, None], a, shifted)


def to_device(
    transitions: Mapping[str, np.ndarray], keys: Sequence[str] = TRAIN_KEYS + DERIVED_KEYS
) -> Batch:
    """Put the training arrays `keys` on the default device once, as float32, except uint8
    observations (pixels), which stay uint8: the networks' encoders cast them inside the jitted
    update, so the device holds a quarter of the float32 bytes. `next_actions` is derived (see
    `next_actions`) when the dataset does not hold it. Pass `agent.batch_keys` to carry only what
    that agent reads.

    Pixel transitions (uint8 image observations) become frame data instead (gfp.data.frames): the
    frames stored once, stacked by index when minibatches are drawn, on the device when they fit
    there, else in host memory (`frames.HostFrames`, gathered and prefetched by the host)."""

    def array(key: str) -> np.ndarray:
        if key == "next_actions" and key not in transitions:
            return next_actions(transitions)
        return np.asarray(transitions[key])

    obs = transitions.get("observations")
    if is_pixels(obs) and ("next_observations" in transitions or is_frame_form(transitions)):
        return frames.place(transitions, keys, array)

    def dtype(key: str, x: np.ndarray) -> Any:
        return np.uint8 if key in OBS_KEYS and x.dtype == np.uint8 else jnp.float32

    return {k: jnp.asarray(x, dtype=dtype(k, x)) for k in keys for x in (array(k),)}


def sample_batch(
    data: Batch, rng: jax.Array, batch_size: int, size: jax.Array | int | None = None
) -> Batch:
    """Uniform minibatch with replacement (as the reference code's randint sampling). `size`: draw
    from the first `size` rows only (a replay buffer's filled part; may be traced)."""
    n = data["actions"].shape[0] if size is None else size
    idx = jax.random.randint(rng, (batch_size,), 0, n)
    return jax.tree.map(lambda x: x[idx], data)


def make_train_chunk(agent: Agent, batch_size: int) -> Callable[[TrainState, Batch, int], tuple]:
    """Return f(states, data, length) -> (states, mean metrics, health): `length` fused updates per
    seed.

    `states` has a leading seed axis (vmapped); `data` is shared by all seeds. The metrics are the
    per-seed means over the `length` updates. `health` is the divergence check, computed in the
    same call: `first_bad` (index of the first update with a non-finite metric, -1 if none),
    `bad_terms` (which metrics were non-finite at that update) and `params_finite` (per module:
    its parameters and target copy are all finite at the end of the chunk).
    """

    def one_seed(state: TrainState, data: Batch, length: int) -> tuple:
        def body(state: TrainState, _):
            if frames.has_frames(data):  # pixels: frames stacked by index, augmented
                return frames.sampled_update(agent, state, data, batch_size)
            rng, batch_rng = jax.random.split(state.rng)
            batch = sample_batch(data, batch_rng, batch_size)
            return agent.update(state.replace(rng=rng), batch)

        state, metrics = jax.lax.scan(body, state, None, length=length)
        return state, jax.tree.map(jnp.mean, metrics), chunk_health(state, metrics, length)

    vmapped = jax.vmap(one_seed, in_axes=(0, None, None))

    def chunk(states: TrainState, data: Batch, length: int) -> tuple:
        if states.step.shape[0] > 1:
            return vmapped(states, data, length)
        # One seed: skip the vmap; XLA builds a smaller program for the unbatched scan
        # (fused path 1.04-1.14x the per-step path at 2x64 instead of 0.86x; BENCHMARKS.md).
        out = one_seed(jax.tree.map(lambda x: x[0], states), data, length)
        return jax.tree.map(lambda x: x[None], out)

    return jax.jit(chunk, static_argnums=2, donate_argnums=0)


def chunk_health(state: TrainState, metrics: Metrics, length: int) -> dict[str, Any]:
    """The divergence check of `length` updates (traced): `metrics` hold one row per update,
    `state` is the state after them. See `make_train_chunk`."""
    bad = {k: ~jnp.isfinite(v).reshape(length, -1).all(-1) for k, v in metrics.items()}
    any_bad = jnp.stack(list(bad.values()), -1).any(-1)
    first = jnp.where(any_bad.any(), jnp.argmax(any_bad), -1)
    at_first = jnp.maximum(first, 0)
    return {
        "first_bad": first,
        "bad_terms": {k: b[at_first] for k, b in bad.items()},
        "params_finite": {
            name: _all_finite((p, state.target_params.get(name, {})))
            for name, p in state.params.items()
        },
    }


def _all_finite(tree: Any) -> jax.Array:
    leaves = [jnp.isfinite(x).all() for x in jax.tree.leaves(tree)]
    return jnp.stack(leaves).all() if leaves else jnp.array(True)


def init_states(agent: Agent, seeds: Sequence[int]) -> TrainState:
    """One train state per seed, stacked along a leading axis."""
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    return jax.jit(jax.vmap(agent.init))(keys)


def chunk_boundaries(
    start: int, steps: int, *every: int, extra: Sequence[int] = ()
) -> Iterator[int]:
    """Steps in (start, steps] at which the loop must stop: multiples of each interval, the steps
    in `extra` and the end. They are global (multiples counted from 0), so a run resumed at one of
    them stops where the uninterrupted run stopped."""
    marks = {steps, *extra}
    for e in every:
        if e > 0:
            marks.update(range(e * (start // e + 1), steps + 1, e))
    yield from sorted(m for m in marks if start < m <= steps)


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


def _restore(states: TrainState, saved: TrainState, keep: Sequence[bool]) -> TrainState:
    """`states` with the seeds where `keep` is true replaced by their `saved` state."""
    mask = jnp.asarray(keep)

    def pick(new: jax.Array, old: Any) -> jax.Array:
        return jnp.where(mask.reshape((-1,) + (1,) * (new.ndim - 1)), old, new)

    return jax.tree.map(pick, states, saved)


def divergence_error(
    start: int, step: int, health: Mapping[str, Any], i: int
) -> DivergenceError | None:
    """The error for seed index `i` if its chunk (start, step] went non-finite, else None."""
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


# The callbacks of the training loops (this offline one and gfp.online's): (step, per-seed log
# rows, None for a seed that sits out), (step, states) -> the figures to show, (step, states,
# per-seed partial log sums).
OnLog = Callable[[int, list[dict[str, float] | None]], None]
OnEval = Callable[[int, TrainState], dict[str, float] | None]
OnCheckpoint = Callable[[int, TrainState, list[LogSums]], None]


def train(
    agent: Agent,
    data: Batch,
    states: TrainState,
    *,
    steps: int,
    log_every: int = 1000,
    eval_every: int = 0,
    checkpoint_every: int = 0,
    on_log: OnLog | None = None,
    on_eval: OnEval | None = None,
    on_checkpoint: OnCheckpoint | None = None,
    on_chunk: Callable[[int, TrainState], None] | None = None,
    stop: Callable[[], bool] | None = None,
    log_sums: Sequence[LogSums] | None = None,
    check_finite: bool = True,
    progress: bool = True,
) -> TrainState:
    """Run updates from `states.step` to `steps` for every seed in `states`.

    Callbacks receive the global step. At each chunk boundary, in this order:
    `on_log(step, per-seed rows)` every `log_every` and at the end; `on_eval(step, states)` every
    `eval_every` and at the end (only at the end if `eval_every` is 0); `on_checkpoint(step,
    states, log_sums)` every `checkpoint_every`, at the end, and when `stop()` turns true, after
    which training returns early (at that step); then `on_chunk(step, states)`. Writing a
    checkpoint after the log rows and the evaluation of its step means that a checkpoint's logs are
    complete.

    Seeds may start at different steps (a multi-seed run killed while writing its checkpoints):
    the loop starts at the earliest, and a seed that is ahead sits out (its state is restored after
    each chunk and its row passed to `on_log` is None) until the others reach it. `log_sums`
    carries partial log intervals across a resume. With `check_finite`, a non-finite metric or
    parameter raises `DivergenceError` naming the step and the terms, before any callback of that
    chunk runs.
    """
    pixels = frames.has_frames(data)
    frames.check_settings(agent.config, pixels)
    if pixels:
        missing = frames.missing_keys(data, agent.batch_keys)
    else:
        missing = [k for k in agent.batch_keys if k not in data]
    if missing:
        raise ValueError(
            f"agent {agent.name!r} reads {missing} which the training data lacks; build it with "
            "gfp.train.to_device(transitions), which derives next_actions"
        )
    if pixels:
        data = frames.select(data, agent.batch_keys)
    else:
        data = {k: data[k] for k in agent.batch_keys}  # batches carry only what the agent reads
    if isinstance(data, frames.HostFrames):  # frames in host memory: prefetched blocks
        chunk = frames.HostChunk(agent, agent.config.batch_size, chunk_health)
    else:
        chunk = make_train_chunk(agent, agent.config.batch_size)
    at = [int(s) for s in np.asarray(jax.device_get(states.step)).reshape(-1)]
    n_seeds, start = len(at), min(at)
    sums = [LogSums.from_json(s.to_json()) for s in log_sums] if log_sums else []
    sums += [LogSums() for _ in range(n_seeds - len(sums))]
    ahead = jax.device_get(states) if max(at) > start else None  # kept while some seed sits out
    bar = tqdm(total=steps, initial=start, unit="step", disable=not progress, dynamic_ncols=True)
    step, t_step, t0 = start, start, time.perf_counter()
    marks = chunk_boundaries(start, steps, log_every, eval_every, checkpoint_every, extra=at)
    try:
        for boundary in marks:
            states, metrics, health = chunk(states, data, boundary - step)
            active = [boundary > a for a in at]  # seed i's chunk counts once it has reached at[i]
            if not all(active):
                states = _restore(states, ahead, [not a for a in active])
            host, health = jax.device_get((metrics, health))
            for i in (i for i in range(n_seeds) if active[i]):
                err = divergence_error(step, boundary, health, i) if check_finite else None
                if err is not None:
                    raise err
                sums[i].add({k: v[i] for k, v in host.items()}, boundary - step)
            step = boundary
            if on_log and (step % log_every == 0 or step == steps):
                on_log(step, log_rows(sums, active, step - t_step, time.perf_counter() - t0))
                t_step, t0 = step, time.perf_counter()
            bar.update(boundary - bar.n)
            if on_eval and ((eval_every > 0 and step % eval_every == 0) or step == steps):
                result = on_eval(step, states)
                if result:
                    bar.set_postfix({k: f"{v:.3g}" for k, v in result.items()})
            stopping = stop is not None and stop()
            if on_checkpoint and (
                stopping or step == steps or (checkpoint_every > 0 and step % checkpoint_every == 0)
            ):
                on_checkpoint(step, states, sums)
            if on_chunk:
                on_chunk(step, states)
            if step >= max(at):
                ahead = None
            if stopping:
                break
    finally:
        bar.close()  # also on an error, so that its message starts a new line
    return states


def unstack(states: TrainState, i: int) -> TrainState:
    """The i-th seed's state from a seed-stacked state."""
    return jax.tree.map(lambda x: x[i], states)
