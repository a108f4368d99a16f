"""Load an offline RL dataset, from a task name or a file, as validated float32 transitions.

One entry point, :func:`load_dataset`, handles every data source GFP is trained on:

* **OGBench singletask tasks** (``cube-double-play-singletask-task3-v0``): the official ``.npz``
  pair ``NAME.npz`` / ``NAME-val.npz`` in ``dataset_dir`` (default ``~/.ogbench/data``, OGBench's
  own). Rows are converted by ``ogbench.utils.load_dataset`` and rewards/masks come from
  ``ogbench.relabel_utils.relabel_dataset``, i.e. exactly what ``ogbench.make_env_and_datasets``
  returns. We never let OGBench download: a missing file is a :class:`DataError` that says how
  to make it (``gfp data generate ...``) or where to download it from.
* **D4RL-style HDF5** files (a path, or a D4RL task name such as ``antmaze-large-play-v2`` /
  ``pen-human-v1`` looked up in ``dataset_dir``, default ``$D4RL_DATASET_DIR`` or
  ``~/.d4rl/datasets``), converted with the semantics of FQL's ``envs/d4rl_utils.get_dataset``
  (see :func:`d4rl_to_transitions`).
* **Minari** datasets already on disk (``D4RL/pen/human-v2``, ``mujoco/hopper/medium-v0``, ...)
  under ``dataset_dir`` or ``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``; never downloaded.
* A plain **.npz** with the same keys as the HDF5 form.

Reward shift: ``reward_shift=None`` means "FQL's default": ``-1.0`` when the (file) name contains
``antmaze`` and the data is not an OGBench task (D4RL antmaze rewards become r - 1, as FQL's
``d4rl_utils`` does), else ``0.0``. Pass a number to override, e.g. ``reward_shift=0.0``.

Actions are clipped to ``[-1 + 1e-5, 1 - 1e-5]`` as FQL does (``clip_actions``), after the raw
file has been checked to lie in [-1, 1] (see :mod:`gfp.data.validate`). Loading never writes to
disk.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gfp.data import validate as V
from gfp.data.generate import GENERATABLE, OFFICIAL_SIZES, dataset_file_stem, default_dataset_dir
from gfp.errors import ConfigError, DataError

# FQL clips dataset actions slightly inside the box so that atanh-style squashing stays finite.
ACTION_CLIP = 1.0 - 1e-5

_FILE_SUFFIXES = (".npz", ".hdf5", ".h5")

# OGBench's dataset server (ogbench.utils.DATASET_URL); named in the "download it" error.
_OGBENCH_URL = "https://rail.eecs.berkeley.edu/datasets/ogbench"

# Dataset types per OGBench environment family; a name with another type is not an OGBench task.
_OGBENCH_TYPES = {
    "cube": ("play", "noisy"),
    "scene": ("play", "noisy"),
    "puzzle": ("play", "noisy"),
    "pointmaze": ("navigate", "stitch", "explore"),
    "antmaze": ("navigate", "stitch", "explore"),
    "humanoidmaze": ("navigate", "stitch", "explore"),
    "antsoccer": ("navigate", "stitch"),
}
# The file names D4RL's own downloader stores in ~/.d4rl/datasets for the paper's antmaze tasks
# (basename of the URL in D4RL's infos.py). Adroit v1 files are simply NAME.hdf5.
_D4RL_FILE_NAMES = {
    "antmaze-umaze-v2": "Ant_maze_u-maze_noisy_multistart_False_multigoal_False_sparse_fixed.hdf5",
    "antmaze-umaze-diverse-v2": (
        "Ant_maze_u-maze_noisy_multistart_True_multigoal_True_sparse_fixed.hdf5"
    ),
    "antmaze-medium-play-v2": (
        "Ant_maze_big-maze_noisy_multistart_True_multigoal_False_sparse_fixed.hdf5"
    ),
    "antmaze-medium-diverse-v2": (
        "Ant_maze_big-maze_noisy_multistart_True_multigoal_True_sparse_fixed.hdf5"
    ),
    "antmaze-large-play-v2": (
        "Ant_maze_hardest-maze_noisy_multistart_True_multigoal_False_sparse_fixed.hdf5"
    ),
    "antmaze-large-diverse-v2": (
        "Ant_maze_hardest-maze_noisy_multistart_True_multigoal_True_sparse_fixed.hdf5"
    ),
}


@dataclass
class Dataset:
    """Training (and optional validation) transitions plus where they came from.

    ``train`` / ``val`` hold ``observations``, ``actions``, ``rewards``, ``masks`` (1 = bootstrap
    from the next state), ``terminals`` (1 = last transition of an episode) and
    ``next_observations``, all float32 (observations are uint8 for OGBench pixel tasks).
    """

    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray] | None
    name: str  # the task name or file path given
    source: str  # 'ogbench' | 'hdf5' | 'minari' | 'npz'
    env_name: str | None  # what evaluation should build; None if unknown
    reward_shift: float = 0.0  # the shift that was added to the rewards (FQL antmaze: -1)

    @property
    def obs_dim(self) -> int:
        return int(np.prod(self.train["observations"].shape[1:]))

    @property
    def act_dim(self) -> int:
        return int(self.train["actions"].shape[1])

    @property
    def size(self) -> int:
        """Number of training transitions."""
        return int(len(self.train["observations"]))


def load_dataset(
    task_or_path: str,
    dataset_dir: str | Path | None = None,
    *,
    reward_shift: float | None = None,
    clip_actions: bool = True,
    validation: bool = True,
) -> Dataset:
    """Load ``task_or_path`` as training (and validation) transitions; see the module docstring.

    Args:
        task_or_path: an OGBench singletask task name, a Minari dataset id, a D4RL task name, or
            a path to a ``.npz`` / ``.hdf5`` / ``.h5`` file or a Minari dataset directory.
        dataset_dir: where the data lives: OGBench's data directory (or the train ``.npz``
            itself), the Minari datasets root, or the directory holding D4RL files. ``None``
            uses each library's default.
        reward_shift: added to every reward; ``None`` = -1 for non-OGBench antmaze data, else 0.
        clip_actions: clip actions to ``[-1 + 1e-5, 1 - 1e-5]`` (FQL).
        validation: also load the validation split when the source has one (OGBench's
            ``-val.npz``; for files, a sibling ``NAME-val.npz`` / ``NAME-val.hdf5``).

    Raises:
        DataError: missing or malformed data (names the file, key and first bad index).
        ConfigError: a name that looks like an OGBench task but is not one.
    """
    spec = str(task_or_path)
    path = Path(spec).expanduser()

    if path.suffix in _FILE_SUFFIXES or path.is_file():
        env_name = _env_name_for_file(path)
        rule_name = env_name or path.name
        train, val, source = _load_file(path, validation, _is_antmaze(rule_name))
    elif path.is_dir() and _minari_data_path(path) is not None:
        train, env_name = _load_minari(spec, _minari_data_path(path))
        val, source, rule_name = None, "minari", spec
    elif _looks_like_ogbench(spec):
        train, val = _load_ogbench(spec, dataset_dir, validation)
        source, rule_name, env_name = "ogbench", spec, spec
    else:
        minari_path = _minari_root(dataset_dir) / spec / "data"
        if (minari_path / "metadata.json").is_file():
            train, env_name = _load_minari(spec, minari_path)
            val, source, rule_name = None, "minari", spec
        elif "/" in spec:
            raise DataError(
                f"Minari dataset '{spec}' is not available locally: {minari_path} does not exist. "
                "gfp never downloads; on a machine with internet run "
                f"`minari download {spec}` and copy the dataset folder under "
                f"{_minari_root(dataset_dir)} (or point dataset_dir / MINARI_DATASETS_PATH at "
                "the folder that holds it)."
            )
        else:
            file = _find_d4rl_file(spec, dataset_dir)
            train, val, source = _load_file(file, validation, _is_antmaze(spec))
            rule_name, env_name = spec, spec

    if reward_shift is None:
        reward_shift = -1.0 if (source != "ogbench" and _is_antmaze(rule_name)) else 0.0
    for split, label in ((train, f"{spec} (train)"), (val, f"{spec} (val)")):
        if split is None:
            continue
        if reward_shift:
            split["rewards"] = (split["rewards"] + np.float32(reward_shift)).astype(np.float32)
        if clip_actions:
            split["actions"] = np.clip(split["actions"], -ACTION_CLIP, ACTION_CLIP)
        V.validate_transitions(split, label)
    return Dataset(
        train=train,
        val=val if validation else None,
        name=spec,
        source=source,
        env_name=env_name,
        reward_shift=float(reward_shift),
    )


def _is_antmaze(name: str) -> bool:
    """FQL's test for its antmaze-specific handling (reward - 1, goal terminals kept in-episode)."""
    return "antmaze" in name.lower()


