"""Samplers: what a minibatch is drawn from.

A sampler holds the training data (`data`, the pytree the jitted chunk receives) and draws one
minibatch from it inside the traced update (`minibatch`). gfp.engine.chunk runs
`scan(minibatch -> agent.update)` over any sampler, vmapped over seeds the same way for all:

* `ArraySampler`: state transitions on the device, rows drawn uniformly with replacement;
* gfp.engine.host_arrays: state transitions in host memory or memory-mapped from disk, the same
  rows gathered and prefetched by host threads (`HostArraySampler`, a fed sampler);
* gfp.engine.frames: pixel frames on the device (`FrameSampler`), or in host memory with
  minibatches gathered and prefetched by a host thread (`HostFrameSampler`, a *fed* sampler: its
  chunk receives one prefetched minibatch per update);
* gfp.engine.replay: a replay buffer per seed that the online phase also adds rows to;
* gfp.engine.sequence: action-chunk windows (an agent config's `horizon` h > 1: `SequenceSampler`
  on the device; the host, frame and replay samplers take a `horizon` too).

A new sampler is one class with these members. gfp.engine.placement.make_sampler picks the one
for a dataset.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from gfp.agents.base import Agent, Batch

DERIVED_KEYS = ("next_actions",)  # computed here when the dataset lacks them (ReBRAC reads them)


class Sampler:
    """The protocol (and the shared behaviour) of every sampler.

    `data`: the arrays the jitted chunk receives; `data_axes`: their vmap axes over seeds (None:
    one copy shared by all seeds; a replay buffer has one per seed). `fed`: minibatches come from
    the host, one per update (`feed`), instead of being drawn on the device."""

    data: Any
    data_axes: Any = None
    fed: bool = False

    def keys(self) -> set[str]:
        """The batch keys this sampler's minibatches can carry."""
        raise NotImplementedError

    def select(self, keys: Sequence[str]) -> Sampler:
        """The same sampler carrying only `keys` (what an agent reads)."""
        raise NotImplementedError

    def minibatch(
        self, config: Any, data: Any, rng: jax.Array, fed: Any = None
    ) -> tuple[Batch, jax.Array, jax.Array | None]:
        """Traced: one minibatch from `data` with the state's key `rng` (or the prefetched
        minibatch `fed`). Returns (batch, the key `agent.update` gets, the key the state holds
        after the update, or None for the one the update leaves)."""
        raise NotImplementedError

    def feed(self, rngs: np.ndarray, length: int, config: Any) -> Iterator[tuple[int, Any]]:
        """Fed samplers: the next `length` updates' minibatches for seed keys `rngs`, as blocks
        (steps, minibatches on the device, leading axes (seeds, steps))."""
        raise NotImplementedError

    def for_agent(self, agent: Agent) -> Sampler:
        """This sampler restricted to what `agent` reads; ValueError if the data lacks a key."""
        missing = [k for k in agent.batch_keys if k not in self.keys()]
        if missing:
            raise ValueError(
                f"agent {agent.name!r} reads {missing} which the training data lacks; build it "
                "with gfp.engine.placement.make_sampler(transitions), which derives next_actions"
            )
        return self.select(agent.batch_keys)


def sample_rows(
    data: Batch, rng: jax.Array, batch_size: int, size: jax.Array | int | None = None
) -> Batch:
    """Uniform minibatch with replacement (as the reference code's randint sampling). `size`: draw
    from the first `size` rows only (a replay buffer's filled part; may be traced)."""
    n = data["actions"].shape[0] if size is None else size
    idx = jax.random.randint(rng, (batch_size,), 0, n)
    return jax.tree.map(lambda x: x[idx], data)


class ArraySampler(Sampler):
    """State transitions on the device; each update splits the state's key into (update key,
    batch key) and draws `batch_size` rows uniformly with replacement."""

    def __init__(self, arrays: Mapping[str, jax.Array]):
        self.data = dict(arrays)

    def keys(self) -> set[str]:
        return set(self.data)

    def select(self, keys: Sequence[str]) -> ArraySampler:
        return ArraySampler({k: self.data[k] for k in keys})

    def minibatch(self, config, data, rng, fed=None):
        rng, batch_rng = jax.random.split(rng)
        return sample_rows(data, batch_rng, config.batch_size), rng, None


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


def training_array(transitions: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    """The dataset's array `key`, with `next_actions` derived when the dataset lacks it."""
    if key == "next_actions" and key not in transitions:
        return next_actions(transitions)
    return np.asarray(transitions[key])


def training_rows(transitions: Mapping[str, np.ndarray], key: str, lo: int, hi: int) -> np.ndarray:
    """Rows lo:hi of `training_array(transitions, key)`, reading only those rows (and one more
    for a derived `next_actions`): a dataset is copied a slice at a time."""
    if key != "next_actions" or key in transitions:
        return np.asarray(transitions[key][lo:hi])
    actions = transitions["actions"]
    n = len(actions)
    a = np.asarray(actions[lo : min(hi + 1, n)])
    own = a[: hi - lo]
    shifted = a[1:] if hi < n else np.concatenate([a[1:], a[-1:]])
    if "terminals" not in transitions:
        return shifted
    ends = np.asarray(transitions["terminals"][lo:hi]).astype(bool)
    return np.where(ends[:, None], own, shifted)
