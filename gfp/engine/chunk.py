"""The jitted chunk: K updates fused with `lax.scan`, each drawing its minibatch from a sampler
(gfp.engine.samplers), seeds trained side by side with `vmap`. No Python in the hot loop.

Every sampler plugs into the same update step (`sampled_update`: minibatch -> agent.update) and
the same per-seed scan (`scan_updates`); `over_seeds` vmaps a per-seed function over the states'
leading seed axis the same way for every caller (the offline chunk, the host-fed blocks, the
online collection step). The divergence check (`chunk_health`) is computed in the same call.

The whole state (parameters, targets, optimizer, RNG key, which also drives minibatch sampling,
step) is one pytree, so a run restored from a checkpoint continues exactly: on CPU, K updates in
one call equal K1 + K2 updates in two calls bit for bit.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gfp.agents.base import Agent, Metrics, TrainState
from gfp.engine.samplers import Sampler


def sampled_update(
    agent: Agent, sampler: Sampler, state: TrainState, data: Any, fed: Any = None
) -> tuple[TrainState, Metrics]:
    """One update: the sampler draws a minibatch with the state's key, `agent.update` steps."""
    batch, update_rng, next_rng = sampler.minibatch(agent.config, data, state.rng, fed)
    state, metrics = agent.update(state.replace(rng=update_rng), batch)
    return (state if next_rng is None else state.replace(rng=next_rng)), metrics


def scan_updates(
    agent: Agent, sampler: Sampler, state: TrainState, data: Any, fed: Any, length: int
) -> tuple[TrainState, Metrics]:
    """`length` updates of one seed; per-update metrics stacked. `fed`: the prefetched
    minibatches (leading axis `length`) of a fed sampler, else None."""

    def body(state: TrainState, fed_one: Any):
        return sampled_update(agent, sampler, state, data, fed_one)

    return jax.lax.scan(body, state, fed, length=length)


def over_seeds(fn: Callable[..., Any], args: Sequence[Any], axes: Sequence[Any]) -> Any:
    """`fn(*args)` for every seed: vmapped over the leading seed axis where `axes` (vmap's
    in_axes: 0, None for a part shared by all seeds, or a dict of those) says 0; the outputs
    stacked along a seed axis. The first argument has the seed axis. With one seed the vmap is
    skipped: XLA builds a smaller program for the unbatched scan (fused path 1.04-1.14x the
    per-step path at 2x64 instead of 0.86x; BENCHMARKS.md)."""
    if jax.tree.leaves(args[0])[0].shape[0] > 1:
        return jax.vmap(fn, in_axes=tuple(axes))(*args)
    first = [_seed_zero(x, a) for x, a in zip(args, axes, strict=True)]
    return jax.tree.map(lambda x: x[None], fn(*first))


def _seed_zero(x: Any, axis: Any) -> Any:
    """Seed 0 of `x` where `axis` (an in_axes prefix) says it has a seed axis."""
    if axis is None:
        return x
    if isinstance(axis, dict):
        return {k: _seed_zero(v, axis[k]) for k, v in x.items()}
    return jax.tree.map(lambda y: y[0], x)


def chunk_health(state: TrainState, metrics: Metrics, length: int) -> dict[str, Any]:
    """The divergence check of `length` updates (traced): `metrics` hold one row per update,
    `state` is the state after them. `first_bad`: index of the first update with a non-finite
    metric (-1 if none); `bad_terms`: which metrics were non-finite there; `params_finite`: per
    module, its parameters and target copy are all finite at the end."""
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


