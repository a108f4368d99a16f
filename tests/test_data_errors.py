"""Bad data and bad task arguments through the real CLI: one line `gfp: error: ...` naming the file,
the field and the problem, exit status 2, and nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gfp.cli import main

TASK = "cube-single-noisy-singletask-task1-v0"
SMALL = [
    "--steps",
    "2",
    "--actor-hidden-dims",
    "8",
    "--value-hidden-dims",
    "8",
    "--batch-size",
    "2",
]


def cli_error(capsys, *argv: str) -> str:
    """Run `gfp ARGV`, expect exit status 2, return the one error line."""
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("gfp: error: ")
    return err


def d4rl_file(path: Path, n: int, obs_dim: int = 3, act_dim: int = 2, **extra) -> Path:
    """A D4RL-style .npz of one n-step episode (with next_observations, so every row is kept)."""
    obs = np.arange(n * obs_dim, dtype=np.float32).reshape(n, obs_dim)
    np.savez(
        path,
        observations=obs,
        next_observations=obs + 1,
        actions=np.zeros((n, act_dim), np.float32),
        rewards=np.zeros(n, np.float32),
        terminals=np.zeros(n, bool),
        timeouts=np.eye(1, n, n - 1, dtype=bool)[0],  # the last step ends the episode
        **extra,
    )
    return path


def test_a_single_transition(tmp_path, capsys):
    path = d4rl_file(tmp_path / "one.npz", 1)
    err = cli_error(capsys, "data", "info", str(path))
    assert f"{path} (train): key 'observations' has only 1 transition" in err
    # the same through training, before anything is compiled or written
    err = cli_error(capsys, "train", "--task", str(path), "--out", str(tmp_path / "run"), *SMALL)
    assert "key 'observations' has only 1 transition" in err
    assert not (tmp_path / "run").exists()
    d4rl_file(tmp_path / "two.npz", 2)  # two transitions are enough
    main(["data", "info", str(tmp_path / "two.npz")])
    assert "train transitions: 2 " in capsys.readouterr().out


@pytest.mark.parametrize(
    "obs_dim, act_dim, key, shape", [(0, 2, "observations", (5, 0)), (3, 0, "actions", (5, 0))]
)
def test_zero_width(tmp_path, capsys, obs_dim, act_dim, key, shape):
    path = d4rl_file(tmp_path / "thin.npz", 5, obs_dim, act_dim)
    err = cli_error(capsys, "data", "info", str(path))
    assert f"{path}: key '{key}' has zero width (shape {shape})" in err


def test_dataset_dir_pointing_at_a_file(tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("not data")
    err = cli_error(capsys, "data", "info", TASK, "--dataset-dir", str(notes))
    assert f"dataset_dir (--dataset-dir) {notes} is a file, not a directory" in err
    assert f"pass the folder that holds the data, e.g. {tmp_path}" in err
    assert "generate" not in err  # the old message suggested `generate --out FILE`
    data = d4rl_file(tmp_path / "data.npz", 3)
    err = cli_error(capsys, "train", "--task", "pen-human-v1", "--dataset-dir", str(data),
                    "--out", str(tmp_path / "run"), *SMALL)  # fmt: skip
    assert f"to train on this file, pass it as the task (--task {data})" in err
    assert not (tmp_path / "run").exists()


def test_task_pointing_at_a_data_directory(tiny_ogbench_dir, capsys):
    err = cli_error(capsys, "data", "info", str(tiny_ogbench_dir))
    assert f"task {tiny_ogbench_dir}: is a directory, not a dataset" in err
    assert f"use --task {TASK} --dataset-dir {tiny_ogbench_dir}" in err
    assert "minari download" not in err
    # ... and what it suggests works
    main(["data", "info", TASK, "--dataset-dir", str(tiny_ogbench_dir)])
    assert "source: ogbench" in capsys.readouterr().out


def test_ogbench_typo_names_the_closest_tasks(tmp_path, capsys):
    err = cli_error(capsys, "train", "--task", "cube-single-noisi-singletask-task1-v0",
                    "--out", str(tmp_path / "run"), *SMALL)  # fmt: skip
    assert "did you mean cube-single-noisy-singletask-task1-v0" in err
    assert "'noisy' is not one of" not in err  # the old, wrong complaint
    assert not (tmp_path / "run").exists()


def test_typo_through_the_installed_command(tmp_path):
    """The real `gfp` entry point, in its own process: exit status 2 and the one line."""
    gfp = Path(sys.executable).with_name("gfp")
    out = subprocess.run(
        [str(gfp), "data", "info", "scene-pley-singletask-task2-v0"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "gfp: error: 'scene-pley-singletask-task2-v0' is not an OGBench singletask task: "
        "'scene-pley' is not an OGBench environment and dataset type; did you mean "
        "scene-play-singletask-task2-v0 or visual-scene-play-singletask-task2-v0 or "
        "scene-noisy-singletask-task2-v0?"
    ]


def _shuffled_copy(src_dir: Path, dst_dir: Path, stem: str, key: str = "qpos") -> Path:
    """src_dir's dataset `stem` with the rows of `key` shuffled in the train file."""
    import shutil

    dst_dir.mkdir()
    shutil.copy(src_dir / f"{stem}-val.npz", dst_dir / f"{stem}-val.npz")
    with np.load(src_dir / f"{stem}.npz") as f:
        arrays = dict(f)
    arrays[key] = arrays[key][np.random.default_rng(0).permutation(len(arrays[key]))]
    np.savez(dst_dir / f"{stem}.npz", **arrays)
    return dst_dir / f"{stem}.npz"


