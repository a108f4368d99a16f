"""A held-out validation split by whole episodes (`--val-episodes`), NumPy only.

`split_episodes(train, val_episodes, label)` cuts loaded transitions into (train, val) along
episode boundaries (`terminals`, gfp.data.info.episode_bounds): no episode has rows on both sides,
so nothing learnt from an episode is validated on it. Which episodes: a permutation of the episode
indices by a fixed-seed NumPy generator (`SPLIT_SEED`), its first k taken (k = N, or
round(f * episodes) for a fraction 0 < f < 1), then sorted; the same data always gives the same
split, and the split does not follow the file's order (episodes recorded late are not all held
out together).

Both parts keep the form of the input: state transitions are sliced row by row (every row array,
e.g. ReBRAC's next_actions is derived later from each part's own rows); pixel transitions in the
frame form (gfp.data.frame_layout) get their `frame_start` and `frame_next` re-indexed into the
part's rows and keep only the `tail_frames` their rows point at, so a frame stack of a train row
never reaches a validation frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from gfp.data.frame_layout import LAYOUT_KEYS, is_frame_form
from gfp.data.info import episode_bounds
from gfp.errors import ConfigError

SPLIT_SEED = 0  # the generator that picks the held-out episodes


def held_out_episodes(n_episodes: int, val_episodes: float, label: str) -> np.ndarray:
    """The sorted indices of the episodes to hold out (module docstring); ConfigError in one line
    for a count the data cannot give (at least one episode must stay for training)."""
    v = float(val_episodes)
    if v >= 1:
        k = int(v)
        if k > n_episodes - 1:
            raise ConfigError(
                f"val_episodes (--val-episodes) = {k}: {label} has {n_episodes} episode"
                f"{'s' * (n_episodes != 1)}, so at most {max(n_episodes - 1, 0)} can be held out "
                "(one must stay for training)"
            )
    else:
        k = int(round(v * n_episodes))
        if k < 1:
            raise ConfigError(
                f"val_episodes (--val-episodes) = {v}: {v} of {label}'s {n_episodes} episodes is "
                "0 episodes; give a larger fraction or a number of episodes"
            )
        k = min(k, n_episodes - 1)
        if k < 1:
            raise ConfigError(
                f"val_episodes (--val-episodes) = {v}: {label} has {n_episodes} episode, none "
                "can be held out (one must stay for training)"
            )
    order = np.random.default_rng(SPLIT_SEED).permutation(n_episodes)
    return np.sort(order[:k])


def take_rows(data: Mapping[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """The transitions of `rows` (whole episodes, in order), in the form of `data`: row arrays
    sliced; the frame form's indices re-indexed into these rows and their own tails."""
    n = len(data["actions"])
    out = {
        k: np.asarray(v)[rows]
        for k, v in data.items()
        if k not in LAYOUT_KEYS and np.ndim(v) and len(v) == n
    }
    if not is_frame_form(data):
        return out
    new_of = np.full(n, -1, np.int64)  # old row -> its row in this part
    new_of[rows] = np.arange(len(rows))
    start = new_of[np.asarray(data["frame_start"])[rows]]
    nxt = np.asarray(data["frame_next"])[rows].astype(np.int64)
    from_tail = nxt >= n
    tails = np.unique(nxt[from_tail] - n)  # the tails these rows use, in their order
    inside = new_of[np.minimum(nxt, n - 1)]
    moved = np.where(from_tail, len(rows) + np.searchsorted(tails, nxt - n), inside)
    if (start < 0).any() or (moved < 0).any():  # a row pointing outside its episode
        raise ValueError("a frame index points outside the rows taken (not whole episodes)")
    out["tail_frames"] = np.ascontiguousarray(np.asarray(data["tail_frames"])[tails])
    out["frame_start"] = start.astype(np.int32)
    out["frame_next"] = moved.astype(np.int32)
    return out


def split_episodes(
    data: Mapping[str, np.ndarray], val_episodes: float, label: str
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """(train, val, record): `data` cut by whole episodes (module docstring); `record` says which
    were held out, for the run's dataset record: {"val_episodes": their indices, "episodes": the
    episode count, "train_rows", "val_rows"}."""
    bounds = episode_bounds(data["terminals"])
    held = held_out_episodes(len(bounds), val_episodes, label)
    in_val = np.zeros(len(data["actions"]), bool)
    for e in held:
        a, b = bounds[e]
        in_val[a:b] = True
    val_rows, train_rows = np.flatnonzero(in_val), np.flatnonzero(~in_val)
    record = {
        "val_episodes": [int(e) for e in held],
        "episodes": len(bounds),
        "train_rows": int(len(train_rows)),
        "val_rows": int(len(val_rows)),
    }
    return take_rows(data, train_rows), take_rows(data, val_rows), record
