"""Sharded OGBench datasets (gfp.data.sharded): a folder of shards in the layout of OGBench's
100M datasets loads row for row as the same data in one file, `gfp data generate --shard-size`
writes that layout, `gfp data info` describes it from the headers alone, and a broken shard is
a one-line error naming it."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from gfp.cli import main
from gfp.data import sharded
from gfp.data.load import load_dataset
from tests.test_data_errors import cli_error

TASK = "cube-single-noisy-singletask-task1-v0"
STEM = "cube-single-noisy-v0"
SMALL = ["--steps", "2", "--actor-hidden-dims", "8", "--value-hidden-dims", "8"]
SMALL += ["--batch-size", "2", "--no-eval"]


def episodes_of(arrays: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The raw rows of an OGBench file cut into its episodes (terminals == 1 ends one)."""
    ends = np.flatnonzero(arrays["terminals"]) + 1
    starts = np.concatenate([[0], ends[:-1]])
    return [{k: v[a:b] for k, v in arrays.items()} for a, b in zip(starts, ends, strict=True)]


def write_shards(folder: Path, train: Path, val: Path, per_shard: list[int], **kw) -> Path:
    """`train`'s episodes written as OGBench shards of `per_shard[i]` episodes, and `val` as the
    first shard's val file."""
    folder.mkdir(parents=True)
    with np.load(train) as f:
        episodes = episodes_of({k: f[k] for k in f.files})
    assert sum(per_shard) == len(episodes)
    save = kw.get("save", np.savez_compressed)
    start = 0
    for i, n in enumerate(per_shard):
        part = episodes[start : start + n]
        save(folder / sharded.shard_name(STEM, i), **{k: np.concatenate([e[k] for e in part])
                                                       for k in part[0]})  # fmt: skip
        start += n
    with np.load(val) as f:
        save(folder / sharded.val_name(STEM), **{k: f[k] for k in f.files})
    return folder


def assert_same(a, b) -> None:
    for split in ("train", "val"):
        x, y = getattr(a, split), getattr(b, split)
        assert set(x) == set(y)
        for key in x:
            assert x[key].dtype == y[key].dtype, (split, key)
            np.testing.assert_array_equal(x[key], y[key], err_msg=f"{split} {key}")


@pytest.fixture(scope="module")
def single(tiny_ogbench_dir):
    return load_dataset(TASK, tiny_ogbench_dir)


@pytest.mark.parametrize("save", [np.savez_compressed, np.savez])  # deflated and stored members
def test_shards_load_row_for_row_as_the_single_file(tiny_ogbench_dir, single, tmp_path, save):
    folder = write_shards(
        tmp_path / sharded.folder_name(STEM, 303),
        tiny_ogbench_dir / f"{STEM}.npz",
        tiny_ogbench_dir / f"{STEM}-val.npz",
        [2, 1],
        save=save,
    )
    # the relabelled rewards and masks are part of the comparison, and not all alike
    assert set(np.unique(single.train["rewards"])) == {-1.0, 0.0}
    assert set(np.unique(single.train["masks"])) == {0.0, 1.0}
    assert_same(load_dataset(TASK, folder), single)  # the folder itself (OGBench's usage)
    assert_same(load_dataset(TASK, tmp_path), single)  # the directory that holds it


def test_a_shard_holding_part_of_an_episode_is_refused(tiny_ogbench_dir, tmp_path, capsys):
    folder = tmp_path / "cut"
    folder.mkdir()
    with np.load(tiny_ogbench_dir / f"{STEM}.npz") as f:
        raw = {k: f[k] for k in f.files}
    for i, rows in enumerate((slice(0, 150), slice(150, None))):  # 150: inside episode 2
        np.savez(folder / sharded.shard_name(STEM, i), **{k: v[rows] for k, v in raw.items()})
    with np.load(tiny_ogbench_dir / f"{STEM}-val.npz") as f:
        np.savez(folder / sharded.val_name(STEM), **{k: f[k] for k in f.files})
    err = cli_error(capsys, "data", "info", TASK, "--dataset-dir", str(folder))
    assert f"{folder / sharded.shard_name(STEM, 0)}: key 'terminals'" in err


def generate_args(out: Path, *extra: str) -> list[str]:
    # the tiny_ogbench_dir fixture's dataset: seed 0, 3 episodes of 101 rows
    return ["data", "generate", STEM, "--episodes", "3", "--episode-length", "101",
            "--workers", "1", "--seed", "0", "--out", str(out), *extra]  # fmt: skip


def test_generate_shard_size_equals_the_single_file_generation(
    tiny_ogbench_dir, single, tmp_path, capsys
):
    main(generate_args(tmp_path, "--shard-size", "250"))  # 2 whole episodes per shard
    folder = tmp_path / sharded.folder_name(STEM, 303)
    assert capsys.readouterr().out.splitlines()[0] == str(folder)
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"{STEM}-000-val.npz", f"{STEM}-000.npz", f"{STEM}-001.npz"]
    assert [h.rows for h in sharded.read_headers(sharded.find(folder))] == [202, 101]
    assert list(tmp_path.iterdir()) == [folder]  # the episode store is gone
    # the raw rows, concatenated, are the single file's; and so are the loaded transitions
    with np.load(tiny_ogbench_dir / f"{STEM}.npz") as f:
        raw = {k: f[k] for k in f.files}
    parts = [np.load(folder / sharded.shard_name(STEM, i)) for i in range(2)]
    for key, value in raw.items():
        np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), value)
    assert_same(load_dataset(TASK, folder), single)
    # an existing sharded dataset is kept unless --overwrite
    err = cli_error(capsys, *generate_args(tmp_path, "--shard-size", "250"))
    assert str(folder) in err and "--overwrite" in err
    err = cli_error(capsys, *generate_args(tmp_path / "x", "--shard-size", "100"))
    assert "--shard-size" in err and "101 rows" in err


