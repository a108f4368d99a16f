"""Load an offline RL dataset, from a task name or a file, as validated float32 transitions.

One entry point, :func:`load_dataset`. It asks the task registry (:func:`gfp.tasks.parse_task`)
what the name means and calls the loader of its source (`LOADERS`, one function per source):

* **ogbench** (:mod:`gfp.data.ogbench_loader`): OGBench singletask tasks
  (``cube-double-play-singletask-task3-v0``) from the official ``.npz`` pair in ``dataset_dir``
  (default ``~/.ogbench/data``), relabelled exactly as ``ogbench.make_env_and_datasets`` does.
  Never downloaded: a missing file says how to generate or where to download it. OGBench's
  sharded datasets (a folder such as ``cube-quadruple-play-100m-v0/`` of ``STEM-000.npz``,
  ``STEM-001.npz``, ... and ``STEM-000-val.npz``; :mod:`gfp.data.sharded`) load when
  ``dataset_dir`` is that folder or holds it, shard by shard into arrays allocated once.
* **d4rl**, **npz**, **hdf5** (:mod:`gfp.data.file_loader`): D4RL-style files, by path or by a
  D4RL name such as ``antmaze-large-play-v2`` / ``pen-human-v1`` looked up in ``dataset_dir``
  (default ``$D4RL_DATASET_DIR`` or ``~/.d4rl/datasets``), converted like FQL's ``d4rl_utils``.
* **minari** (:mod:`gfp.data.minari_loader`): Minari datasets already on disk
  (``D4RL/pen/human-v2``, ``mujoco/hopper/medium-v0``, ...) under ``dataset_dir`` or
  ``$MINARI_DATASETS_PATH`` or ``~/.minari/datasets``, or a dataset directory; never downloaded.
* **lerobot** (:mod:`gfp.data.lerobot_loader`): a LeRobot dataset folder (``lerobot:PATH``,
  format v3.0 or v2.1), its observation chosen by ``obs_keys``; its actions normalised to
  [-1, 1] from the dataset's stats, the map and its inverse in ``Dataset.info``. No environment.

Reward shift: ``reward_shift=None`` means "FQL's default": ``-1.0`` when the data is antmaze and
not an OGBench task (D4RL antmaze rewards become r - 1, as FQL's ``d4rl_utils`` does), else
``0.0``. Pass a number to override, e.g. ``reward_shift=0.0``.

Actions are clipped to ``[-1 + 1e-5, 1 - 1e-5]`` as FQL does (``clip_actions``), after the raw
file has been checked to lie in [-1, 1] (see :mod:`gfp.data.validate`). Loading never writes to
disk.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from gfp.data import validate as V
from gfp.errors import ConfigError, DataError
from gfp.tasks import FILE_SUFFIXES, Task, parse_task

# FQL clips dataset actions slightly inside the box so that atanh-style squashing stays finite.
ACTION_CLIP = 1.0 - 1e-5

# The loader of each source in gfp.tasks.SOURCES, as "module:function". Imported on first use so
# that `import gfp.data.load` does not pull in OGBench, h5py or Minari. A loader is called as
# `load(task, dataset_dir, validation=..., antmaze=...)` (the lerobot loader also with
# `obs_keys=` and `reward=`) and returns `Loaded`.
LOADERS: dict[str, str] = {
    "ogbench": "gfp.data.ogbench_loader:load",
    "d4rl": "gfp.data.file_loader:load_by_name",
    "npz": "gfp.data.file_loader:load",
    "hdf5": "gfp.data.file_loader:load",
    "minari": "gfp.data.minari_loader:load",
    "lerobot": "gfp.data.lerobot_loader:load",
}
# The sources whose observation is chosen among the dataset's features (`obs_keys`).
OBS_KEY_SOURCES = ("lerobot",)
# The sources whose rewards are chosen: a column or a success rule (`reward`, gfp.data.rewards).
REWARD_SOURCES = ("lerobot",)


class Loaded(NamedTuple):
    """What a loader returns: the splits (unshifted, unclipped, raw-validated), the kind of data
    read (``Dataset.source``), the environment evaluation should build (None if unknown) and
    what else a run should keep of the data (``info``, e.g. LeRobot's action normalisation)."""

    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray] | None
    source: str
    env_name: str | None
    info: dict[str, Any] | None = None


