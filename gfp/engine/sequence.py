"""Action chunking: minibatches of h-step windows (Q-chunking, Li, Zhou and Levine, NeurIPS 2025,
arXiv 2507.07969, Sec. 4: the critic is trained on chunks a_{t:t+h} with the h-step backup).

An agent whose config has `horizon` h > 1 trains on windows of h consecutive rows. A window
starts at a row t drawn uniformly from [0, N - h] (N rows: no window runs past the data's end)
and reads the rows t, ..., t + h - 1. Its minibatch (`window_batch`, the one traced function of
the window math, shared by every sampler: device and host state data, pixel frames, replay):

* observations (B, *obs): the observation at t;
* actions (B, h, A): the window's h actions (a chunk, oldest first);
* rewards (B,): sum_i gamma^i r_{t+i}, the h-step discounted return (accumulated in the paper's
  reference order, r_t + gamma r_{t+1} + gamma^2 r_{t+2} + ...);
* masks (B,): min_i masks_{t+i} (0 if any step of the window terminated);
* next_observations (B, *obs): the next observation of the window's last row, t + h - 1;
* valid (B, h) float32: valid_0 = 1 and valid_i = 1 - max_{j<i} terminals_{t+j}: the steps of the
  window after the end of t's episode (terminals = 1 on an episode's last row) are not its own;
* terminals (B,), only when asked for: max_i terminals_{t+i}.

As in the reference implementation a window may cross the end of an episode; `valid` then marks
the steps after it, and rewards and masks are still accumulated over the whole window (the
reference's behaviour, reproduced).

Randomness: the window starts are drawn exactly as single rows are (gfp.engine.samplers
`ArraySampler`: the state's key split into (update key, batch key), the batch key draws B
integers), from N - h + 1 starts instead of N, so the host-fed samplers plan them from the same
key chain (gfp.engine.host_arrays.plan_rows, gfp.engine.frames.plan_indices) and every placement
gives the same minibatches, bit for bit. (The parameters they train agree to float rounding, not
always bit for bit as for h = 1: XLA compiles a critic's update over a gathered window and over a
host-fed one into differently rounded programs.)

Where windows are drawn: offline state data on the device (`SequenceSampler`), in host memory or
on disk (gfp.engine.host_arrays, `horizon`), pixel frames on the device or the host
(gfp.engine.frames, `horizon`), and the online replay buffer (gfp.engine.replay, with
`terminals` stored; one environment per seed, `check_online`). gfp.engine.placement.make_sampler
picks them when its `horizon` (an agent config's, `agent_sampler`) is > 1; horizon 1 keeps the
single-transition samplers unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from gfp.agents.base import Batch
from gfp.engine.samplers import Sampler
from gfp.errors import ConfigError, DataError

WINDOW_KEYS = ("actions", "rewards", "masks", "terminals")  # read at all h rows of a window
NEEDED_KEYS = WINDOW_KEYS  # what the window math reads, whatever the agent's batch carries
VALID = "valid"


def horizon_of(config: Any) -> int:
    """The chunk length h an agent config trains on (1: single transitions)."""
    return int(getattr(config, "horizon", 1) or 1)


def data_keys(keys: Sequence[str], horizon: int) -> tuple[str, ...]:
    """The dataset arrays that minibatches carrying `keys` are made from: `keys` themselves for
    horizon 1; for h > 1 `keys` less `valid` (made here) plus what the window math reads. An
    agent reading next_actions has no meaning for windows: ConfigError."""
    if horizon <= 1:
        return tuple(keys)
    if "next_actions" in keys:
        raise ConfigError(
            f"horizon = {horizon}: this agent reads next_actions, which action-chunk windows do "
            "not define; use horizon = 1"
        )
    out = [k for k in keys if k != VALID]
    return (*out, *(k for k in NEEDED_KEYS if k not in out))


def check_terminals(transitions: Mapping[str, Any], horizon: int) -> None:
    """Windows need the episodes' ends: DataError if `terminals` is missing."""
    if horizon > 1 and "terminals" not in transitions:
        raise DataError(
            f"horizon = {horizon}: action-chunk windows need the dataset's terminals (1 on each "
            "episode's last row), which this data lacks"
        )


def check_online(horizon: int, online_envs: int) -> None:
    """Online collection with h > 1 keeps one environment: the replay buffer's rows interleave
    the environments (gfp.engine.online), so a window of consecutive rows would mix them."""
    if horizon > 1 and online_envs > 1:
        raise ConfigError(
            f"online_envs = {online_envs} with horizon = {horizon}: the replay buffer interleaves "
            "the environments' rows, so action-chunk windows would mix them; use online_envs = 1"
        )