class Chunk:
    """`chunk(states, length) -> (states, per-seed mean metrics, health)`: `length` updates per
    seed from `sampler`, states donated.

    A device sampler runs them as one jitted call. A fed sampler runs them as blocks of a few
    updates whose minibatches a background thread prepares (`sampler.feed`) and puts on the
    device while the previous block trains; the blocks' metric sums and health are combined."""

    def __init__(self, agent: Agent, sampler: Sampler):
        self.agent, self.sampler = agent, sampler.for_agent(agent)
        axes = (0, sampler.data_axes)

        def fused(states: TrainState, data: Any, length: int) -> tuple:
            def one_seed(state, data):
                state, metrics = scan_updates(agent, self.sampler, state, data, None, length)
                means = jax.tree.map(jnp.mean, metrics)
                return state, means, chunk_health(state, metrics, length)

            return over_seeds(one_seed, (states, data), axes)

        def block(states: TrainState, fed: Any) -> tuple:
            def one_seed(state, fed):
                length = jax.tree.leaves(fed)[0].shape[0]
                state, metrics = scan_updates(agent, self.sampler, state, None, fed, length)
                sums = jax.tree.map(lambda m: jnp.sum(m, axis=0), metrics)
                return state, sums, chunk_health(state, metrics, length)

            return over_seeds(one_seed, (states, fed), (0, 0))

        self.fused = jax.jit(fused, static_argnums=2, donate_argnums=0)
        self.block = jax.jit(block, donate_argnums=0)

    def __call__(self, states: TrainState, length: int) -> tuple:
        if not self.sampler.fed:
            return self.fused(states, self.sampler.data, length)
        # A host copy of the keys: the states' own buffers are donated to the first block.
        rngs = np.asarray(jax.device_get(states.rng))
        outs, offset = [], 0
        for steps, fed in prefetch(self.sampler.feed(rngs, length, self.agent.config)):
            states, sums, health = self.block(states, fed)
            outs.append((offset, sums, health))
            offset += steps
        return states, *combine_blocks(outs, length)


PREFETCH = 2  # blocks prepared ahead of the one training


def prefetch(blocks: Iterator[Any], depth: int = PREFETCH) -> Iterator[Any]:
    """The items of `blocks`, produced by a background thread up to `depth` ahead; an error there
    is raised here; leaving early stops the thread."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in blocks:
                while not stop.is_set():
                    try:
                        q.put(("ok", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as e:  # noqa: BLE001 - handed to the training thread
            q.put(("error", e))

    worker = threading.Thread(target=produce, name="gfp-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            status, item = q.get()
            if status == "error":
                raise item
            if status == "end":
                return
            yield item
    finally:
        stop.set()
        worker.join()


def combine_blocks(outs: list[tuple[int, Any, Any]], length: int) -> tuple[Any, Any]:
    """Per-seed mean metrics and the health of a chunk from its blocks' (offset, sums, health)."""
    metrics = jax.tree.map(lambda *s: sum(s) / length, *[o[1] for o in outs])
    first = jnp.full_like(outs[0][2]["first_bad"], -1)
    bad_terms = jax.tree.map(jnp.zeros_like, outs[0][2]["bad_terms"])
    for offset, _, h in outs:
        new = (first < 0) & (h["first_bad"] >= 0)
        first = jnp.where(new, offset + h["first_bad"], first)
        bad_terms = jax.tree.map(
            lambda old, b, new=new: jnp.where(new, b, old), bad_terms, h["bad_terms"]
        )
    health = {
        "first_bad": first,
        "bad_terms": bad_terms,
        "params_finite": outs[-1][2]["params_finite"],
    }
    return metrics, health


def init_states(agent: Agent, seeds: Sequence[int]) -> TrainState:
    """One train state per seed, stacked along a leading axis."""
    keys = jnp.stack([jax.random.PRNGKey(s) for s in seeds])
    return jax.jit(jax.vmap(agent.init))(keys)


def unstack(states: TrainState, i: int) -> TrainState:
    """The i-th seed's state from a seed-stacked state."""
    return jax.tree.map(lambda x: x[i], states)


def keep_seeds(states: TrainState, saved: TrainState, keep: Sequence[bool]) -> TrainState:
    """`states` with the seeds where `keep` is true replaced by their `saved` state."""
    mask = jnp.asarray(keep)

    def pick(new: jax.Array, old: Any) -> jax.Array:
        return jnp.where(mask.reshape((-1,) + (1,) * (new.ndim - 1)), old, new)

    return jax.tree.map(pick, states, saved)