@dataclass
class Dataset:
    """Training (and optional validation) transitions plus where they came from.

    ``train`` / ``val`` hold ``observations``, ``actions``, ``rewards``, ``masks`` (1 = bootstrap
    from the next state), ``terminals`` (1 = last transition of an episode) and
    ``next_observations``, all float32. OGBench pixel tasks hold uint8 images in the frame form
    (gfp.data.frame_layout): every frame once, ``tail_frames``, ``frame_start`` and
    ``frame_next`` in place of ``next_observations`` (``frame_layout.next_frames`` gives them).
    """

    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray] | None
    name: str  # the task name or file path given
    source: str  # 'ogbench' | 'hdf5' | 'minari' | 'npz'
    env_name: str | None  # what evaluation should build; None if unknown
    reward_shift: float = 0.0  # the shift that was added to the rewards (FQL antmaze: -1)
    # What else a run keeps of the data, JSON types: LeRobot's `action_normalization` (min/max
    # per dimension; gfp.data.lerobot_loader.unnormalize_actions turns actions back into robot
    # units) and `lerobot` (format, fps, the observation keys). Empty for the other sources.
    info: dict[str, Any] = field(default_factory=dict)

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
    obs_keys: str | None = None,
    reward: str | None = None,
    val_episodes: float = 0.0,
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
        obs_keys: a LeRobot dataset's features that make the observation, comma-separated
            (``observation.state``, or a camera ``observation.images.top``, ``KEY@HxW`` for
            another resolution); None: the loader's default. Other sources refuse it.
        reward: a LeRobot dataset's rewards: a scalar column (``next.reward``) or a rule,
            ``success`` / ``success:COLUMN`` / ``episode-end`` (gfp.data.rewards); None:
            ``next.reward``. Other sources refuse it.
        val_episodes: hold out whole episodes of the training data as the validation split
            (gfp.data.split): N >= 1 episodes or a fraction 0 < f < 1; 0 keeps the dataset's own
            validation split. Which were held out: ``Dataset.info["split"]``.

    Raises:
        DataError: missing or malformed data (names the file, key and first bad index).
        ConfigError: a name that is no task (e.g. an OGBench name with a typo).
    """
    spec = str(task_or_path)
    task = parse_task(spec)
    directory = _dataset_dir(task, dataset_dir)
    antmaze = _fql_antmaze(task)
    module, function = LOADERS[task.source].split(":")
    loader = getattr(importlib.import_module(module), function)
    options: dict[str, Any] = {}
    if obs_keys is not None:
        if task.source not in OBS_KEY_SOURCES:
            raise ConfigError(
                f"obs_keys (--obs-keys) chooses among a LeRobot dataset's features; {spec} is "
                f"a {task.source} dataset, whose observation is fixed"
            )
        options["obs_keys"] = obs_keys
    if reward is not None:
        if task.source not in REWARD_SOURCES:
            raise ConfigError(
                f"reward (--reward) chooses a LeRobot dataset's rewards; {spec} is a "
                f"{task.source} dataset, whose rewards are fixed"
            )
        options["reward"] = reward
    train, val, source, env_name, info = loader(
        task, directory, validation=validation, antmaze=antmaze, **options
    )

    if reward_shift is None:
        reward_shift = -1.0 if antmaze else 0.0
    for split, label in ((train, f"{spec} (train)"), (val, f"{spec} (val)")):
        if split is None:
            continue
        if reward_shift:
            split["rewards"] = (split["rewards"] + np.float32(reward_shift)).astype(np.float32)
        if clip_actions:
            split["actions"] = np.clip(split["actions"], -ACTION_CLIP, ACTION_CLIP)
        V.validate_transitions(split, label)
    if val_episodes:
        train, val, info = _held_out(spec, train, val if validation else None, val_episodes, info)
    return Dataset(
        train=train,
        val=val if validation or val_episodes else None,
        name=spec,
        source=source,
        env_name=env_name,
        reward_shift=float(reward_shift),
        info=dict(info or {}),
    )


def _held_out(
    spec: str,
    train: dict[str, np.ndarray],
    val: dict[str, np.ndarray] | None,
    val_episodes: float,
    info: dict[str, Any] | None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """`train` cut into (train, val) by whole episodes (gfp.data.split), the held-out episodes in
    the info's "split"; refused when the dataset has its own validation split."""
    from gfp.data.split import split_episodes

    if val is not None:
        raise ConfigError(
            f"val_episodes (--val-episodes) = {val_episodes:g}: {spec} has its own validation "
            f"split ({len(val['actions'])} transitions); leave --val-episodes at 0 to use it"
        )
    train, val, record = split_episodes(train, val_episodes, spec)
    return train, val, {**(info or {}), "split": record}


def _fql_antmaze(task: Task) -> bool:
    """FQL's test for its antmaze-specific handling (reward - 1, goal terminals kept in-episode):
    'antmaze' in the name, for any data but OGBench's (whose antmaze rewards are relabelled)."""
    if task.source == "ogbench":
        return False
    name = task.env_id or task.dataset
    if task.source in ("npz", "hdf5") and task.env_id is None:
        name = Path(task.dataset).name  # the file's own name, not the folders above it
    return "antmaze" in name.lower()


def _dataset_dir(task: Task, dataset_dir: str | Path | None) -> Path | None:
    """``dataset_dir`` as a Path; a file there is an error unless it is an OGBench train .npz."""
    if dataset_dir is None:
        return None
    directory = Path(dataset_dir).expanduser()
    if directory.is_file() and not (task.source == "ogbench" and directory.suffix == ".npz"):
        if directory.suffix in FILE_SUFFIXES:
            hint = f"to train on this file, pass it as the task (--task {directory})"
        else:
            hint = f"pass the folder that holds the data, e.g. {directory.parent}"
        raise DataError(
            f"dataset_dir (--dataset-dir) {directory} is a file, not a directory; {hint}"
        )
    return directory