# ---- the window math (traced) --------------------------------------------------------------------
def draw_starts(rng: jax.Array, n: Any, batch_size: int, horizon: int) -> jax.Array:
    """B window starts uniform in [0, n - h] (`n` rows, possibly traced: a replay buffer's filled
    part; at least one start, row 0, while fewer than h rows are filled)."""
    return jax.random.randint(rng, (batch_size,), 0, jnp.maximum(n - horizon + 1, 1))


def gather_windows(data: Mapping[str, Any], idx: Any, horizon: int, xp: Any = jnp) -> dict:
    """The raw rows of the windows starting at `idx` (B,): WINDOW_KEYS at all h rows (B, h, ...),
    next_observations at the last row t + h - 1, every other array at t. NumPy (`xp=np`, the host
    samplers) or traced."""
    rows = idx[:, None] + xp.arange(horizon)
    out = {}
    for k, x in data.items():
        if k in WINDOW_KEYS:
            out[k] = x[rows]
        elif k == "next_observations":
            out[k] = x[idx + horizon - 1]
        else:
            out[k] = x[idx]
    return out


def window_batch(raw: Mapping[str, jax.Array], gamma: float, keys: Sequence[str] | None) -> Batch:
    """The minibatch of gathered windows `raw` (`gather_windows`; the window keys (B, h, ...)),
    as the module docstring says; `keys`: the ones to return (None: all, with `valid`)."""
    r = raw["rewards"]
    h = r.shape[1]
    rewards = r[:, 0]
    for i in range(1, h):  # the reference's order of accumulation
        rewards = rewards + r[:, i] * (gamma**i)
    ended = jax.lax.cummax(raw["terminals"], axis=1)  # ended_i = max_{j<=i} terminals_{t+j}
    first = jnp.ones_like(ended[:, :1])
    out = {k: v for k, v in raw.items() if k not in WINDOW_KEYS}
    out["actions"] = raw["actions"]
    out["rewards"] = rewards
    out["masks"] = jnp.min(raw["masks"], axis=1)
    out["terminals"] = ended[:, -1]
    out[VALID] = jnp.concatenate([first, 1.0 - ended[:, :-1]], axis=1).astype(jnp.float32)
    if keys is None:
        return out
    return {k: out[k] for k in keys}


def batch_keys(data: Mapping[str, Any] | set[str]) -> set[str]:
    """The keys a window sampler over arrays `data` can carry."""
    return {*data, VALID} - {"next_actions"}


# ---- the device sampler --------------------------------------------------------------------------
class SequenceSampler(Sampler):
    """State transitions on the device, minibatches of h-step windows. Each update splits the
    state's key into (update key, batch key), as `ArraySampler` does; the batch key draws the
    window starts. `out`: the batch keys its minibatches carry (None: every one it can)."""

    def __init__(
        self, arrays: Mapping[str, jax.Array], horizon: int, out: Sequence[str] | None = None
    ):
        if horizon < 2:
            raise ValueError(f"SequenceSampler is for horizon > 1, not {horizon}")
        missing = [k for k in NEEDED_KEYS if k not in arrays]
        if missing:
            raise DataError(f"horizon = {horizon}: the window sampler needs {missing}")
        self.data, self.horizon = dict(arrays), horizon
        self.out = tuple(out) if out is not None else None
        n = int(self.data["actions"].shape[0])
        if n < horizon:
            raise DataError(f"horizon = {horizon} is longer than the data's {n} rows")

    def keys(self) -> set[str]:
        return batch_keys(self.data)

    def select(self, keys: Sequence[str]) -> SequenceSampler:
        wanted = data_keys(keys, self.horizon)
        return SequenceSampler({k: self.data[k] for k in wanted}, self.horizon, keys)

    def minibatch(self, config, data, rng, fed=None):
        check_horizon(config, self.horizon)
        rng, batch_rng = jax.random.split(rng)
        n = data["actions"].shape[0]
        idx = draw_starts(batch_rng, n, config.batch_size, self.horizon)
        raw = gather_windows(data, idx, self.horizon)
        return window_batch(raw, config.gamma, self.out), rng, None


def check_horizon(config: Any, horizon: int) -> None:
    """A sampler built for chunks of `horizon` trains an agent of that horizon only."""
    if horizon_of(config) != horizon:
        raise ValueError(
            f"the sampler draws windows of {horizon} rows; the agent's horizon is "
            f"{horizon_of(config)} (build the sampler with its horizon)"
        )