# --------------------------------------------------------------------------------------------
# OGBench


def _ogbench_family(name: str) -> str | None:
    base = name.removeprefix("visual-")
    for family in _OGBENCH_TYPES:
        if base.startswith(family + "-"):
            return family
    return None


def _looks_like_ogbench(name: str) -> bool:
    """True for OGBench dataset names (singletask or not) of a known environment family."""
    splits = name.split("-")
    family = _ogbench_family(name)
    if family is None or len(splits) < 3:
        return False
    if "singletask" in splits:
        return True
    # goal-conditioned dataset name, e.g. cube-double-play-v0 (rejected later with a hint)
    return splits[-2] in _OGBENCH_TYPES[family] and splits[-1] == "v0"


def _ogbench_env_id(task: str) -> str:
    """Validate an OGBench singletask task name and return its environment id."""
    import gymnasium
    import ogbench  # noqa: F401  (registers the OGBench environments)

    splits = task.split("-")
    family = _ogbench_family(task)
    assert family is not None
    if "singletask" not in splits:
        raise ConfigError(
            f"'{task}' is a goal-conditioned OGBench dataset; GFP trains on reward-based "
            f"singletask tasks such as '{'-'.join(splits[:-1])}-singletask-task1-v0' "
            "(task1..task5)."
        )
    pos = splits.index("singletask")
    dataset_type = splits[pos - 1] if pos >= 1 else ""
    env_id = "-".join(splits[: pos - 1] + splits[pos:])
    if dataset_type not in _OGBENCH_TYPES[family] or env_id not in gymnasium.registry:
        raise ConfigError(
            f"'{task}' is not an OGBench singletask task (environment '{env_id}' is unknown or "
            f"dataset type '{dataset_type}' is not one of {', '.join(_OGBENCH_TYPES[family])}); "
            "example: cube-double-play-singletask-task3-v0."
        )
    return env_id