def test_ogbench_qpos_that_is_not_the_observations_is_refused(tiny_ogbench_dir, tmp_path, capsys):
    """Singletask rewards are relabelled from qpos: shuffled qpos rows trained on wrong rewards
    silently. The generated dataset loads; the shuffled copy is one line naming file and row."""
    from gfp.data.load import load_dataset

    assert load_dataset(TASK, tiny_ogbench_dir).size > 0
    bad = _shuffled_copy(tiny_ogbench_dir, tmp_path / "data", "cube-single-noisy-v0")
    before = bad.read_bytes()
    err = cli_error(capsys, "data", "info", TASK, "--dataset-dir", str(bad.parent))
    assert f"{bad}: row " in err and "qpos[0:6] (arm joint positions)" in err, err
    assert "do not belong to the observations" in err
    err = cli_error(capsys, "train", "--task", TASK, "--dataset-dir", str(bad.parent),
                    "--out", str(tmp_path / "run"), *SMALL)  # fmt: skip
    assert f"{bad}: row " in err
    assert not (tmp_path / "run").exists() and bad.read_bytes() == before


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, family, refused",
    [
        ("cube-double-play-v0", "cube", ["qpos"]),
        ("scene-play-v0", "scene", ["qpos"]),
        ("puzzle-3x3-play-v0", "puzzle", ["qpos", "button_states"]),
        ("pointmaze-medium-navigate-v0", "pointmaze", ["qpos"]),
    ],
)
def test_ogbench_info_layouts_hold_on_generated_data(tmp_path, name, family, refused):
    """The observation/qpos/button_states correspondences the check uses are those of OGBench's
    own environments: data generated with its oracles passes every one of them (each compared
    column holds something that changes), and a shuffled qpos or button_states is refused."""
    from gfp.data.validate import _ogbench_links, check_ogbench_info
    from gfp.datagen.generate import generate
    from gfp.errors import DataError

    generate(name, 2, tmp_path, workers=1, seed=0, episode_length=101, progress=False)
    with np.load(tmp_path / f"{name}.npz") as f:
        data = dict(f)
    check_ogbench_info(data, name, family)
    buttons = data["button_states"].shape[1] if "button_states" in data else 0
    links = _ogbench_links(family, data["observations"].shape[1], data["qpos"].shape[1], buttons)
    assert links, "the family's layout must be recognised"
    for link in links:
        if link.source == "qpos":  # buttons may stay put in two short episodes
            assert data["qpos"][:, link.cols].std(axis=0).min() > 0, link.what
    for key in refused:
        shuffled = dict(data)
        shuffled[key] = data[key][np.random.default_rng(1).permutation(len(data[key]))]
        with pytest.raises(DataError, match=rf"{name}: row \d+: observations\[.*{key}\["):
            check_ogbench_info(shuffled, name, family)


def test_generate_out_naming_a_file_is_one_line_and_the_file_is_untouched(tmp_path, capsys):
    """--out PATH where PATH (or a folder above it) is an existing file: a traceback from mkdir
    (FileExistsError / NotADirectoryError) before; now one line, exit 2, the file as it was."""
    path = tmp_path / "notes.txt"
    path.write_bytes(b"my notes\n")
    for out in (path, path / "sub"):
        err = cli_error(capsys, "data", "generate", "cube-single-noisy-v0", "--episodes", "1",
                        "--episode-length", "5", "--workers", "1", "--out", str(out))  # fmt: skip
        assert f"--out {out}" in err and "a file, not a directory" in err, err
        assert path.read_bytes() == b"my notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing else written