def test_generate_shards_resume_after_an_interruption(single, tmp_path, monkeypatch, capsys):
    from gfp.datagen import shards

    merge, calls = shards.merge, []

    def stop_at_the_second_shard(*args, **kw):
        calls.append(kw.get("start"))
        if len(calls) == 3:  # val, shard 000, then shard 001: Ctrl-C
            raise KeyboardInterrupt
        return merge(*args, **kw)

    monkeypatch.setattr(shards, "merge", stop_at_the_second_shard)
    with pytest.raises(SystemExit) as e:
        main(generate_args(tmp_path, "--shard-size", "202"))
    assert e.value.code == 130
    folder = tmp_path / sharded.folder_name(STEM, 303)
    assert not folder.exists()  # never seen half written
    (written,) = tmp_path.glob(f".{STEM}.shards/*/sharded-2/{STEM}-000.npz")
    inode = written.stat().st_ino
    monkeypatch.setattr(shards, "merge", merge)
    calls.clear()
    main(generate_args(tmp_path, "--shard-size", "202"))
    assert (folder / sharded.shard_name(STEM, 0)).stat().st_ino == inode  # kept, not rewritten
    assert_same(load_dataset(TASK, folder), single)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def drop_qpos(path: Path) -> None:
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files if k != "qpos"}
    np.savez(path, **arrays)


def short_actions(path: Path) -> None:
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["actions"] = arrays["actions"][:-3]
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    "damage, message",
    [
        (truncate, "cannot be read as a .npz file"),
        (drop_qpos, "key 'qpos' is missing"),
        (short_actions, "key 'actions' has 98 rows but 'observations' has 101"),
    ],
)
def test_a_broken_shard_is_one_line_naming_it(tiny_ogbench_dir, tmp_path, capsys, damage, message):
    folder = write_shards(
        tmp_path / "data" / sharded.folder_name(STEM, 303),
        tiny_ogbench_dir / f"{STEM}.npz",
        tiny_ogbench_dir / f"{STEM}-val.npz",
        [2, 1],
    )
    shard = folder / sharded.shard_name(STEM, 1)
    damage(shard)
    err = cli_error(capsys, "data", "info", str(folder))
    assert f"{shard}: " in err and message in err
    err = cli_error(capsys, "data", "info", TASK, "--dataset-dir", str(folder))
    assert f"{shard}: " in err and message in err
    run = tmp_path / "run"
    err = cli_error(capsys, "train", "--task", TASK, "--dataset-dir", str(folder),
                    "--out", str(run), *SMALL)  # fmt: skip
    assert f"{shard}: " in err and message in err
    assert not run.exists()


def test_a_missing_shard_is_named(tiny_ogbench_dir, tmp_path, capsys):
    folder = write_shards(
        tmp_path / "gap",
        tiny_ogbench_dir / f"{STEM}.npz",
        tiny_ogbench_dir / f"{STEM}-val.npz",
        [1, 1, 1],
    )
    (folder / sharded.shard_name(STEM, 1)).unlink()
    err = cli_error(capsys, "data", "info", TASK, "--dataset-dir", str(folder))
    assert f"{folder / sharded.shard_name(STEM, 1)}: shard 1 of 3 is missing" in err


def test_info_reads_only_the_headers(tiny_ogbench_dir, tmp_path, monkeypatch, capsys):
    folder = write_shards(
        tmp_path / sharded.folder_name(STEM, 303),
        tiny_ogbench_dir / f"{STEM}.npz",
        tiny_ogbench_dir / f"{STEM}-val.npz",
        [2, 1],
    )

    def no_arrays(*args, **kw):
        raise AssertionError("gfp data info read array data")

    # every way numpy reads an array out of a file: np.load, NpzFile[key] (read_array)
    monkeypatch.setattr(np, "load", no_arrays)
    monkeypatch.setattr(np.lib.format, "read_array", no_arrays)
    read = []
    open_member = zipfile.ZipFile.open

    class Counted:  # a zip member that counts the bytes read out of it
        def __init__(self, f):
            self.f, self.bytes = f, 0
            read.append(self)

        def read(self, *args):
            data = self.f.read(*args)
            self.bytes += len(data)
            return data

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def counting_open(self, name, *args, **kw):
        return Counted(open_member(self, name, *args, **kw))

    monkeypatch.setattr(zipfile.ZipFile, "open", counting_open)
    main(["data", "info", str(folder)])
    out = capsys.readouterr().out
    assert "shards: 2    train rows: 303 " in out
    assert "val rows: 101 " in out
    assert "observation dim: 28    action dim: 5" in out
    assert f"  {STEM}-000.npz  202 rows" in out and f"  {STEM}-001.npz  101 rows" in out
    # headers only: a few hundred bytes of each member (shard 000's observations alone are
    # 202 x 28 float32, 22 KB)
    assert len(read) >= 3 * 5 and all(f.bytes <= 1024 for f in read)