def _missing_ogbench_message(task: str, stem: str, missing: Path, out_dir: Path) -> str:
    if stem not in GENERATABLE:
        if task.startswith("visual-"):
            why = "gfp's generator makes state-based datasets only"
        else:
            why = (
                "antmaze, humanoidmaze and antsoccer data come from OGBench's pretrained expert "
                "policies, which are not in the ogbench package"
            )
        return (
            f"OGBench dataset file {missing} does not exist. It cannot be generated offline "
            f"({why}), so download {_OGBENCH_URL}/{stem}.npz and {_OGBENCH_URL}/{stem}-val.npz "
            f"on a machine with internet access and copy both into {out_dir}."
        )
    n, _ = OFFICIAL_SIZES[stem]
    return (
        f"OGBench dataset file {missing} does not exist. Generate it offline with "
        f"`gfp data generate {task} --episodes {n} --out {out_dir}` ({n} episodes is the "
        "official size; fewer, e.g. --episodes 100, is enough for a quick test)."
    )


_OGBENCH_KEYS = ("observations", "actions", "terminals", "qpos", "qvel", "button_states")


def _load_ogbench(
    task: str, dataset_dir: str | Path | None, validation: bool
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    import ogbench
    from ogbench.relabel_utils import relabel_dataset

    env_id = _ogbench_env_id(task)
    stem = dataset_file_stem(task)
    given = Path(dataset_dir).expanduser() if dataset_dir is not None else None
    if given is not None and given.suffix == ".npz":
        # like ogbench's dataset_path=: the train file itself, val next to it
        train_path = given
        val_path = given.with_name(given.stem + "-val.npz")
        out_dir = given.parent
    else:
        out_dir = given if given is not None else default_dataset_dir()
        train_path, val_path = out_dir / f"{stem}.npz", out_dir / f"{stem}-val.npz"
    paths = [train_path, val_path] if validation else [train_path]
    # Check before OGBench sees the path: its loader would try to download a missing file.
    for p in paths:
        if not p.is_file():
            raise DataError(_missing_ogbench_message(task, stem, p, out_dir))

    visual = task.startswith("visual-")
    family = _ogbench_family(task)
    info_keys = ("qpos", "button_states") if family in ("scene", "puzzle") else ("qpos",)
    shapes = {}
    for p in paths:
        # Read each key once (an NpzFile decompresses again on every access); OGBench's own
        # loader reads the file a second time below.
        with _open_npz(p) as raw:
            arrays = {k: raw[k] for k in _OGBENCH_KEYS if k in raw}
        V.validate_ogbench_arrays(arrays, str(p), info_keys=info_keys, visual=visual)
        shapes[p] = {k: v.shape[1:] for k, v in arrays.items()}
        del arrays

    # OGBench needs the task's env to relabel rewards; it is dropped right after (evaluation
    # builds its own).
    env = ogbench.make_env_and_datasets(task, env_only=True)
    try:
        # Relabelling slices qpos by position, so a file from another env must fail here, not
        # with a broadcasting error (or silently wrong rewards) inside OGBench.
        u = env.unwrapped
        model = getattr(u, "model", None) or getattr(u, "_model", None)
        expected = {
            "observations": env.observation_space.shape,
            "actions": env.action_space.shape,
            "qpos": (model.nq,) if model is not None else None,
            "qvel": (model.nv,) if model is not None else None,
        }
        for p in paths:
            for key, want in expected.items():
                have = shapes[p].get(key)
                if want is not None and have is not None and have != want:
                    V.fail(str(p), key, f"rows have shape {have} but {env_id} needs {want}")
        splits = []
        for p in paths:
            data = ogbench.utils.load_dataset(
                str(p),
                ob_dtype=np.uint8 if visual else np.float32,
                action_dtype=np.float32,
                add_info=True,
            )
            relabel_dataset(env_id, env, data)
            splits.append({k: data[k] for k in V.TRANSITION_KEYS})
    finally:
        env.close()
    return splits[0], (splits[1] if validation else None)


# --------------------------------------------------------------------------------------------
# Files: D4RL-style HDF5 and plain .npz


class _NpzReader:
    """Read-only lazy view of an .npz that turns unreadable keys into DataErrors."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._npz = np.load(path, allow_pickle=False)
        except Exception as e:  # noqa: BLE001  (zip/format errors come in many types)
            raise DataError(f"{path}: cannot be read as a .npz file ({e})") from e

    def __enter__(self) -> _NpzReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self._npz.close()

    def __contains__(self, key: object) -> bool:
        return key in self._npz.files

    def __iter__(self):
        return iter(self._npz.files)

    def __len__(self) -> int:
        return len(self._npz.files)

    def __getitem__(self, key: str) -> np.ndarray:
        try:
            return self._npz[key]
        except Exception as e:  # noqa: BLE001
            raise DataError(f"{self.path}: key '{key}' cannot be read ({e})") from e


def _open_npz(path: Path) -> _NpzReader:
    return _NpzReader(path)


_D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")


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
        with _open_npz(path) as raw:
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
    if path.suffix not in _FILE_SUFFIXES:
        raise DataError(
            f"{path}: unsupported file type '{path.suffix}' (expected .npz, .hdf5 or .h5)"
        )
    raw, source = _read_file(path)
    V.validate_d4rl_arrays(raw, str(path))
    train = d4rl_to_transitions(raw, str(path), antmaze=antmaze)
    val = None
    val_path = path.with_name(path.stem + "-val" + path.suffix)
    if validation and not path.stem.endswith("-val") and val_path.is_file():
        raw_val, _ = _read_file(val_path)
        V.validate_d4rl_arrays(raw_val, str(val_path))
        val = d4rl_to_transitions(raw_val, str(val_path), antmaze=antmaze)
    return train, val, source


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


def _find_d4rl_file(name: str, dataset_dir: str | Path | None) -> Path:
    if dataset_dir is not None:
        root = Path(dataset_dir).expanduser()
    else:
        # D4RL's own default download directory
        root = Path(os.environ.get("D4RL_DATASET_DIR", "~/.d4rl/datasets")).expanduser()
    candidates = [root / f"{name}{suffix}" for suffix in _FILE_SUFFIXES]
    if name in _D4RL_FILE_NAMES:
        candidates.append(root / _D4RL_FILE_NAMES[name])
    for c in candidates:
        if c.is_file():
            return c
    tried = ", ".join(str(c) for c in candidates)
    raise DataError(
        f"no dataset found for '{name}': it is not an existing file, an OGBench singletask task "
        f"or a local Minari dataset, and none of these files exist: {tried}. D4RL data cannot be "
        "downloaded here; copy the file there (or pass its path / dataset_dir)."
    )


def _env_name_for_file(path: Path) -> str | None:
    """The D4RL task a file belongs to when its name says so, else None (unknown)."""
    from gfp.data.scores import D4RL_TASKS

    stem = path.stem.removesuffix("-val")
    if stem in D4RL_TASKS:
        return stem
    for task, file_name in _D4RL_FILE_NAMES.items():
        if path.name == file_name:
            return task
    return None


# --------------------------------------------------------------------------------------------
# Minari


def _minari_root(dataset_dir: str | Path | None) -> Path:
    # Same rule as minari.storage.get_dataset_path, without its makedirs (loading writes nothing).
    if dataset_dir is not None:
        return Path(dataset_dir).expanduser()
    return Path(os.environ.get("MINARI_DATASETS_PATH", "~/.minari/datasets")).expanduser()


def _minari_data_path(directory: Path) -> Path | None:
    """The Minari 'data' folder of a dataset directory (or the folder itself), if it is one."""
    for candidate in (directory / "data", directory):
        if (candidate / "metadata.json").is_file():
            return candidate
    return None


def _load_minari(dataset_id: str, data_path: Path) -> tuple[dict[str, np.ndarray], str | None]:
    """Flatten a local Minari dataset's episodes into transitions (no download, no writes)."""
    import gymnasium
    import minari

    label = f"Minari dataset {dataset_id} ({data_path})"
    try:
        ds = minari.MinariDataset(data_path)
    except Exception as e:  # noqa: BLE001
        raise DataError(f"{label}: cannot be read ({e})") from e
    if not isinstance(ds.observation_space, gymnasium.spaces.Box):
        raise DataError(
            f"{label}: observation space {ds.observation_space} is not a flat Box; only "
            "array observations are supported"
        )

    parts: dict[str, list[np.ndarray]] = {k: [] for k in V.EPISODE_KEYS}
    last_rows = []
    offset = 0
    for ep in ds.iterate_episodes():
        obs = np.asarray(ep.observations)
        steps = len(ep.actions)
        if len(obs) != steps + 1:
            V.fail(
                label,
                "observations",
                f"has {len(obs)} entries in episode {ep.id}, expected {steps + 1} "
                "(one more than actions)",
                offset,
            )
        for key in ("rewards", "terminations", "truncations"):
            if len(getattr(ep, key)) != steps:
                V.fail(
                    label,
                    key,
                    f"has {len(getattr(ep, key))} entries in episode {ep.id}, expected {steps}",
                    offset,
                )
        if steps == 0:
            continue
        parts["observations"].append(obs[:-1])
        parts["next_observations"].append(obs[1:])
        parts["actions"].append(np.asarray(ep.actions))
        for key in ("rewards", "terminations", "truncations"):
            parts[key].append(np.asarray(getattr(ep, key)))
        offset += steps
        last_rows.append(offset - 1)
    if not last_rows:
        raise DataError(f"{label}: has no steps")
    flat = {k: np.concatenate(v) for k, v in parts.items()}
    V.validate_episode_arrays(flat, label)

    term = flat["terminations"].astype(bool)
    ends = term | flat["truncations"].astype(bool)
    ends[np.asarray(last_rows)] = True
    train = {
        "observations": flat["observations"].astype(np.float32),
        "actions": flat["actions"].astype(np.float32),
        "rewards": flat["rewards"].astype(np.float32),
        "masks": (1.0 - term).astype(np.float32),
        "terminals": ends.astype(np.float32),
        "next_observations": flat["next_observations"].astype(np.float32),
    }
    return train, _minari_env_name(ds)


def _minari_env_name(ds: object) -> str | None:
    """The evaluation env id stored with the dataset (falling back to the collecting env)."""
    eval_spec = ds.storage.metadata.get("eval_env_spec")
    if isinstance(eval_spec, str):
        try:
            env_id = json.loads(eval_spec).get("id")
        except (ValueError, AttributeError):
            env_id = None
        if env_id:
            return str(env_id)
    spec = ds.env_spec
    return spec.id if spec is not None else None
