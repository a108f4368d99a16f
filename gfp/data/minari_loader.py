"""Loader for Minari datasets already on disk (source `minari`): an id such as
`D4RL/pen/human-v2` under the dataset directory (default `$MINARI_DATASETS_PATH` or
`~/.minari/datasets`, Minari's own), or a dataset directory given as the task. Never downloaded;
nothing is written. Episodes are flattened into transitions; Minari has no validation split.
Evaluation recovers the dataset's own evaluation environment (`gfp.tasks.minari_env`).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import numpy as np

from gfp.data import validate as V
from gfp.data.load import Loaded
from gfp.errors import DataError
from gfp.tasks import MINARI_TASKS, Task, minari_data_dir, minari_env


def _minari_root(dataset_dir: Path | None) -> Path:
    # Same rule as minari.storage.get_dataset_path, without its makedirs (loading writes nothing).
    if dataset_dir is not None:
        return dataset_dir
    return Path(os.environ.get("MINARI_DATASETS_PATH", "~/.minari/datasets")).expanduser()


def _data_path(task: Task, dataset_dir: Path | None) -> Path:
    given = Path(task.dataset).expanduser()
    if given.is_dir() and (data := minari_data_dir(given)) is not None:
        return data
    root = _minari_root(dataset_dir)
    data = root / task.dataset / "data"
    if (data / "metadata.json").is_file():
        return data
    close = difflib.get_close_matches(task.dataset, MINARI_TASKS, n=2, cutoff=0.8)
    hint = f" Did you mean {' or '.join(close)}?" if close and task.dataset not in close else ""
    raise DataError(
        f"Minari dataset '{task.dataset}' is not available locally: {data} does not exist. "
        "gfp never downloads; on a machine with internet run "
        f"`minari download {task.dataset}` and copy the dataset folder under {root} (or point "
        f"dataset_dir / MINARI_DATASETS_PATH at the folder that holds it).{hint}"
    )


def load(task: Task, dataset_dir: Path | None, *, validation: bool, antmaze: bool) -> Loaded:
    """Flatten a local Minari dataset's episodes into transitions."""
    import gymnasium
    import minari

    data_path = _data_path(task, dataset_dir)
    label = f"Minari dataset {task.dataset} ({data_path})"
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
    return Loaded(train, None, "minari", _eval_env(ds, data_path))


def _eval_env(ds: object, data_path: Path) -> str | None:
    """The evaluation environment: the dataset itself, from which evaluation recovers it with
    `recover_environment(eval_env=True)` (its evaluation spec, else the collecting env's, with
    their kwargs and episode limit); None when the dataset records neither."""
    metadata = ds.storage.metadata
    if metadata.get("eval_env_spec") is None and ds.env_spec is None:
        return None
    return minari_env(str(metadata.get("dataset_id") or ds.id), data_path.resolve())
