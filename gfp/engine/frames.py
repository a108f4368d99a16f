"""Pixel datasets in training: frames stored once, stacked by index at sampling time, randomly
shifted inside the jitted update, and kept in host memory when they do not fit on the device.

Storage: gfp.data.frame_layout (every frame once, `frame_store`; OGBench's visual data loaded
straight into that form). The samplers (gfp.engine.samplers' protocol): `FrameSampler` draws
minibatches from frames on the device, `HostFrameSampler` feeds them from host memory.

Stacking (`clip_indices`, `stack_clip`). With K = frame_stack, sample t gathers the K + 1 frames
[t-K+1, ..., t, next(t)], where an index before the episode's first row is replaced by that row
(the reference code's rule: an episode's first frames repeat its first frame); the observation is
the first K stacked along channels (oldest first) and the next observation the last K. Nothing
stacked is ever materialised: a minibatch gathers B x (K + 1) frames.

Augmentation (`augment`, reference code `Dataset.augment`): with probability p_aug per minibatch,
every sample is edge-padded by `pad` pixels and cropped back at a random offset in [0, 2 pad]^2,
the same offset for all its K + 1 frames (so for its observation and next observation).

Randomness. A pixel update draws everything from its state's key: `next, update, batch, aug =
split(key, 4)`; the batch key picks the rows, the aug key the shifts, the update key goes to
`agent.update`, and `next` is the state's key afterwards. As the key chain does not depend on
the update, the rows of the next steps can be drawn before the steps run (`plan_indices`): the
host sampler gathers them ahead of time, and host and device placement give the same minibatches
and the same results.

Action chunks (`horizon` h > 1, gfp.engine.sequence): the rows drawn are window starts t in
[0, N - h] (the same key chain over N - h + 1 starts); a sample gathers 2K frames, the K stacked
into the observation at t and the K stacked into the next observation of the window's last row
s = t + h - 1 ([s-K+2, ..., s, next(s)], clamped to s's episode's first row: both stacks respect
the episodes' starts), all shifted by the same offset; rewards, masks, terminals and actions are
read at the window's h rows and combined by gfp.engine.sequence.window_batch.

A camera and a state vector (combined observations, gfp.data.frame_layout.STATE_KEYS): the
state rows are gathered with the other arrays, and the minibatch's observations and next
observations are {"pixels": the frame stack, "state": the state at t / at next(t)}
(gfp.agents.base.combined_obs); the state is the current step's, never stacked or shifted.
Horizon 1 only.

Placement: gfp.engine.placement puts the frames on the device when they fit, else in host memory
(`HostFrameSampler`): the chunk's prefetch thread (gfp.engine.chunk) draws the row indices of the
next blocks of updates, gathers their frames with NumPy and puts them on the device while the
current block trains.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gfp.agents.base import combined_obs
from gfp.data.frame_layout import FRAME_KEYS, OBS_KEYS, STATE_KEYS
from gfp.engine.samplers import Sampler
from gfp.engine.sequence import (
    batch_keys,
    check_horizon,
    data_keys,
    gather_windows,
    window_batch,
)
from gfp.errors import ConfigError

CLIP = "clip"  # a minibatch's gathered frames, (B, K + 1, H, W, C)
# Bytes of gathered frames per prefetched block (all seeds): big enough that one jitted call runs
# several updates, small enough that two blocks in flight stay far below the device's memory.
BLOCK_BYTES = 64 * 2**20


# ---- stacking and augmentation (NumPy or traced JAX arrays alike) -----------------------------
def clip_indices(idx: Any, frame_start: Any, frame_next: Any, k: int, xp: Any = jnp) -> Any:
    """(B, K + 1) frame indices of rows `idx`: [t-K+1, ..., t] clamped to the episode's first
    row, then next(t), which may point into the tails (>= N)."""
    back = xp.arange(k - 1, -1, -1)
    obs_idx = xp.maximum(idx[:, None] - back, frame_start[idx][:, None])
    return xp.concatenate([obs_idx, frame_next[idx][:, None]], axis=1)


def window_clip_indices(
    idx: Any, frame_start: Any, frame_next: Any, k: int, horizon: int, xp: Any = jnp
) -> Any:
    """(B, 2K) frame indices of the windows starting at rows `idx`: the K frames of t's stacked
    observation, then the K of the next observation of the window's last row s = t + h - 1
    ([s-K+2, ..., s] clamped to s's episode's first row, then next(s), which may point into the
    tails)."""
    first = clip_indices(idx, frame_start, frame_next, k, xp)[:, :k]
    last = clip_indices(idx + horizon - 1, frame_start, frame_next, k, xp)[:, 1:]
    return xp.concatenate([first, last], axis=1)


def gather_clip(frames: Any, tails: Any, ci: Any, xp: Any = jnp) -> Any:
    """The frames at clip indices `ci` (B, K + 1): (B, K + 1, H, W, C). Only the last column (the
    next frame) can point into the tails."""
    n, n_tails = frames.shape[0], tails.shape[0]
    past = frames[ci[:, :-1]]
    last = ci[:, -1]
    from_tail = (last >= n)[:, None, None, None]
    newest = xp.where(
        from_tail, tails[xp.clip(last - n, 0, n_tails - 1)], frames[xp.minimum(last, n - 1)]
    )
    return xp.concatenate([past, newest[:, None]], axis=1)


def stack_clip(clip: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """(observations, next_observations), each (B, H, W, K * C): the first and the last K frames
    of the clip, stacked along channels oldest first (the reference code's concatenation)."""

    def stack(frames: jax.Array) -> jax.Array:  # (B, K, H, W, C) -> (B, H, W, K * C)
        b, kk, h, w, c = frames.shape
        return jnp.moveaxis(frames, 1, 3).reshape(b, h, w, kk * c)

    return stack(clip[:, :k]), stack(clip[:, 1:])


def augment(clip: jax.Array, rng: jax.Array, p: float, pad: int) -> jax.Array:
    """Random shift of a minibatch's clips with probability `p` (one draw per minibatch): each
    sample is edge-padded by `pad` pixels and cropped back at an offset in [0, 2 pad]^2, the same
    for all its frames. `p` = 0 or `pad` = 0 returns `clip` itself."""
    if p <= 0.0 or pad <= 0:
        return clip
    k_coin, k_shift = jax.random.split(rng)
    shifts = jax.random.randint(k_shift, (clip.shape[0], 2), 0, 2 * pad + 1)
    padded = jnp.pad(clip, ((0, 0), (0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")

    def crop(frames: jax.Array, shift: jax.Array) -> jax.Array:
        start = (0, shift[0], shift[1], 0)
        return jax.lax.dynamic_slice(frames, start, frames.shape[:1] + clip.shape[2:])

    shifted = jax.vmap(crop)(padded, shifts)
    return jnp.where(jax.random.uniform(k_coin) < p, shifted, clip)


# ---- one pixel minibatch ---------------------------------------------------------------------
def split_key(rng: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(next state key, update key, batch key, augmentation key) of one pixel update."""
    keys = jax.random.split(rng, 4)
    return keys[0], keys[1], keys[2], keys[3]


def draw_rows(batch_key: jax.Array, n: int, batch_size: int) -> jax.Array:
    """The minibatch's rows: uniform with replacement (the reference code's randint)."""
    return jax.random.randint(batch_key, (batch_size,), 0, n)


def finish_batch(
    config: Any,
    batch: Mapping[str, jax.Array],
    k_aug: jax.Array,
    horizon: int = 1,
    out: Sequence[str] | None = None,
) -> dict:
    """A minibatch whose frames are gathered (`clip`) as the agent reads it: augmented with the
    aug key, stacked into observations and next observations. Horizon h > 1: the clip holds 2K
    frames (`window_clip_indices`) and the rest the window's rows, combined by
    gfp.engine.sequence.window_batch (`out`: the keys to return)."""
    clip = augment(batch[CLIP], k_aug, config.p_aug, config.aug_pad)
    k = config.frame_stack
    if horizon == 1:
        obs, next_obs = stack_clip(clip, k)
    else:  # 2K frames: t's stack, then the window's last row's next stack
        obs, next_obs = stack_clip(clip[:, :k], k)[0], stack_clip(clip[:, k:], k)[0]
    rest = {key: v for key, v in batch.items() if key != CLIP}
    if STATE_KEYS[0] in rest:  # a camera and a state: the stack beside the current state
        obs = combined_obs(obs, rest.pop(STATE_KEYS[0]))
        next_obs = combined_obs(next_obs, rest.pop(STATE_KEYS[1]))
    rest["observations"], rest["next_observations"] = obs, next_obs
    if horizon == 1:
        return rest
    return window_batch(rest, config.gamma, out)


def device_batch(
    data: Mapping[str, jax.Array], idx: jax.Array, k: int, horizon: int = 1
) -> dict[str, jax.Array]:
    """The minibatch of rows `idx` (h > 1: window starts) from device-resident frame data
    (traced)."""
    rest = {key: v for key, v in data.items() if key not in FRAME_KEYS}
    if horizon == 1:
        ci = clip_indices(idx, data["frame_start"], data["frame_next"], k)
        batch = {key: v[idx] for key, v in rest.items()}
    else:
        ci = window_clip_indices(idx, data["frame_start"], data["frame_next"], k, horizon)
        batch = gather_windows(rest, idx, horizon)
    batch[CLIP] = gather_clip(data["frames"], data["tail_frames"], ci)
    return batch


def plan_indices(rngs: jax.Array, n: int, batch_size: int, steps: int) -> tuple[jax.Array, Any]:
    """The rows of the next `steps` pixel updates of each seed, from the seeds' keys `rngs`
    (seeds, key): (keys after them, rows (seeds, steps, batch_size)). The same draws as
    `FrameSampler.minibatch`, made before the updates run."""

    def one(rng: jax.Array) -> tuple[jax.Array, jax.Array]:
        def step(rng, _):
            nxt, _, k_batch, _ = split_key(rng)
            return nxt, draw_rows(k_batch, n, batch_size)

        return jax.lax.scan(step, rng, None, length=steps)

    return jax.vmap(one)(rngs)


_plan = jax.jit(plan_indices, static_argnums=(1, 2, 3))


def planned_blocks(
    plan: Callable[..., tuple[jax.Array, Any]],
    rngs: jax.Array,
    n: int,
    batch_size: int,
    length: int,
    per_block: int,
) -> Iterator[tuple[int, np.ndarray]]:
    """(steps, rows) for each block of a host-fed chunk of `length` updates, `per_block` at a time
    (the last block may be shorter), the rows drawn by `plan` (a jitted key chain such as
    `plan_indices`) from the seeds' keys `rngs`, block after block."""
    full, rest = divmod(length, per_block)
    for steps in [per_block] * full + ([rest] if rest else []):
        rngs, idx = plan(rngs, n, batch_size, steps)
        yield steps, np.asarray(idx)


# ---- the samplers --------------------------------------------------------------------------------
class FrameSampler(Sampler):
    """Frame data on the device (`arrays`, the chunk's `data`). Each update splits the state's
    key into (next, update, batch, aug) keys: the batch key picks the rows, whose K + 1 frames
    are gathered by index. `horizon` h > 1: the rows are window starts (module docstring) and
    the minibatches carry the keys `out`."""

    def __init__(
        self, arrays: Mapping[str, Any], horizon: int = 1, out: Sequence[str] | None = None
    ):
        self.arrays = dict(arrays)
        self.horizon, self.out = horizon, (tuple(out) if out is not None else None)
        if horizon > 1 and STATE_KEYS[0] in self.arrays:  # gather_windows reads no next state
            raise ConfigError(
                f"horizon = {horizon}: action-chunk windows of a camera and a state together "
                "are not supported yet; use horizon = 1"
            )

    @property
    def data(self) -> dict[str, Any]:
        return self.arrays

    @property
    def size(self) -> int:
        return int(self.arrays["frame_start"].shape[0])

    @property
    def starts(self) -> int:
        """How many rows a minibatch's samples start at: N, or N - h + 1 windows."""
        return self.size - self.horizon + 1

    @property
    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in self.arrays.values())

    def keys(self) -> set[str]:
        keys = {*self.arrays, *OBS_KEYS}  # observations come from the frames
        return keys if self.horizon == 1 else batch_keys(keys)

    def select(self, keys: Sequence[str]) -> FrameSampler:
        wanted = data_keys(keys, self.horizon)
        observed = FRAME_KEYS + (STATE_KEYS if "observations" in keys else ())
        kept = {k: v for k, v in self.arrays.items() if k in wanted or k in observed}
        return type(self)(kept, self.horizon, keys if self.horizon > 1 else None)

    def minibatch(self, config, data, rng, fed=None):
        nxt, upd, k_batch, k_aug = split_key(rng)
        h = self.horizon
        if h > 1:
            check_horizon(config, h)
        if fed is None:
            idx = draw_rows(k_batch, data["frame_start"].shape[0] - h + 1, config.batch_size)
            fed = device_batch(data, idx, config.frame_stack, h)
        return finish_batch(config, fed, k_aug, h, self.out), upd, nxt


class HostFrameSampler(FrameSampler):
    """Frame data kept in host memory (NumPy `arrays`): a fed sampler, nothing of it goes to the
    jitted chunk. The rows of the next updates are planned from the seeds' keys (the same draws
    as on the device), their frames gathered here by `GATHER_THREADS` threads and put on the
    device a block of updates at a time, so host and device placement give the same minibatches
    and the same results."""

    fed = True

    @property
    def data(self) -> dict[str, Any]:
        return {}

    def gather(self, idx: np.ndarray, k: int) -> dict[str, np.ndarray]:
        """Minibatches of rows `idx` (any leading shape, e.g. (seeds, steps, B)), with their
        frames as `clip` (..., K + 1, H, W, C; h > 1: the 2K of `window_clip_indices`, the other
        arrays' rows those of gfp.engine.sequence.gather_windows): the values `device_batch`
        gives, copied once into the output by `GATHER_THREADS` threads (NumPy's take releases
        the GIL)."""
        a, flat, h = self.arrays, idx.reshape(-1), self.horizon
        frames, n = a["frames"], len(a["frames"])
        if h == 1:
            ci = clip_indices(flat, a["frame_start"], a["frame_next"], k, xp=np)
        else:
            ci = window_clip_indices(flat, a["frame_start"], a["frame_next"], k, h, xp=np)
        tail = ci >= n
        rows = np.where(tail, 0, ci)  # tails are patched in below (one row in ~1000)
        clip = np.empty((*ci.shape, *frames.shape[1:]), frames.dtype)
        bounds = np.linspace(0, len(ci), min(GATHER_THREADS, len(ci)) + 1).astype(int)

        def take(i: int) -> None:
            lo, hi = bounds[i], bounds[i + 1]
            np.take(frames, rows[lo:hi], axis=0, out=clip[lo:hi], mode="clip")

        if len(bounds) > 2:
            list(_gather_pool().map(take, range(len(bounds) - 1)))
        else:
            take(0)
        if tail.any():
            clip[tail] = a["tail_frames"][ci[tail] - n]
        rest = {key: v for key, v in a.items() if key not in FRAME_KEYS}
        out = {key: v[flat] for key, v in rest.items()} if h == 1 else (
            gather_windows(rest, flat, h, xp=np))  # fmt: skip
        out[CLIP] = clip
        return {key: v.reshape(*idx.shape, *v.shape[1:]) for key, v in out.items()}

    def block_steps(self, seeds: int, config: Any) -> int:
        """Updates per prefetched block: about BLOCK_BYTES of gathered frames (all seeds)."""
        frame = self.arrays["frames"][0]
        k = config.frame_stack
        per_sample = (k + 1 if self.horizon == 1 else 2 * k) * frame.nbytes
        per_step = seeds * config.batch_size * per_sample
        return max(1, BLOCK_BYTES // max(per_step, 1))

    def feed(self, rngs, length, config):
        per_block = min(length, self.block_steps(len(rngs), config))
        blocks = planned_blocks(_plan, rngs, self.starts, config.batch_size, length, per_block)
        for steps, idx in blocks:
            yield steps, jax.device_put(self.gather(idx, config.frame_stack))


# ---- placement -----------------------------------------------------------------------------------
GATHER_THREADS = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
_POOL: list[Any] = []


def _gather_pool() -> Any:
    if not _POOL:
        from concurrent.futures import ThreadPoolExecutor

        _POOL.append(ThreadPoolExecutor(GATHER_THREADS, thread_name_prefix="gfp-gather"))
    return _POOL[0]


def check_settings(config: Any, images: bool) -> None:
    """frame_stack > 1 and p_aug > 0 act on image frames: a ConfigError for other data
    (`images`: whether the data's observations are images)."""
    if images:
        return
    for name, value, off in (("frame_stack", config.frame_stack, 1), ("p_aug", config.p_aug, 0.0)):
        if value != off:
            raise ConfigError(
                f"{name} = {value} applies to pixel observations (uint8 images); this data's "
                f"observations are not images (use {name} = {off})"
            )
