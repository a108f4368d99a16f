"""The training loop: the dataset on the device, minibatches sampled inside jitted code, K updates
fused per call with `lax.scan`, seeds trained side by side with `vmap`. No Python in the hot loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from gfp.agents.base import Agent, Batch, Metrics, TrainState

TRAIN_KEYS = ("observations", "actions", "rewards", "masks", "next_observations")


def to_device(transitions: Mapping[str, np.ndarray]) -> Batch:
    """Put the training arrays on the default device once, as float32."""
    return {k: jnp.asarray(transitions[k], dtype=jnp.float32) for k in TRAIN_KEYS}


def sample_batch(data: Batch, rng: jax.Array, batch_size: int) -> Batch:
    """Uniform minibatch with replacement (as the reference code's randint sampling)."""
    n = data["actions"].shape[0]
    idx = jax.random.randint(rng, (batch_size,), 0, n)
    return jax.tree.map(lambda x: x[idx], data)


def make_train_chunk(agent: Agent, batch_size: int) -> Callable[[TrainState, Batch, int], tuple]:
    """Return f(states, data, length) -> (states, mean metrics): `length` fused updates per seed.

    `states` has a leading seed axis (vmapped); `data` is shared by all seeds. The metrics are the
    per-seed means over the `length` updates, i.e. one log row.
    """

    def one_seed(state: TrainState, data: Batch, length: int) -> tuple[TrainState, Metrics]:
        def body(state: TrainState, _):
            rng, batch_rng = jax.random.split(state.rng)
            batch = sample_batch(data, batch_rng, batch_size)
            return agent.update(state.replace(rng=rng), batch)

        state, metrics = jax.lax.scan(body, state, None, length=length)
        return state, jax.tree.map(jnp.mean, metrics)

    vmapped = jax.vmap(one_seed, in_axes=(0, None, None))
    return jax.jit(vmapped, static_argnums=2, donate_argnums=0)


def init_states(agent: Agent, seeds: Sequence[int]) -> TrainState:
    """One train state per seed, stacked along a leading axis."""
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    return jax.jit(jax.vmap(agent.init))(keys)


def chunk_boundaries(start: int, steps: int, *every: int) -> Iterator[int]:
    """Steps in (start, steps] at which the loop must stop: multiples of each interval and the end."""
    marks = {steps}
    for e in every:
        if e > 0:
            marks.update(range(e * (start // e + 1), steps + 1, e))
    yield from sorted(m for m in marks if m > start)


def train(
    agent: Agent,
    data: Batch,
    states: TrainState,
    *,
    steps: int,
    log_every: int = 1000,
    eval_every: int = 0,
    on_log: Callable[[int, list[dict[str, float]]], None] | None = None,
    on_eval: Callable[[int, TrainState], dict[str, float] | None] | None = None,
    on_chunk: Callable[[int, TrainState], None] | None = None,
    progress: bool = True,
) -> TrainState:
    """Run updates from `states.step` to `steps` for every seed in `states`.

    Callbacks receive the global step: `on_log(step, per-seed metrics)` every `log_every`,
    `on_eval(step, states)` every `eval_every` (and at the end), `on_chunk(step, states)` after every
    fused call (checkpointing hooks in here).
    """
    chunk = make_train_chunk(agent, agent.config.batch_size)
    start = int(np.asarray(states.step).reshape(-1)[0])
    bar = tqdm(total=steps, initial=start, unit="step", disable=not progress, dynamic_ncols=True)
    step, logged_at, t0 = start, start, time.perf_counter()
    for boundary in chunk_boundaries(start, steps, log_every, eval_every):
        states, metrics = chunk(states, data, boundary - step)
        step = boundary
        if on_log and (step % log_every == 0 or step == steps):
            host = jax.device_get(metrics)
            n_seeds = len(next(iter(host.values())))
            rows = [{k: float(v[i]) for k, v in host.items()} for i in range(n_seeds)]
            elapsed = time.perf_counter() - t0
            for row in rows:
                row["time/updates_per_s"] = (step - logged_at) / max(elapsed, 1e-9)
            on_log(step, rows)
            logged_at, t0 = step, time.perf_counter()
        if on_chunk:
            on_chunk(step, states)
        bar.update(boundary - bar.n)
        if on_eval and eval_every > 0 and (step % eval_every == 0 or step == steps):
            result = on_eval(step, states)
            if result:
                bar.set_postfix({k: f"{v:.3g}" for k, v in result.items()})
    bar.close()
    return states


def unstack(states: TrainState, i: int) -> TrainState:
    """The i-th seed's state from a seed-stacked state."""
    return jax.tree.map(lambda x: x[i], states)
