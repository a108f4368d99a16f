"""Round trips through gfp.data.load.load_dataset for every source (OGBench, HDF5, npz, Minari).

Each test writes a tiny file with known content, loads it and compares exact values. The network
is blocked (urllib.request.urlopen raises) so a loader that tried to download would fail loudly.
"""

from __future__ import annotations

import hashlib
import urllib.request
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from gfp.data.info import dataset_info, episode_returns
from gfp.data.load import ACTION_CLIP, Dataset, load_dataset
from gfp.errors import ConfigError, DataError
from gfp.tasks import minari_env

TASK = "cube-single-play-singletask-task2-v0"
STEM = "cube-single-play-v0"
EP_LEN = 101  # rows per episode -> 100 transitions
GOAL_ROWS = range(10, 15)  # rows of episode 0 whose cube we move onto task 2's target


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def _rollout_ogbench(path: Path, episodes: int, seed: int, goal_xyz: np.ndarray | None) -> None:
    """A tiny file in OGBench's official layout from random actions in the real env."""
    import gymnasium
    import ogbench  # noqa: F401

    env = gymnasium.make(
        "cube-single-v0", terminate_at_goal=False, mode="data_collection", max_episode_steps=EP_LEN
    )
    rng = np.random.default_rng(seed)
    cols = {k: [] for k in ("observations", "actions", "terminals", "qpos", "qvel")}
    for ep in range(episodes):
        ob, _ = env.reset(seed=seed + ep)
        for t in range(EP_LEN):
            action = rng.uniform(-1, 1, size=5)
            next_ob, _, _, _, info = env.step(action)
            cols["observations"].append(ob)
            cols["actions"].append(action)
            cols["terminals"].append(t == EP_LEN - 1)
            cols["qpos"].append(info["prev_qpos"])
            cols["qvel"].append(info["prev_qvel"])
            ob = next_ob
    env.close()
    arrays = {
        "observations": np.array(cols["observations"], dtype=np.float32),
        "actions": np.array(cols["actions"], dtype=np.float32),
        "terminals": np.array(cols["terminals"], dtype=bool),
        "qpos": np.array(cols["qpos"], dtype=np.float32),
        "qvel": np.array(cols["qvel"], dtype=np.float32),
    }
    arrays["actions"][3, 0] = 1.0  # on the boundary: must come back clipped to 1 - 1e-5
    if goal_xyz is not None:
        for row in GOAL_ROWS:  # cube exactly at the goal -> reward 0, mask 0 on these rows
            arrays["qpos"][row, 14:17] = goal_xyz
            # and the observation's own copy of the cube position with it (OGBench's layout:
            # (xyz - (0.425, 0, 0)) * 10), which the loader checks against qpos
            arrays["observations"][row, 19:22] = (goal_xyz - np.array([0.425, 0.0, 0.0])) * 10
    np.savez_compressed(path, **arrays)


@pytest.fixture(scope="module")
def ogbench_dir(tmp_path_factory) -> Path:
    import ogbench

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # glfw's "DISPLAY missing", Box precision notes
        env = ogbench.make_env_and_datasets(TASK, env_only=True)
        env.reset()
        goal = env.unwrapped._data.mocap_pos[0].copy()  # task 2's cube target
        env.close()
        d = tmp_path_factory.mktemp("ogbench")
        _rollout_ogbench(d / f"{STEM}.npz", episodes=2, seed=0, goal_xyz=goal)
        _rollout_ogbench(d / f"{STEM}-val.npz", episodes=1, seed=100, goal_xyz=None)
    return d


def _snapshot(paths: list[Path]) -> dict[Path, tuple[str, int]]:
    return {
        p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in paths
        if p.is_file()
    }


def _all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------ OGBench


