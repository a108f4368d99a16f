"""The shard store of dataset generation: one atomically written `.npz` per finished episode in
`OUT/.NAME.shards/<settings>/`, named `{split}-{index:06d}.npz`, merged in episode order at the end.
A killed or interrupted run leaves only whole shards (and temp files, removed on the next run), so
a rerun collects just the missing episodes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from gfp.errors import DataError

Job = tuple[str, int]  # (split, episode index)


def shard_path(shard_dir: Path, split: str, index: int) -> Path:
    """Where episode `index` of `split` ('train' or 'val') is kept."""
    return shard_dir / f"{split}-{index:06d}.npz"


def pending(episodes: int, n_val: int, done: set[Job]) -> Iterator[Job]:
    """The episodes still to collect, in order, generated lazily: a huge count costs no memory."""
    for split, count in (("train", episodes), ("val", n_val)):
        for index in range(count):
            if (split, index) not in done:
                yield split, index


def finished(shard_dir: Path, episodes: int, n_val: int) -> set[Job]:
    """The episodes of this request whose shards a previous (killed) run already wrote."""
    counts = {"train": episodes, "val": n_val}
    out = set()
    for entry in os.scandir(shard_dir):
        split, _, rest = entry.name.partition("-")
        index = rest.removesuffix(".npz")
        ours = split in counts and rest.endswith(".npz") and index.isdigit()
        if ours and int(index) < counts[split]:
            out.add((split, int(index)))
    return out


@contextlib.contextmanager
def lock(path: Path, name: str, out_dir: Path) -> Iterator[None]:
    """Hold the generation lock of dataset `name` in `out_dir`: a second run is refused."""
    with open(path, "a") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(
                f"another generation of {name} into {out_dir} is running (lock {path})"
            ) from None
        yield


def merge(
    shard_dir: Path, split: str, episodes: int, length: int, name: str, start: int = 0
) -> dict[str, np.ndarray]:
    """Concatenate the shards of episodes `start` .. `start + episodes - 1` of one split, in
    episode order, into preallocated arrays (the whole split, or one shard of a sharded output)."""
    merged: dict[str, np.ndarray] = {}
    for row, index in enumerate(range(start, start + episodes)):
        path = shard_path(shard_dir, split, index)
        try:
            with np.load(path) as shard:
                rows = {k: shard[k] for k in shard.files}
        except Exception as exc:  # a shard is written atomically, so this means outside damage
            raise DataError(
                f"{name}: unreadable shard {path} ({exc}); delete it and rerun"
            ) from exc
        if not merged:
            merged = {
                k: np.empty((episodes * length, *v.shape[1:]), v.dtype) for k, v in rows.items()
            }
        ok = set(rows) == set(merged) and all(len(v) == length for v in rows.values())
        if not ok or not rows["terminals"][-1] or rows["terminals"][:-1].any():
            raise DataError(
                f"{name}: shard {path} does not hold one {length}-row episode; delete it"
            )
        for k, v in rows.items():
            merged[k][row * length : (row + 1) * length] = v
    return merged


def row_bytes(shard: Path) -> int:
    """Bytes of one row of the dataset that `shard` is part of (every key, one row each)."""
    with np.load(shard) as f:
        return sum(f[k].itemsize * int(np.prod(f[k].shape[1:])) for k in f.files)
