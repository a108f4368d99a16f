"""The replay buffer of the online phase, and its sampler.

The buffer is a fixed-capacity pytree on the device (`ReplayBuffer`: arrays of `capacity` rows,
the filled size, the insertion pointer, the rows added), one per seed, updated in place inside the
jitted collection step (gfp.engine.online). It starts as the offline dataset (capacity
max(buffer_size, dataset size + 1); once full the oldest rows are overwritten), or, with balanced
sampling, holds only online rows and each minibatch is half dataset, half buffer
(`ReplaySampler`, a sampler of gfp.engine.samplers' protocol whose data has a seed axis).

Checkpoints hold the rows added online that the buffer still holds, in insertion order
(`held_rows`), and the counters: the buffer is its starting content (the dataset, or nothing)
with those rows written back at their positions (`restore_rows`). The dataset's rows are never
written: they come from the dataset again. Each checkpoint writes only the online rows added since
the previous one (`online_rows`, a replay segment of gfp.rundir), so its cost does not grow with
the buffer.

Action chunks (an agent config's `horizon` h > 1, gfp.engine.sequence): the buffer also holds
`terminals` (1 on the last row of an episode, terminated or truncated: the episodes' ends the
windows need) and `ReplaySampler` draws h-step windows from its filled rows (starts in
[0, size - h]) and, balanced, half of them from the dataset's windows. As in the reference
implementation, a window may run from the buffer's newest row into its oldest once it has
wrapped. While fewer than h rows are filled (the first h - 1 collection steps of a balanced run,
whose buffer starts empty) the online windows start at row 0 and read empty rows (zeros: reward
0, mask 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from gfp.agents.base import Batch
from gfp.engine.samplers import Sampler, sample_rows
from gfp.engine.sequence import (
    batch_keys,
    check_horizon,
    data_keys,
    draw_starts,
    gather_windows,
    window_batch,
)
from gfp.errors import DataError


@struct.dataclass
class ReplayBuffer:
    """Transitions on the device: `data[key]` has `capacity` rows (a leading seed axis when
    stacked); rows [0, size) are filled and the next row goes to `pointer`."""

    data: dict[str, jax.Array]
    size: jax.Array  # int32: rows filled
    pointer: jax.Array  # int32: where the next row goes
    added: jax.Array  # int32: rows added since creation (the online rows)
    base: int = struct.field(pytree_node=False)  # rows it was created with (dataset size, or 0)

    @property
    def capacity(self) -> int:
        return int(self.data["actions"].shape[-2])


def create_buffers(initial: Mapping[str, Any], capacity: int, n_seeds: int) -> ReplayBuffer:
    """One buffer per seed (stacked), each starting as the rows of `initial` (the dataset, or
    zero rows for an empty buffer) followed by empty space up to `capacity` rows."""
    initial = {k: jnp.asarray(v) for k, v in initial.items()}
    n = int(initial["actions"].shape[0])
    if not 0 <= n <= capacity:
        raise ValueError(f"{n} initial rows do not fit a buffer of {capacity}")

    def fill(x: jax.Array) -> jax.Array:
        pad = jnp.zeros((capacity - n, *x.shape[1:]), x.dtype)
        return jnp.broadcast_to(jnp.concatenate([x, pad]), (n_seeds, capacity, *x.shape[1:]))

    data = jax.jit(lambda d: jax.tree.map(fill, d))(initial)  # built once, on the device
    count = jnp.full((n_seeds,), n, jnp.int32)
    return ReplayBuffer(data, count, count % capacity, jnp.zeros((n_seeds,), jnp.int32), n)


def add_rows(buffer: ReplayBuffer, rows: Batch, active: jax.Array | bool = True) -> ReplayBuffer:
    """`buffer` (one seed's) with the E rows of `rows` appended at the pointer, in order,
    overwriting the oldest rows once full. With `active` false nothing changes (written this way
    so that it traces to the same in-place scatter)."""
    cap = buffer.capacity
    e = rows["actions"].shape[0]
    pos = (buffer.pointer + jnp.arange(e)) % cap
    n = jnp.where(active, e, 0).astype(jnp.int32)

    def put(x: jax.Array, r: jax.Array) -> jax.Array:
        return x.at[pos].set(jnp.where(active, r.astype(x.dtype), x[pos]))

    data = {k: put(x, rows[k]) for k, x in buffer.data.items()}
    return buffer.replace(
        data=data,
        size=jnp.minimum(buffer.size + n, cap),
        pointer=(buffer.pointer + n) % cap,
        added=buffer.added + n,
    )


def fill_next_actions(buffer: ReplayBuffer, at: jax.Array, actions: jax.Array) -> ReplayBuffer:
    """Write `actions[j]` as the next action of row `at[j]` (skipped where `at[j]` < 0); a no-op
    for buffers without next_actions (agents that do not read them)."""
    if "next_actions" not in buffer.data:
        return buffer
    idx = jnp.where(at >= 0, at, buffer.capacity)  # out of range: dropped
    na = buffer.data["next_actions"].at[idx].set(actions, mode="drop")
    return buffer.replace(data={**buffer.data, "next_actions": na})


def sample_training_batch(
    buffer: ReplayBuffer, offline: Batch, rng: jax.Array, batch_size: int, balanced: bool
) -> Batch:
    """A minibatch from the buffer's filled rows; `balanced`: the first batch_size // 2 rows from
    the offline data, the rest from the buffer (the reference code's balanced sampling)."""
    if not balanced:
        return sample_rows(buffer.data, rng, batch_size, size=buffer.size)
    r_off, r_on = jax.random.split(rng)
    half = batch_size // 2
    a = sample_rows(offline, r_off, half)
    b = sample_rows(buffer.data, r_on, batch_size - half, size=buffer.size)
    return jax.tree.map(lambda x, y: jnp.concatenate([x, y.astype(x.dtype)]), a, b)


def sample_training_windows(
    buffer: ReplayBuffer,
    offline: Batch,
    rng: jax.Array,
    batch_size: int,
    balanced: bool,
    horizon: int,
) -> Batch:
    """The raw h-step windows (gfp.engine.sequence.gather_windows) of a minibatch, drawn as
    `sample_training_batch` draws rows: from the buffer's filled rows (starts in [0, size - h]),
    or balanced, the first batch_size // 2 from the offline data's windows."""

    def windows(data: Batch, r: jax.Array, count: int, size: Any) -> Batch:
        n = data["actions"].shape[0] if size is None else size
        return gather_windows(data, draw_starts(r, n, count, horizon), horizon)

    if not balanced:
        return windows(buffer.data, rng, batch_size, buffer.size)
    r_off, r_on = jax.random.split(rng)
    half = batch_size // 2
    a = windows(offline, r_off, half, None)
    b = windows(buffer.data, r_on, batch_size - half, buffer.size)
    return jax.tree.map(lambda x, y: jnp.concatenate([x, y.astype(x.dtype)]), a, b)


class ReplaySampler(Sampler):
    """Minibatches from each seed's replay buffer (and, balanced, half from the dataset): data
    `{"buffer": buffers (seed axis), "offline": dataset arrays (shared)}`. Each update splits the
    state's key into (update key, batch key), as `ArraySampler` does. The online phase replaces
    `buffers` after each collection step (the jitted step donates and returns them). `horizon`
    h > 1: minibatches of h-step windows carrying the keys `out` (gfp.engine.sequence)."""

    data_axes = {"buffer": 0, "offline": None}

    def __init__(
        self,
        buffers: ReplayBuffer,
        offline: Batch,
        balanced: bool,
        horizon: int = 1,
        out: Sequence[str] | None = None,
    ):
        self.buffers, self.offline, self.balanced = buffers, dict(offline), balanced
        self.horizon, self.out = horizon, (tuple(out) if out is not None else None)

    @property
    def data(self) -> dict[str, Any]:
        return {"buffer": self.buffers, "offline": self.offline}

    def keys(self) -> set[str]:
        keys = set(self.buffers.data)
        return keys if self.horizon == 1 else batch_keys(keys)

    def select(self, keys):
        wanted = data_keys(keys, self.horizon)
        kept = self.buffers.replace(data={k: self.buffers.data[k] for k in wanted})
        offline = {k: v for k, v in self.offline.items() if k in wanted}
        out = keys if self.horizon > 1 else None
        return ReplaySampler(kept, offline, self.balanced, self.horizon, out)

    def minibatch(self, config, data, rng, fed=None):
        rng, batch_rng = jax.random.split(rng)
        if self.horizon == 1:
            batch = sample_training_batch(
                data["buffer"], data["offline"], batch_rng, config.batch_size, self.balanced
            )
            return batch, rng, None
        check_horizon(config, self.horizon)
        raw = sample_training_windows(
            data["buffer"],
            data["offline"],
            batch_rng,
            config.batch_size,
            self.balanced,
            self.horizon,
        )
        return window_batch(raw, config.gamma, self.out), rng, None


def held_positions(base: int, capacity: int, added: int) -> np.ndarray:
    """Buffer positions of the online rows a buffer still holds, oldest first."""
    k = np.arange(max(0, added - capacity), added)
    return (base + k) % capacity


def held_rows(buffers: ReplayBuffer, i: int, added: int) -> dict[str, np.ndarray]:
    """Seed i's online rows still in the buffer, oldest first, on the host (for a checkpoint)."""
    return online_rows(buffers, i, max(0, added - buffers.capacity), added)


def online_rows(buffers: ReplayBuffer, i: int, start: int, end: int) -> dict[str, np.ndarray]:
    """Seed i's online rows start..end-1 (row k: the k-th added online), on the host; only these
    rows leave the device. They must all still be held: end - capacity <= start <= end."""
    cap = buffers.capacity
    if not end - cap <= start <= end:
        raise ValueError(f"online rows {start}..{end} are not all held by a buffer of {cap} rows")
    pos = jnp.asarray((buffers.base + np.arange(start, end)) % cap)
    return {k: np.asarray(x[i, pos]) for k, x in buffers.data.items()}


def restore_rows(
    buffers: ReplayBuffer, i: int, rows: Mapping[str, np.ndarray], added: int
) -> ReplayBuffer:
    """`buffers` with seed i's buffer as it was after `added` online rows, of which `rows` are the
    ones it still held (`held_rows`)."""
    cap, base = buffers.capacity, buffers.base
    pos = held_positions(base, cap, added)
    if set(rows) != set(buffers.data) or any(len(r) != len(pos) for r in rows.values()):
        raise DataError(
            f"the checkpoint's replay rows ({sorted(rows)}, {len(next(iter(rows.values())))} "
            f"rows) do not fit {added} online rows of {sorted(buffers.data)}"
        )
    data = {k: x.at[i, pos].set(jnp.asarray(rows[k], x.dtype)) for k, x in buffers.data.items()}
    return buffers.replace(
        data=data,
        size=buffers.size.at[i].set(min(base + added, cap)),
        pointer=buffers.pointer.at[i].set((base + added) % cap),
        added=buffers.added.at[i].set(added),
    )