def test_ogbench_matches_ogbench_loader_exactly(ogbench_dir):
    import ogbench

    ds = load_dataset(TASK, ogbench_dir)
    _, ref_train, ref_val = ogbench.make_env_and_datasets(TASK, dataset_dir=str(ogbench_dir))

    assert (ds.source, ds.env_name, ds.name) == ("ogbench", TASK, TASK)
    assert (ds.size, ds.obs_dim, ds.act_dim) == (2 * (EP_LEN - 1), 28, 5)
    assert len(ds.val["observations"]) == EP_LEN - 1
    for split, ref in ((ds.train, ref_train), (ds.val, ref_val)):
        assert set(split) == {
            "observations",
            "actions",
            "rewards",
            "masks",
            "terminals",
            "next_observations",
        }
        for key, value in split.items():
            assert value.dtype == np.float32, key
            expected = ref[key]
            if key == "actions":
                expected = np.clip(expected, -ACTION_CLIP, ACTION_CLIP)
            np.testing.assert_array_equal(value, expected, err_msg=key)

    # relabelling by hand: reward 0 / mask 0 exactly on the rows whose cube sits on the goal
    expected_rewards = -np.ones(ds.size, dtype=np.float32)
    expected_rewards[list(GOAL_ROWS)] = 0.0
    np.testing.assert_array_equal(ds.train["rewards"], expected_rewards)
    np.testing.assert_array_equal(ds.train["masks"], -expected_rewards)
    # terminals mark each episode's last transition; clipping hit the boundary action
    assert np.flatnonzero(ds.train["terminals"]).tolist() == [EP_LEN - 2, 2 * (EP_LEN - 1) - 1]
    assert ds.train["actions"][3, 0] == np.float32(ACTION_CLIP)
    raw = np.load(ogbench_dir / f"{STEM}.npz")
    np.testing.assert_array_equal(ds.train["next_observations"][:99], raw["observations"][1:100])
    np.testing.assert_array_equal(ds.train["observations"][100:], raw["observations"][101:201])


def test_ogbench_options(ogbench_dir):
    no_val = load_dataset(TASK, ogbench_dir, validation=False, clip_actions=False)
    assert no_val.val is None
    assert no_val.train["actions"][3, 0] == 1.0  # not clipped
    shifted = load_dataset(TASK, ogbench_dir, reward_shift=2.5)
    assert shifted.reward_shift == 2.5
    np.testing.assert_array_equal(
        shifted.train["rewards"], load_dataset(TASK, ogbench_dir).train["rewards"] + 2.5
    )
    # dataset_dir may name the train file itself (like ogbench's dataset_path=)
    by_file = load_dataset(TASK, ogbench_dir / f"{STEM}.npz")
    np.testing.assert_array_equal(by_file.train["observations"], no_val.train["observations"])
    # another task of the same dataset relabels differently (no row reaches task 1's goal)
    other = load_dataset("cube-single-play-singletask-task1-v0", ogbench_dir)
    assert other.train["rewards"].max() == -1.0


def test_ogbench_load_leaves_files_untouched(ogbench_dir):
    before = _snapshot(_all_files(ogbench_dir))
    load_dataset(TASK, ogbench_dir)
    dataset_info(TASK, ogbench_dir)
    assert _snapshot(_all_files(ogbench_dir)) == before
    assert len(before) == 2


