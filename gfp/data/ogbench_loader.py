"""Loader for OGBench singletask tasks (source `ogbench`).

The official `.npz` pair `STEM.npz` / `STEM-val.npz` in the dataset directory (default
`~/.ogbench/data`, OGBench's own) is checked, then converted by `ogbench.utils.load_dataset`, and
its rewards/masks come from `ogbench.relabel_utils.relabel_dataset`: exactly what
`ogbench.make_env_and_datasets` returns. OGBench is never allowed to download: a missing file is a
DataError that says how to make it (`gfp data generate ...`) or where to download it from.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
    from ogbench.relabel_utils import relabel_dataset

    if dataset_dir is not None and dataset_dir.suffix == ".npz":
        train_path = dataset_dir
        val_path = dataset_dir.with_name(dataset_dir.stem + "-val.npz")
        out_dir = dataset_dir.parent
    else:
        out_dir = dataset_dir if dataset_dir is not None else default_dataset_dir()
        train_path = out_dir / f"{task.dataset}.npz"
        val_path = out_dir / f"{task.dataset}-val.npz"
    paths = [train_path, val_path] if validation else [train_path]
    # Check before OGBench sees the path: its loader would try to download a missing file.
    for p in paths:
        if not p.is_file():
            raise DataError(_missing_message(task, p, out_dir))

    visual = task.obs_kind == "pixels"
    family = task.env_key.removeprefix("visual-").split("-")[0]
    info_keys = ("qpos", "button_states") if family in ("scene", "puzzle") else ("qpos",)
    shapes = {}
    for p in paths:
        # Read each key once (an NpzFile decompresses again on every access); OGBench's own
        # loader reads the file a second time below.
        with NpzReader(p) as raw:
            arrays = {k: raw[k] for k in _OGBENCH_KEYS if k in raw}
        V.validate_ogbench_arrays(arrays, str(p), info_keys=info_keys, visual=visual)
        if not visual:  # the relabelled rewards come from qpos: it must be the observations'
            V.check_ogbench_info(arrays, str(p), family)
        shapes[p] = {k: v.shape[1:] for k, v in arrays.items()}
        del arrays

    # The task's env relabels the rewards; it is dropped right after (evaluation builds its own).
    env = gymnasium.make(task.env_id)
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
                    V.fail(str(p), key, f"rows have shape {have} but {task.env_id} needs {want}")
        splits = []
        for p in paths:
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
                splits.append(_frame_form(data, str(p)))
            else:
                splits.append({k: data[k] for k in V.TRANSITION_KEYS})
    finally:
        env.close()
    # Evaluation builds the task by its full name (see gfp.evaluate.make_env).
    return Loaded(splits[0], splits[1] if validation else None, "ogbench", task.name.strip())


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
