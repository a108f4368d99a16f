"""Malformed datasets must fail with one DataError naming the file, the key and the first bad row.

Property-based: hypothesis builds a valid file (D4RL-style HDF5 / npz, or OGBench's official
.npz layout), breaks it in exactly one way at a random place, and the test checks that
load_dataset reports that key and index.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gfp.data.load import load_dataset
from gfp.data.validate import (
    discontinuities,
    validate_episode_arrays,
    validate_ogbench_arrays,
    validate_transitions,
)
from gfp.errors import DataError

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TASK = "cube-single-play-singletask-task1-v0"
STEM = "cube-single-play-v0"
OGBENCH_DIMS = {"observations": 28, "actions": 5, "qpos": 21, "qvel": 20}


def assert_names(err: DataError, file: str | Path, key: str, index: int | None) -> None:
    msg = str(err)
    assert str(file) in msg, msg
    assert f"key '{key}'" in msg, msg
    # exactly one key is named: the message is about one problem
    assert len(re.findall(r"key '", msg)) == 1, msg
    if index is not None:
        found = re.search(r"at index (\d+)$", msg)
        assert found is not None and int(found.group(1)) == index, msg


# ------------------------------------------------------------------------------------ defects

DEFECTS = ("drop", "dtype", "rank", "width", "length", "nonfinite", "action_range", "flag")


@st.composite
def broken(draw, arrays: dict[str, np.ndarray], required: tuple[str, ...], flags: tuple[str, ...]):
    """Apply one random defect to ``arrays`` in place; return (key, first bad index or None)."""
    n = len(arrays["observations"])
    defect = draw(st.sampled_from(DEFECTS))
    keys = sorted(arrays)
    if defect == "drop":
        key = draw(st.sampled_from(required))
        del arrays[key]
        return key, None
    if defect == "dtype":
        key = draw(st.sampled_from(keys))
        floats_only = key not in flags and key != "rewards"
        new = draw(st.sampled_from(["complex64", "int32"] if floats_only else ["complex64"]))
        arrays[key] = arrays[key].astype(new)
        return key, None
    if defect == "rank":
        key = draw(st.sampled_from(keys))
        arrays[key] = arrays[key][..., None]
        return key, None
    if defect == "width":  # rows of zero values, e.g. shape (n, 0)
        key = draw(st.sampled_from([k for k in keys if arrays[k].ndim == 2]))
        arrays[key] = arrays[key][:, :0]
        return key, None
    if defect == "length":
        key = draw(st.sampled_from(keys))
        k = draw(st.integers(1, n - 2))
        arrays[key] = arrays[key][:-k]
        return key, n - k
    row = draw(st.integers(0, n - 1))
    if defect == "nonfinite":
        key = draw(st.sampled_from([k for k in keys if arrays[k].dtype.kind == "f"]))
        value = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    elif defect == "action_range":
        key = "actions"
        value = draw(st.sampled_from([-1.0, 1.0])) * draw(st.floats(1.0011, 50.0))
    else:  # flag
        key = draw(st.sampled_from(flags))
        arrays[key] = arrays[key].astype(np.float32)
        value = draw(st.sampled_from([2.0, 0.5, -1.0]))
    arr = arrays[key]
    if arr.ndim == 1:
        arr[row] = value
    else:
        arr[row, draw(st.integers(0, arr.shape[1] - 1))] = value
    return key, row


# --------------------------------------------------------------------------- D4RL HDF5 / npz


def d4rl_arrays(rng: np.random.Generator, n: int, od: int, ad: int, with_next: bool):
    timeouts = rng.random(n) < 0.1
    timeouts[-1] = True
    timeouts[0] = False  # at least one row keeps a known next observation
    arrays = {
        "observations": rng.normal(size=(n, od)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(n, ad)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "terminals": rng.random(n) < 0.1,
        "timeouts": timeouts,
    }
    if with_next:
        arrays["next_observations"] = rng.normal(size=(n, od)).astype(np.float32)
    return arrays


def write(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    if path.suffix == ".npz":
        np.savez(path, **arrays)
    else:
        with h5py.File(path, "w") as f:
            for k, v in arrays.items():
                f.create_dataset(k, data=v)
    return path


d4rl_shapes = st.tuples(
    st.integers(5, 40),  # rows
    st.integers(1, 4),  # observation dim
    st.integers(1, 3),  # action dim
    st.booleans(),  # with next_observations
    st.integers(0, 2**32 - 1),  # content seed
    st.sampled_from([".hdf5", ".npz"]),
)


@SETTINGS
@given(shape=d4rl_shapes, data=st.data())
def test_malformed_d4rl_file_names_key_and_index(shape, data):
    n, od, ad, with_next, seed, suffix = shape
    arrays = d4rl_arrays(np.random.default_rng(seed), n, od, ad, with_next)
    required = ("observations", "actions", "rewards", "terminals", "timeouts")
    key, index = data.draw(broken(arrays, required, ("terminals", "timeouts")))
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp) / f"broken{suffix}", arrays)
        with pytest.raises(DataError) as err:
            load_dataset(str(path))
    assert_names(err.value, path, key, index)


@settings(max_examples=10, deadline=None)
@given(shape=d4rl_shapes)
def test_valid_d4rl_files_load(shape):
    """The generator above makes valid files: only the injected defect can cause the error."""
    n, od, ad, with_next, seed, suffix = shape
    arrays = d4rl_arrays(np.random.default_rng(seed), n, od, ad, with_next)
    with tempfile.TemporaryDirectory() as tmp:
        ds = load_dataset(str(write(Path(tmp) / f"ok{suffix}", arrays)))
    assert ds.obs_dim == od and ds.act_dim == ad
    expected = n if with_next else int(np.sum(~arrays["timeouts"][:-1]))
    assert ds.size == expected


# ------------------------------------------------------------------------------ OGBench .npz


def ogbench_arrays(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    terminals = np.zeros(n, dtype=bool)
    terminals[rng.integers(1, n, size=2)] = True
    terminals[-1] = True
    arrays = {k: rng.normal(size=(n, d)).astype(np.float32) for k, d in OGBENCH_DIMS.items()}
    arrays["actions"] = rng.uniform(-1, 1, size=(n, 5)).astype(np.float32)
    arrays["terminals"] = terminals
    # the observation's own copies of qpos values, as OGBench's cube observation holds them (the
    # loader checks that the qpos rows belong to the observations): arm joints, cube position
    obs, qpos = arrays["observations"], arrays["qpos"]
    obs[:, 0:6] = qpos[:, 0:6]
    obs[:, 19:22] = (qpos[:, 14:17] - np.array([0.425, 0.0, 0.0], np.float32)) * 10
    return arrays


@SETTINGS
@given(
    n=st.integers(6, 30),
    seed=st.integers(0, 2**32 - 1),
    in_val=st.booleans(),
    last_not_terminal=st.booleans(),
    data=st.data(),
)
def test_malformed_ogbench_file_names_key_and_index(n, seed, in_val, last_not_terminal, data):
    rng = np.random.default_rng(seed)
    train, val = ogbench_arrays(rng, n), ogbench_arrays(rng, n)
    target = val if in_val else train
    if last_not_terminal:
        target["terminals"][-1] = False
        key, index = "terminals", n - 1
    else:
        required = ("observations", "actions", "terminals", "qpos")
        key, index = data.draw(broken(target, required, ("terminals",)))
    with tempfile.TemporaryDirectory() as tmp:
        np.savez_compressed(Path(tmp) / f"{STEM}.npz", **train)
        np.savez_compressed(Path(tmp) / f"{STEM}-val.npz", **val)
        with pytest.raises(DataError) as err:
            load_dataset(TASK, tmp)
        bad_file = Path(tmp) / (f"{STEM}-val.npz" if in_val else f"{STEM}.npz")
    assert_names(err.value, bad_file, key, index)


def test_ogbench_scene_needs_button_states():
    rng = np.random.default_rng(0)
    arrays = ogbench_arrays(rng, 8)
    with pytest.raises(DataError, match="key 'button_states' is missing"):
        validate_ogbench_arrays(arrays, "f.npz", info_keys=("qpos", "button_states"))
    arrays["button_states"] = np.zeros((8, 2), np.float32)  # must be integers
    with pytest.raises(DataError, match="key 'button_states' has dtype float32"):
        validate_ogbench_arrays(arrays, "f.npz", info_keys=("qpos", "button_states"))
    arrays["button_states"] = np.zeros((8, 2), np.int64)
    validate_ogbench_arrays(arrays, "f.npz", info_keys=("qpos", "button_states"))


# ------------------------------------------------------------------- final transition dicts


def transitions(rng: np.random.Generator, n: int, ends: list[int]) -> dict[str, np.ndarray]:
    """Valid transitions whose episodes end at the given rows (n - 1 always ends one)."""
    terminals = np.zeros(n, np.float32)
    terminals[ends] = 1.0
    terminals[-1] = 1.0
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    next_obs = np.empty_like(obs)
    next_obs[:-1] = obs[1:]
    jump = terminals[:-1] == 1  # after an episode end the next row is a fresh start
    next_obs[:-1][jump] = rng.normal(size=(int(jump.sum()), 3))
    next_obs[-1] = rng.normal(size=3)
    return {
        "observations": obs,
        "actions": rng.uniform(-1, 1, size=(n, 2)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "masks": (rng.random(n) < 0.9).astype(np.float32),
        "terminals": terminals,
        "next_observations": next_obs,
    }


@SETTINGS
@given(n=st.integers(4, 40), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_next_observation_jump_inside_episode(n, seed, data):
    rng = np.random.default_rng(seed)
    ends = data.draw(st.lists(st.integers(0, n - 1), max_size=3))
    d = transitions(rng, n, ends)
    validate_transitions(d, "ok")  # the base is consistent
    inside = [t for t in range(n - 1) if d["terminals"][t] == 0]
    if not inside:
        return
    row = data.draw(st.sampled_from(inside))
    d["next_observations"][row, data.draw(st.integers(0, 2))] += 0.5
    with pytest.raises(DataError) as err:
        validate_transitions(d, "mem://x")
    assert_names(err.value, "mem://x", "next_observations", row)


@SETTINGS
@given(n=st.integers(4, 40), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_transition_defects(n, seed, data):
    rng = np.random.default_rng(seed)
    d = transitions(rng, n, [])
    defect = data.draw(st.sampled_from(["float64", "mask", "last", "nan", "missing"]))
    if defect == "float64":
        key = data.draw(st.sampled_from(sorted(d)))
        d[key] = d[key].astype(np.float64)
        index = None
    elif defect == "mask":
        key, index = "masks", data.draw(st.integers(0, n - 1))
        d[key][index] = 0.5
    elif defect == "last":
        key, index = "terminals", n - 1
        d[key][-1] = 0.0
    elif defect == "nan":
        key, index = data.draw(st.sampled_from(sorted(d))), data.draw(st.integers(0, n - 1))
        d[key][index] = np.nan
    else:
        key, index = data.draw(st.sampled_from(sorted(d))), None
        del d[key]
    with pytest.raises(DataError) as err:
        validate_transitions(d, "train.npz")
    assert_names(err.value, "train.npz", key, index)


@pytest.mark.parametrize("n", [0, 1])
def test_too_few_transitions(n):
    d = transitions(np.random.default_rng(0), 2, [])
    d = {k: v[:n] for k, v in d.items()}
    with pytest.raises(DataError) as err:
        validate_transitions(d, "train.npz")
    assert_names(err.value, "train.npz", "observations", None)
    assert ("is empty" if n == 0 else "has only 1 transition") in str(err.value)
    validate_transitions(transitions(np.random.default_rng(0), 2, []), "two.npz")  # enough


def test_discontinuities_of_tiny_arrays():
    one = np.zeros((1, 3), np.float32)
    assert discontinuities(one, one).shape == (0,)
    thin = np.zeros((4, 0), np.float32)  # zero width: no difference anywhere
    assert discontinuities(thin, thin).tolist() == [False] * 3


def test_episode_arrays_checks():
    n = 5
    ok = {
        "observations": np.zeros((n, 2), np.float32),
        "next_observations": np.zeros((n, 2), np.float32),
        "actions": np.zeros((n, 1), np.float32),
        "rewards": np.zeros(n, np.float32),
        "terminations": np.zeros(n, bool),
        "truncations": np.zeros(n, bool),
    }
    validate_episode_arrays(ok, "m")
    bad = dict(ok, actions=np.full((n, 1), 3.0, np.float32))  # e.g. an unnormalised [-3, 3] space
    with pytest.raises(DataError) as err:
        validate_episode_arrays(bad, "Minari dataset x")
    assert_names(err.value, "Minari dataset x", "actions", 0)


def test_small_action_overshoot_is_tolerated_then_clipped(tmp_path):
    rng = np.random.default_rng(0)
    arrays = d4rl_arrays(rng, 10, 2, 1, with_next=True)
    arrays["actions"][4, 0] = 1.0009  # within the 1e-3 tolerance
    ds = load_dataset(str(write(tmp_path / "x.npz", arrays)))
    assert ds.train["actions"].max() == np.float32(1 - 1e-5)
