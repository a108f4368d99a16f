"""Loader for OGBench singletask tasks (source `ogbench`).

The official `.npz` pair `STEM.npz` / `STEM-val.npz` in the dataset directory (default
`~/.ogbench/data`, OGBench's own) is checked, then converted by `ogbench.utils.load_dataset`, and
its rewards/masks come from `ogbench.relabel_utils.relabel_dataset`: exactly what
`ogbench.make_env_and_datasets` returns. OGBench is never allowed to download: a missing file is a
DataError that says how to make it (`gfp data generate ...`) or where to download it from.

A sharded dataset (OGBench's 100M/1B folders, `STEM-000.npz`, `STEM-001.npz`, ... and
`STEM-000-val.npz`; see gfp.data.sharded) is read when the dataset directory is such a folder,
or holds one and no `STEM.npz`: each shard is checked and converted like a single file, into
arrays allocated once for the whole dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from gfp.data import sharded
from gfp.data import validate as V
from gfp.data.file_loader import NpzReader
from gfp.data.frame_layout import from_compact
from gfp.data.load import Loaded
from gfp.datagen.generate import GENERATABLE, OFFICIAL_SIZES, default_dataset_dir
from gfp.errors import DataError
from gfp.tasks import Task

# OGBench's dataset server (ogbench.utils.DATASET_URL); named in the "download it" error.
_OGBENCH_URL = "https://rail.eecs.berkeley.edu/datasets/ogbench"
_OGBENCH_KEYS = ("observations", "actions", "terminals", "qpos", "qvel", "button_states")


def _missing_message(task: Task, missing: Path, out_dir: Path) -> str:
    stem = task.dataset
    if stem not in GENERATABLE:
        if task.obs_kind == "pixels":
            why = "gfp's generator makes the manipulation datasets only"
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
        f"`gfp data generate {task.name.strip()} --episodes {n} --out {out_dir}` ({n} episodes "
        "is the official size; fewer, e.g. --episodes 100, is enough for a quick test)."
    )


def load(task: Task, dataset_dir: Path | None, *, validation: bool, antmaze: bool) -> Loaded:
    """`dataset_dir` is the directory holding the files, or (like ogbench's `dataset_path=`) the
    train `.npz` itself with the val file next to it."""
    if task.obs_kind == "pixels":
        # Relabelling resets the visual env, which renders: choose the offscreen OpenGL backend
        # before ogbench imports mujoco (gfp.render).
        from gfp.render import configure_gl

        configure_gl()
    import gymnasium
    import ogbench  # noqa: F401  (registers the OGBench environments)

    if dataset_dir is not None and dataset_dir.suffix == ".npz":
        train_path = dataset_dir
        val_path = dataset_dir.with_name(dataset_dir.stem + "-val.npz")
        out_dir = dataset_dir.parent
    else:
        out_dir = dataset_dir if dataset_dir is not None else default_dataset_dir()
        folder = _shard_folder(out_dir, task.dataset)
        if folder is not None:
            return _load_sharded(task, folder, validation=validation)
        train_path = out_dir / f"{task.dataset}.npz"
        val_path = out_dir / f"{task.dataset}-val.npz"
    paths = [train_path, val_path] if validation else [train_path]
    # Check before OGBench sees the path: its loader would try to download a missing file.
    for p in paths:
        if not p.is_file():
            raise DataError(_missing_message(task, p, out_dir))

    shapes = {p: _check_file(task, p) for p in paths}

    # The task's env relabels the rewards; it is dropped right after (evaluation builds its own).
    env = gymnasium.make(task.env_id)
    try:
        expected = _expected_shapes(task, env)
        for p in paths:
            _check_shapes(task, str(p), shapes[p], expected)
        splits = [_convert(task, env, p) for p in paths]
    finally:
        env.close()
    # Evaluation builds the task by its full name (see gfp.evaluate.make_env).
    return Loaded(splits[0], splits[1] if validation else None, "ogbench", task.name.strip())


def _info_keys(task: Task) -> tuple[str, ...]:
    family = task.env_key.removeprefix("visual-").split("-")[0]
    return ("qpos", "button_states") if family in ("scene", "puzzle") else ("qpos",)


def _check_file(task: Task, p: Path) -> dict[str, tuple[int, ...]]:
    """Validate one OGBench file's raw arrays (one-line errors naming it); its row shapes."""
    visual = task.obs_kind == "pixels"
    family = task.env_key.removeprefix("visual-").split("-")[0]
    # Read each key once (an NpzFile decompresses again on every access); OGBench's own
    # loader reads the file a second time.
    with NpzReader(p) as raw:
        arrays = {k: raw[k] for k in _OGBENCH_KEYS if k in raw}
    V.validate_ogbench_arrays(arrays, str(p), info_keys=_info_keys(task), visual=visual)
    if not visual:  # the relabelled rewards come from qpos: it must be the observations'
        V.check_ogbench_info(arrays, str(p), family)
    return {k: v.shape[1:] for k, v in arrays.items()}


def _expected_shapes(task: Task, env: Any) -> dict[str, tuple[int, ...] | None]:
    """The row shapes the task's environment needs. Relabelling slices qpos by position, so a
    file from another env must fail here, not with a broadcasting error (or silently wrong
    rewards) inside OGBench."""
    u = env.unwrapped
    model = getattr(u, "model", None) or getattr(u, "_model", None)
    return {
        "observations": env.observation_space.shape,
        "actions": env.action_space.shape,
        "qpos": (model.nq,) if model is not None else None,
        "qvel": (model.nv,) if model is not None else None,
    }


def _check_shapes(
    task: Task,
    file: str,
    shapes: dict[str, tuple[int, ...]],
    expected: dict[str, tuple[int, ...] | None],
) -> None:
    for key, want in expected.items():
        have = shapes.get(key)
        if want is not None and have is not None and tuple(have) != tuple(want):
            V.fail(file, key, f"rows have shape {tuple(have)} but {task.env_id} needs {want}")


def _convert(task: Task, env: Any, p: Path) -> dict[str, np.ndarray]:
    """One OGBench file as transitions: OGBench's own conversion, then the singletask
    relabelling of its rewards and masks (ogbench.make_env_and_datasets's steps)."""
    import ogbench
    from ogbench.relabel_utils import relabel_dataset

    visual = task.obs_kind == "pixels"
    # Images in OGBench's compact layout (every frame once), turned into gfp's frame form
    # in place; the regular layout would hold them three times while loading.
    data = ogbench.utils.load_dataset(
        str(p),
        ob_dtype=np.uint8 if visual else np.float32,
        action_dtype=np.float32,
        compact_dataset=visual,
        add_info=True,
    )
    relabel_dataset(task.env_id, env, data)
    if visual:
        return _frame_form(data, str(p))
    return {k: data[k] for k in V.TRANSITION_KEYS}


def _shard_folder(out_dir: Path, stem: str) -> Path | None:
    """Where STEM's shards are, if the data is sharded: `out_dir` itself (OGBench's folder, e.g.
    cube-quadruple-play-100m-v0/, given as the dataset directory), or, when `out_dir` has no
    STEM.npz, its one sharded folder of STEM (BASE-SIZE-VERSION/, gfp.data.sharded)."""
    if sharded.is_sharded(out_dir, stem):
        return out_dir
    if (out_dir / f"{stem}.npz").exists() or not out_dir.is_dir():
        return None
    base, _, version = stem.rpartition("-")
    folders = sorted(
        d for d in out_dir.glob(f"{sharded.glob_escape(base)}-*-{version}")
        if d.is_dir() and sharded.is_sharded(d, stem)
    )  # fmt: skip
    if len(folders) > 1:
        names = ", ".join(d.name for d in folders)
        raise DataError(
            f"{out_dir}: several sharded datasets of {stem} ({names}); pass the one to load as "
            "the dataset directory (--dataset-dir)"
        )
    return folders[0] if folders else None


def _load_sharded(task: Task, folder: Path, *, validation: bool) -> Loaded:
    """A folder of OGBench shards (gfp.data.sharded), validated and relabelled shard by shard
    exactly as one file is, into arrays allocated once for the whole dataset."""
    import gymnasium

    if task.obs_kind == "pixels":
        raise DataError(
            f"{folder}: sharded pixel datasets are not supported; load one shard as the train "
            f"file instead (--dataset-dir {folder}/{sharded.shard_name(task.dataset, 0)})"
        )
    shard_set = sharded.find(folder, task.dataset)
    if validation and shard_set.val is None:
        raise DataError(
            f"{folder}/{sharded.val_name(task.dataset)}: the validation file of the sharded "
            "dataset does not exist (sharded loaders read the first shard's val file)"
        )
    keys = (*sharded.REQUIRED_KEYS, *_info_keys(task))
    headers = sharded.read_headers(shard_set, keys)  # every shard's layout before any data
    env = gymnasium.make(task.env_id)
    try:
        expected = _expected_shapes(task, env)
        for h in headers:
            shapes = {k: shape[1:] for k, (shape, _) in h.arrays.items()}
            _check_shapes(task, str(h.path), shapes, expected)
        # The rows each shard keeps: OGBench drops each episode's last observation row (its
        # next observation), the rows with terminals == 1.
        sizes = {}
        for h in headers:
            with NpzReader(h.path) as raw:
                terminals = np.asarray(raw["terminals"])
            sizes[h.path] = int(np.count_nonzero((1.0 - terminals).astype(bool)))
        obs, act = headers[0].arrays["observations"][0][1:], headers[0].arrays["actions"][0][1:]
        f32 = np.dtype(np.float32)
        layout = {
            "observations": (obs, f32),
            "actions": (act, f32),
            "rewards": ((), f32),
            "masks": ((), f32),
            "terminals": ((), f32),
            "next_observations": (obs, f32),
        }

        def convert(p: Path) -> dict[str, np.ndarray]:
            _check_file(task, p)  # each shard holds whole episodes: its last row is terminal
            return _convert(task, env, p)

        train = sharded.fill(sizes, layout, convert)
        val = None
        if validation:
            _check_shapes(task, str(shard_set.val), _check_file(task, shard_set.val), expected)
            val = _convert(task, env, shard_set.val)
    finally:
        env.close()
    return Loaded(train, val, "ogbench", task.name.strip())


def _frame_form(data: dict[str, np.ndarray], file: str) -> dict[str, np.ndarray]:
    """Compact-layout pixel data (rewards and masks relabelled for every frame) as transitions in
    the frame form: the rows that start a transition, as the regular layout keeps them, with
    each transition's next frame indexed instead of copied (gfp.data.frame_layout)."""
    valid = data.pop("valids") > 0
    try:
        split = from_compact(data.pop("observations"), valid)
    except ValueError as e:
        V.fail(file, "terminals", str(e))
    for key in ("actions", "rewards", "masks"):
        split[key] = data[key][valid]
    return split