def test_missing_ogbench_file_says_how_to_generate(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset(TASK, tmp_path)
    msg = str(err.value)
    assert f"gfp data generate {TASK} --episodes 1000 --out {tmp_path}" in msg
    assert str(tmp_path / f"{STEM}.npz") in msg
    assert not any(tmp_path.iterdir())  # nothing created

    with pytest.raises(DataError, match="--episodes 3000"):
        load_dataset("cube-triple-noisy-singletask-task1-v0", tmp_path)


def test_missing_val_file(ogbench_dir, tmp_path):
    (tmp_path / f"{STEM}.npz").write_bytes((ogbench_dir / f"{STEM}.npz").read_bytes())
    with pytest.raises(DataError) as err:
        load_dataset(TASK, tmp_path)
    assert str(tmp_path / f"{STEM}-val.npz") in str(err.value)
    assert "gfp data generate" in str(err.value)
    assert load_dataset(TASK, tmp_path, validation=False).size == 2 * (EP_LEN - 1)


@pytest.mark.parametrize(
    "task, stem",
    [
        ("antmaze-large-navigate-singletask-task1-v0", "antmaze-large-navigate-v0"),
        ("humanoidmaze-medium-stitch-singletask-v0", "humanoidmaze-medium-stitch-v0"),
        ("antsoccer-arena-navigate-singletask-task4-v0", "antsoccer-arena-navigate-v0"),
    ],
)
def test_missing_expert_dataset_says_download(tmp_path, task, stem):
    # these need OGBench's expert policies: no generate command, a download hint instead
    with pytest.raises(DataError) as err:
        load_dataset(task, tmp_path)
    msg = str(err.value)
    assert "gfp data generate" not in msg
    assert "expert" in msg
    assert f"https://rail.eecs.berkeley.edu/datasets/ogbench/{stem}.npz" in msg
    assert str(tmp_path) in msg


def test_bad_ogbench_names(tmp_path):
    with pytest.raises(ConfigError, match="singletask"):
        load_dataset("cube-double-play-v0", tmp_path)  # goal-conditioned dataset name
    with pytest.raises(ConfigError, match="not an OGBench singletask task"):
        load_dataset("cube-single-dance-singletask-task1-v0", tmp_path)


def test_ogbench_shape_mismatch_with_env(tmp_path):
    n = 6
    np.savez(
        tmp_path / f"{STEM}.npz",
        observations=np.zeros((n, 7), np.float32),  # cube-single observes 28 numbers
        actions=np.zeros((n, 5), np.float32),
        terminals=np.array([0, 0, 1, 0, 0, 1], bool),
        qpos=np.zeros((n, 21), np.float32),
        qvel=np.zeros((n, 20), np.float32),
    )
    with pytest.raises(DataError, match=r"key 'observations' rows have shape \(7,\)"):
        load_dataset(TASK, tmp_path, validation=False)
    arrays = dict(np.load(tmp_path / f"{STEM}.npz"))
    arrays["observations"] = np.zeros((n, 28), np.float32)
    arrays["qpos"] = np.zeros((n, 9), np.float32)  # cube-single has nq = 21
    np.savez(tmp_path / f"{STEM}.npz", **arrays)
    with pytest.raises(DataError, match=r"key 'qpos' rows have shape \(9,\) but .* \(21,\)"):
        load_dataset(TASK, tmp_path, validation=False)


# ------------------------------------------------------------------------------- HDF5 / npz

# Two episodes: rows 0-2 end with a true terminal, rows 3-6 end with a timeout.
OBS = np.arange(7 * 3, dtype=np.float32).reshape(7, 3)
ACTIONS = np.array([[0.5], [1.0], [-1.0005], [0.0], [0.25], [-0.5], [0.9]], np.float32)
REWARDS = np.array([1, 2, 3, 4, 5, 6, 7], np.float32)
TERMINALS = np.array([0, 0, 1, 0, 0, 0, 0], bool)
TIMEOUTS = np.array([0, 0, 0, 0, 0, 0, 1], bool)


def _write(path: Path, **arrays: np.ndarray) -> Path:
    if path.suffix == ".npz":
        np.savez(path, **arrays)
    else:
        with h5py.File(path, "w") as f:
            for k, v in arrays.items():
                f.create_dataset(k, data=v)
            f.create_dataset("infos/qpos", data=np.zeros((len(OBS), 2)))  # ignored extra group
    return path


def _d4rl_arrays(**overrides: np.ndarray) -> dict[str, np.ndarray]:
    base = dict(
        observations=OBS, actions=ACTIONS, rewards=REWARDS, terminals=TERMINALS, timeouts=TIMEOUTS
    )
    base.update(overrides)
    return base


@pytest.mark.parametrize("suffix, source", [(".hdf5", "hdf5"), (".npz", "npz")])
def test_d4rl_file_without_next_observations(tmp_path, suffix, source):
    path = _write(tmp_path / f"mydata{suffix}", **_d4rl_arrays())
    ds = load_dataset(str(path))
    assert (ds.source, ds.env_name, ds.val, ds.reward_shift) == (source, None, None, 0.0)
    # the timeout row 6 (also the last) has no known next observation: dropped
    keep = [0, 1, 2, 3, 4, 5]
    t = ds.train
    np.testing.assert_array_equal(t["observations"], OBS[keep])
    np.testing.assert_array_equal(t["next_observations"], OBS[1:7])
    np.testing.assert_array_equal(t["rewards"], REWARDS[keep])
    np.testing.assert_array_equal(t["masks"], [1, 1, 0, 1, 1, 1])
    np.testing.assert_array_equal(t["terminals"], [0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(
        t["actions"][:, 0],
        np.array([0.5, ACTION_CLIP, -ACTION_CLIP, 0.0, 0.25, -0.5], dtype=np.float32),
    )
    raw = load_dataset(str(path), clip_actions=False)
    np.testing.assert_array_equal(raw.train["actions"], ACTIONS[keep])
    assert all(v.dtype == np.float32 for v in t.values())


def test_d4rl_file_with_next_observations_keeps_every_row(tmp_path):
    next_obs = OBS + 1000.0  # never equal to the following row: every row ends an episode...
    next_obs[0] = OBS[1]  # ...except row 0, which continues into row 1
    path = _write(tmp_path / "withnext.hdf5", **_d4rl_arrays(next_observations=next_obs))
    t = load_dataset(str(path)).train
    assert len(t["observations"]) == 7
    np.testing.assert_array_equal(t["next_observations"], next_obs)
    np.testing.assert_array_equal(t["terminals"], [0, 1, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(t["masks"], 1 - TERMINALS)


def test_antmaze_reward_shift_and_terminals(tmp_path):
    path = _write(tmp_path / "antmaze-umaze-v2.hdf5", **_d4rl_arrays())
    ds = load_dataset(str(path))
    assert ds.reward_shift == -1.0 and ds.env_name == "antmaze-umaze-v2"
    np.testing.assert_array_equal(ds.train["rewards"], REWARDS[:6] - 1.0)
    # FQL antmaze: a goal 'terminal' sets mask 0 but does not end the trajectory (row 2 continues
    # into row 3 without a jump), so only the last row ends an episode
    np.testing.assert_array_equal(ds.train["masks"], [1, 1, 0, 1, 1, 1])
    np.testing.assert_array_equal(ds.train["terminals"], [0, 0, 0, 0, 0, 1])
    unshifted = load_dataset(str(path), reward_shift=0.0)
    np.testing.assert_array_equal(unshifted.train["rewards"], REWARDS[:6])
    assert unshifted.reward_shift == 0.0


def test_d4rl_task_name_lookup(tmp_path):
    _write(tmp_path / "pen-human-v1.hdf5", **_d4rl_arrays())
    ds = load_dataset("pen-human-v1", tmp_path)
    assert (ds.source, ds.env_name, ds.name, ds.reward_shift) == (
        "hdf5",
        "pen-human-v1",
        "pen-human-v1",
        0.0,
    )
    # D4RL's own cache name for antmaze-umaze-v2
    _write(
        tmp_path / "Ant_maze_u-maze_noisy_multistart_False_multigoal_False_sparse_fixed.hdf5",
        **_d4rl_arrays(),
    )
    ant = load_dataset("antmaze-umaze-v2", tmp_path)
    assert (ant.env_name, ant.reward_shift) == ("antmaze-umaze-v2", -1.0)
    with pytest.raises(DataError, match="relocate-human-v1.hdf5"):
        load_dataset("relocate-human-v1", tmp_path)


def test_sibling_val_file(tmp_path):
    path = _write(tmp_path / "data.npz", **_d4rl_arrays())
    _write(tmp_path / "data-val.npz", **_d4rl_arrays(rewards=REWARDS * 10))
    ds = load_dataset(str(path))
    np.testing.assert_array_equal(ds.val["rewards"], REWARDS[:6] * 10)
    assert load_dataset(str(path), validation=False).val is None


def test_file_errors(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_dataset(str(tmp_path / "nope.hdf5"))
    (tmp_path / "garbage.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="garbage.npz: cannot be read"):
        load_dataset(str(tmp_path / "garbage.npz"))
    og = _write(
        tmp_path / "og.npz", observations=OBS, actions=ACTIONS, terminals=TERMINALS | TIMEOUTS
    )
    with pytest.raises(DataError, match="looks like an OGBench dataset"):
        load_dataset(str(og))
    with pytest.raises(DataError, match="no dataset found for 'nonsense-v3'"):
        load_dataset("nonsense-v3", tmp_path)


# ------------------------------------------------------------------------------------- Minari

MINARI_ID = "gfptest/invpend/random-v0"


@pytest.fixture(scope="module")
def minari_root(tmp_path_factory):
    """A local Minari dataset made with DataCollector, plus what each step returned."""
    import gymnasium as gym
    import minari

    root = tmp_path_factory.mktemp("minari")
    mp = pytest.MonkeyPatch()
    mp.setenv("MINARI_DATASETS_PATH", str(root))
    try:
        env = minari.DataCollector(
            gym.make("InvertedPendulum-v5", max_episode_steps=20),
            record_infos=False,
            data_format="hdf5",
        )
        rng = np.random.default_rng(0)
        rec = {k: [] for k in ("obs", "next", "act", "rew", "term", "last")}
        for ep in range(6):
            ob, _ = env.reset(seed=ep)
            while True:
                action = rng.uniform(-1, 1, size=1).astype(np.float32)
                next_ob, r, term, trunc, _ = env.step(action)
                for k, v in zip(
                    ("obs", "next", "act", "rew", "term", "last"),
                    (ob, next_ob, action, r, term, term or trunc),
                    strict=True,
                ):
                    rec[k].append(v)
                ob = next_ob
                if term or trunc:
                    break
        env.create_dataset(
            dataset_id=MINARI_ID,
            algorithm_name="random",
            author="gfp",
            author_email="gfp@example.com",
            code_permalink="https://example.com",
            eval_env="InvertedPendulum-v5",
        )
    finally:
        mp.undo()
    return root, {k: np.array(v) for k, v in rec.items()}


def test_minari_round_trip(minari_root, monkeypatch):
    root, rec = minari_root
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    ds = load_dataset(MINARI_ID)
    # evaluation recovers the dataset's own evaluation env (gfp.tasks.minari_env)
    assert (ds.source, ds.env_name, ds.val, ds.reward_shift) == (
        "minari",
        minari_env(MINARI_ID, (root / MINARI_ID / "data").resolve()),
        None,
        0.0,
    )
    t = ds.train
    np.testing.assert_array_equal(t["observations"], rec["obs"].astype(np.float32))
    np.testing.assert_array_equal(t["next_observations"], rec["next"].astype(np.float32))
    np.testing.assert_array_equal(t["actions"], rec["act"])
    np.testing.assert_array_equal(t["rewards"], rec["rew"].astype(np.float32))
    np.testing.assert_array_equal(t["masks"], 1.0 - rec["term"])
    np.testing.assert_array_equal(t["terminals"], rec["last"].astype(np.float32))
    assert 0 < rec["term"].sum() < 6  # both terminations and truncations occur
    assert t["terminals"].sum() == 6

    # the same data through dataset_dir (env var unset) and through the dataset's directory
    monkeypatch.delenv("MINARI_DATASETS_PATH")
    by_dir = load_dataset(MINARI_ID, root)
    by_path = load_dataset(str(root / MINARI_ID))
    for other in (by_dir, by_path):
        for key in t:
            np.testing.assert_array_equal(other.train[key], t[key])


def test_minari_leaves_files_untouched_and_missing_id(minari_root, tmp_path):
    root, _ = minari_root
    before = _snapshot(_all_files(root))
    load_dataset(MINARI_ID, root)
    assert _snapshot(_all_files(root)) == before
    with pytest.raises(DataError, match="minari download D4RL/pen/human-v2"):
        load_dataset("D4RL/pen/human-v2", tmp_path)
    assert not any(tmp_path.iterdir())


def test_files_untouched_hdf5_npz(tmp_path):
    paths = [
        _write(tmp_path / "a.hdf5", **_d4rl_arrays()),
        _write(tmp_path / "b.npz", **_d4rl_arrays()),
    ]
    before = _snapshot(paths)
    for p in paths:
        load_dataset(str(p))
    assert _snapshot(paths) == before


# --------------------------------------------------------------------------------------- info


def test_dataset_info_counts(tmp_path):
    path = _write(tmp_path / "pen-human-v1.hdf5", **_d4rl_arrays())
    report = dataset_info(str(path))
    assert "train transitions: 6 " in report
    assert "val transitions: none" in report
    assert "observation dim: 3    action dim: 1" in report
    assert "episodes: 2 (length min 3  mean 3  max 3)" in report
    assert "masks: 1 zero (16.67%" in report
    assert "rewards: min 1  mean 3.5  max 6" in report
    # returns 1+2+3 = 6 and 4+5+6 = 15; pen ref (96.262799, 3076.833...) -> normalized mean 10.5
    assert "episode returns: min 6 " in report and "max 15 " in report
    expected = 100 * (10.5 - 96.262799) / (3076.8331017826877 - 96.262799)
    assert f"D4RL-normalized (x100): {expected:.1f}" in report
    assert "evaluation env: pen-human-v1" in report


def test_dataset_info_ogbench(ogbench_dir):
    report = dataset_info(TASK, ogbench_dir)
    assert "source: ogbench" in report
    assert "train transitions: 200    val transitions: 100" in report
    assert "distinct rewards: -1 (97.5%), 0 (2.5%)" in report
    assert "masks: 5 zero (2.50%" in report
    assert "episodes: 2 (length min 100" in report
    assert "episode returns: min -100 " in report and "max -95 " in report
    assert "D4RL-normalized" not in report  # OGBench is scored by success


def test_episode_returns_splits_on_terminals():
    data = {
        "rewards": np.array([1, 2, 3, 4, 5], np.float32),
        "terminals": np.array([0, 1, 0, 0, 1], np.float32),
    }
    np.testing.assert_array_equal(episode_returns(data), [3.0, 12.0])


def test_dataset_properties():
    train = {
        "observations": np.zeros((4, 3, 2), np.float32),
        "actions": np.zeros((4, 5), np.float32),
    }
    ds = Dataset(train=train, val=None, name="x", source="npz", env_name=None)
    assert (ds.obs_dim, ds.act_dim, ds.size, ds.reward_shift) == (6, 5, 4, 0.0)


def test_default_directories(tmp_path, monkeypatch):
    # OGBench's default is ~/.ogbench/data; D4RL's is $D4RL_DATASET_DIR or ~/.d4rl/datasets
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("D4RL_DATASET_DIR", raising=False)
    with pytest.raises(DataError) as err:
        load_dataset(TASK)
    assert f"--out {tmp_path / '.ogbench' / 'data'}" in str(err.value)
    with pytest.raises(DataError, match=str(tmp_path / ".d4rl" / "datasets" / "pen-human-v1")):
        load_dataset("pen-human-v1")
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path))
    _write(tmp_path / "pen-human-v1.hdf5", **_d4rl_arrays())
    assert load_dataset("pen-human-v1").size == 6
    assert not (tmp_path / ".ogbench").exists()  # the failed load created nothing


# ------------------------------------------------------------------------- registry-led errors


def test_name_typos_name_the_closest_task(tmp_path):
    # a plain name close to a paper task: the D4RL lookup fails and says which was meant
    with pytest.raises(DataError, match=r"found for 'pen-humn-v1'.*Did you mean pen-human-v1\?"):
        load_dataset("pen-humn-v1", tmp_path)
    with pytest.raises(DataError, match=r"Did you mean D4RL/door/human-v2\?"):
        load_dataset("D4RL/door/humen-v2", tmp_path)
    with pytest.raises(ConfigError, match="did you mean cube-single-play-singletask-task2-v0"):
        load_dataset("cube-single-pley-singletask-task2-v0", tmp_path)
    assert not any(tmp_path.iterdir())


def test_dataset_dir_must_be_a_directory(ogbench_dir, tmp_path):
    data = _write(tmp_path / "pen-human-v1.hdf5", **_d4rl_arrays())
    with pytest.raises(DataError, match=r"is a file, not a directory; to train on this file"):
        load_dataset("pen-human-v1", data)
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    with pytest.raises(DataError, match=rf"{notes} is a file, not a directory; pass the folder"):
        load_dataset(TASK, notes)
    # the one file that is allowed: OGBench's train .npz itself (val next to it)
    assert load_dataset(TASK, ogbench_dir / f"{STEM}.npz").val is not None
