"""Loaders for D4RL-style files: a `.npz` / `.hdf5` / `.h5` path, or a D4RL name looked up in a
directory (default `$D4RL_DATASET_DIR` or `~/.d4rl/datasets`, D4RL's own).

Keys: observations, actions, rewards, terminals, timeouts and optionally next_observations, one
row per step (D4RL's layout). They are converted with the semantics of FQL's
`envs/d4rl_utils.get_dataset` (see :func:`d4rl_to_transitions`). A sibling `NAME-val.SUFFIX` is
the validation split. Nothing is ever downloaded or written.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from gfp.data import validate as V
from gfp.data.load import Loaded
from gfp.errors import DataError
from gfp.tasks import D4RL_FILE_NAMES, FILE_SUFFIXES, PAPER_TASKS, Task

_D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")


def load(task: Task, dataset_dir: Path | None, *, validation: bool, antmaze: bool) -> Loaded:
    """A file given by its path (sources `npz`, `hdf5`)."""
    path = Path(task.dataset).expanduser()
    train, val, kind = _load_file(path, validation, antmaze)
    return Loaded(train, val, kind, task.env_id)


def load_by_name(
    task: Task, dataset_dir: Path | None, *, validation: bool, antmaze: bool
) -> Loaded:
    """A D4RL name (source `d4rl`): NAME.npz / .hdf5 / .h5 (or D4RL's cache name) in the
    directory; evaluated in the environment of that name."""
    train, val, kind = _load_file(_find_d4rl_file(task, dataset_dir), validation, antmaze)
    return Loaded(train, val, kind, task.env_id)


class NpzReader:
    """Read-only lazy view of an .npz that turns unreadable keys into DataErrors."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._npz = np.load(path, allow_pickle=False)
        except Exception as e:  # noqa: BLE001  (zip/format errors come in many types)
            raise DataError(f"{path}: cannot be read as a .npz file ({e})") from e

    def __enter__(self) -> NpzReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._npz.close()

    def __contains__(self, key: object) -> bool:
        return key in self._npz.files

    def __iter__(self) -> Iterator[str]:
        return iter(self._npz.files)

    def __len__(self) -> int:
        return len(self._npz.files)

    def __getitem__(self, key: str) -> np.ndarray:
        try:
            return self._npz[key]
        except Exception as e:  # noqa: BLE001
            raise DataError(f"{self.path}: key '{key}' cannot be read ({e})") from e


def _read_hdf5(path: Path) -> dict[str, np.ndarray]:
    import h5py

    try:
        f = h5py.File(path, "r")
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{path}: cannot be read as an HDF5 file ({e})") from e
    with f:
        out = {}
        for key in _D4RL_KEYS:
            if key not in f:
                continue
            obj = f[key]
            if not isinstance(obj, h5py.Dataset):
                V.fail(str(path), key, "is an HDF5 group, expected an array")
            try:
                out[key] = np.asarray(obj[()])
            except Exception as e:  # noqa: BLE001
                raise DataError(f"{path}: key '{key}' cannot be read ({e})") from e
    return out


def _read_file(path: Path) -> tuple[dict[str, np.ndarray], str]:
    if path.suffix == ".npz":
        with NpzReader(path) as raw:
            if "rewards" not in raw and "terminals" in raw and "observations" in raw:
                raise DataError(
                    f"{path}: key 'rewards' is missing; this looks like an OGBench dataset "
                    "(rewards are computed per task), so load it by its singletask task name, "
                    f"e.g. load_dataset('<env>-<type>-singletask-task1-v0', dataset_dir='{path}')"
                )
            return {k: raw[k] for k in _D4RL_KEYS if k in raw}, "npz"
    return _read_hdf5(path), "hdf5"


def _load_file(
    path: Path, validation: bool, antmaze: bool
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None, str]:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.suffix not in FILE_SUFFIXES:
        raise DataError(
            f"{path}: unsupported file type '{path.suffix}' (expected .npz, .hdf5 or .h5)"
        )
    raw, kind = _read_file(path)
    V.validate_d4rl_arrays(raw, str(path))
    train = d4rl_to_transitions(raw, str(path), antmaze=antmaze)
    val = None
    val_path = path.with_name(path.stem + "-val" + path.suffix)
    if validation and not path.stem.endswith("-val") and val_path.is_file():
        raw_val, _ = _read_file(val_path)
        V.validate_d4rl_arrays(raw_val, str(val_path))
        val = d4rl_to_transitions(raw_val, str(val_path), antmaze=antmaze)
    return train, val, kind


def d4rl_to_transitions(
    raw: dict[str, np.ndarray], file: str, *, antmaze: bool
) -> dict[str, np.ndarray]:
    """Convert validated D4RL-style arrays to transitions, following FQL's ``get_dataset``.

    * ``next_observations`` is taken from the file when present (every row kept); otherwise it
      is the next row, and rows whose next observation is unknown are dropped: those with
      ``timeouts`` = 1 and the last row (as ``d4rl.qlearning_dataset`` does). A terminal row
      keeps the next row as its next observation; its mask is 0 so it is never bootstrapped.
    * ``masks = 1 - terminals`` of the file.
    * ``terminals`` (episode end) = timeout, or ``next_observations[t] != observations[t+1]``,
      or a file terminal (not for antmaze, whose goal "terminals" do not end the recorded
      trajectory, as in FQL), or the last row.
    """
    obs = np.asarray(raw["observations"], dtype=np.float32)
    n = len(obs)
    term = np.asarray(raw["terminals"]).astype(bool)
    timeouts = np.asarray(raw["timeouts"]).astype(bool)
    if "next_observations" in raw:
        keep = np.ones(n, dtype=bool)
        obs_out = obs
        next_out = np.asarray(raw["next_observations"], dtype=np.float32)
    else:
        keep = ~timeouts
        keep[-1] = False
        # next_observations[t] = observations[t + 1], for the kept rows only
        obs_out = obs[:-1][keep[:-1]]
        next_out = obs[1:][keep[:-1]]
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        V.fail(file, "observations", "has no row with a known next observation (all timeouts?)")
    out = {
        "observations": obs_out,
        "actions": np.asarray(raw["actions"], dtype=np.float32)[keep],
        "rewards": np.asarray(raw["rewards"], dtype=np.float32)[keep],
        "masks": (~term[keep]).astype(np.float32),
        "next_observations": next_out,
    }
    ends = timeouts[idx].copy()
    if not antmaze:
        ends |= term[idx]
    ends[:-1] |= np.diff(idx) != 1  # a dropped row in between: different episodes
    ends[:-1] |= V.discontinuities(out["observations"], out["next_observations"])
    ends[-1] = True
    out["terminals"] = ends.astype(np.float32)
    return out


def _find_d4rl_file(task: Task, dataset_dir: Path | None) -> Path:
    name = task.dataset
    if dataset_dir is not None:
        root = dataset_dir
    else:
        # D4RL's own default download directory
        root = Path(os.environ.get("D4RL_DATASET_DIR", "~/.d4rl/datasets")).expanduser()
    candidates = [root / f"{name}{suffix}" for suffix in FILE_SUFFIXES]
    if name in D4RL_FILE_NAMES:
        candidates.append(root / D4RL_FILE_NAMES[name])
    for c in candidates:
        if c.is_file():
            return c
    tried = ", ".join(str(c) for c in candidates)
    # A plain name close to a paper task is most likely a typo of it.
    close = difflib.get_close_matches(name, PAPER_TASKS, n=3, cutoff=0.75)
    hint = f" Did you mean {' or '.join(close)}?" if task.benchmark == "other" and close else ""
    raise DataError(
        f"no dataset found for '{name}': it is not an existing file, an OGBench singletask "
        f"task or a local Minari dataset, and none of these files exist: {tried}. D4RL data "
        f"cannot be downloaded here; copy the file there (or pass its path / dataset_dir).{hint}"
    )
