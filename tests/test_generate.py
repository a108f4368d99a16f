"""Offline OGBench dataset generation: official layout, OGBench's own loader with the network
blocked, reproducibility across worker counts, kill/resume and Ctrl-C safety, and an existing
dataset never replaced without --overwrite (through the real CLI)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import gfp.datagen.collectors as col
import gfp.datagen.generate as gen
from gfp.cli import main as gfp_main
from gfp.datagen.generate import (
    GENERATABLE,
    OFFICIAL_SIZES,
    default_dataset_dir,
    generate,
)
from gfp.errors import ConfigError, DataError
from gfp.tasks import dataset_file_stem

REPO = Path(__file__).resolve().parents[1]

# glfw's 'DISPLAY missing' and gymnasium's Box precision notes come from importing OGBench's envs.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _no_network(*args, **kwargs):
    raise AssertionError(f"network access attempted: {args!r}")


@pytest.fixture
def offline(monkeypatch):
    """Make any download by OGBench's loader fail loudly."""
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _check_layout(path: Path, episodes: int, length: int, buttons: int | None) -> dict:
    """The exact official key set and dtypes, and terminals only on each episode's last row."""
    d = _load(path)
    keys = {"observations", "actions", "terminals", "qpos", "qvel"}
    if buttons is not None:
        keys.add("button_states")
    assert set(d) == keys
    n = episodes * length
    assert d["observations"].dtype == np.float32 and d["observations"].shape[0] == n
    assert d["actions"].dtype == np.float32 and d["actions"].shape[0] == n
    assert d["qpos"].dtype == np.float32 and d["qvel"].dtype == np.float32
    assert d["terminals"].dtype == np.bool_ and d["terminals"].shape == (n,)
    assert np.flatnonzero(d["terminals"]).tolist() == [
        (e + 1) * length - 1 for e in range(episodes)
    ]
    assert np.abs(d["actions"]).max() <= 1.0
    assert d["actions"].std(axis=0).min() > 0.05  # actually acting, per dimension
    if buttons is not None:
        assert d["button_states"].dtype == np.int64
        assert d["button_states"].shape == (n, buttons)
        assert set(np.unique(d["button_states"])) <= {0, 1}
    return d


# --------------------------------------------------------------------------------------------------
# Names.


def test_dataset_file_stem_follows_ogbench_naming():
    assert dataset_file_stem("cube-double-play-singletask-task3-v0") == "cube-double-play-v0"
    assert dataset_file_stem("pointmaze-medium-navigate-singletask-v0") == (
        "pointmaze-medium-navigate-v0"
    )
    assert dataset_file_stem("puzzle-4x4-noisy-singletask-task5-v0") == "puzzle-4x4-noisy-v0"
    assert dataset_file_stem("cube-single-play-oraclerep-v0") == "cube-single-play-v0"
    assert dataset_file_stem("scene-play-v0") == "scene-play-v0"


def test_generatable_names_and_default_dir():
    for name in (
        "cube-single-play-v0",
        "cube-triple-noisy-v0",
        "scene-noisy-v0",
        "puzzle-4x4-play-v0",
        "pointmaze-giant-stitch-v0",
    ):
        assert name in GENERATABLE
    assert not any(n.startswith(("antmaze", "humanoidmaze", "antsoccer")) for n in GENERATABLE)
    assert OFFICIAL_SIZES["cube-single-play-v0"] == (1000, 1001)
    assert OFFICIAL_SIZES["pointmaze-medium-stitch-v0"] == (5000, 201)
    assert default_dataset_dir() == Path.home() / ".ogbench" / "data"


@pytest.mark.parametrize(
    "name",
    ["antmaze-large-navigate-v0", "humanoidmaze-medium-stitch-v0", "antsoccer-arena-navigate-v0"],
)
def test_expert_datasets_raise_clear_error(name, tmp_path):
    with pytest.raises(DataError) as err:
        generate(name, 2, tmp_path, workers=1, progress=False)
    msg = str(err.value)
    assert "expert checkpoints" in msg and "cannot be generated offline" in msg and name in msg
    assert list(tmp_path.iterdir()) == []


def test_unknown_name_lists_choices(tmp_path):
    with pytest.raises(DataError) as err:
        generate("cube-sextuple-play-v0", 2, tmp_path, workers=1, progress=False)
    msg = str(err.value)
    assert "cube-sextuple-play-v0" in msg
    assert "cube-single-play-v0" in msg and "pointmaze-medium-navigate-v0" in msg


@pytest.mark.parametrize(
    "kwargs",
    [dict(episodes=0), dict(episode_length=1), dict(workers=0), dict(seed=-1)],
)
def test_bad_settings_raise_config_error(kwargs, tmp_path):
    args = dict(name="cube-single-play-v0", episodes=2, out_dir=tmp_path, progress=False) | kwargs
    with pytest.raises(ConfigError):
        generate(**args)


# --------------------------------------------------------------------------------------------------
# Layout and OGBench's own loader, offline.


def test_loader_really_is_offline_in_these_tests(offline, tmp_path):
    """Guard for the tests below: a missing file makes OGBench try the network, which fails."""
    import ogbench

    with pytest.raises(AssertionError, match="network access attempted"):
        ogbench.make_env_and_datasets("cube-single-noisy-singletask-v0", dataset_dir=str(tmp_path))


def test_cube_layout_and_ogbench_load(offline, tmp_path, capsys):
    import ogbench

    train_path, val_path = generate(
        "cube-single-noisy-v0", 3, tmp_path, workers=1, episode_length=151, progress=True
    )
    assert (train_path, val_path) == (
        tmp_path / "cube-single-noisy-v0.npz",
        tmp_path / "cube-single-noisy-v0-val.npz",
    )
    bar = capsys.readouterr().err
    assert "episodes 4/4" in bar and "tr/s" in bar  # 3 train + max(1, 3 // 10) val episodes
    # Shards are cleaned up after the merge; only the two datasets remain.
    assert sorted(p.name for p in tmp_path.iterdir()) == [val_path.name, train_path.name]

    d = _check_layout(train_path, 3, 151, buttons=None)
    _check_layout(val_path, 1, 151, buttons=None)
    assert d["observations"].shape[1] == 28 and d["qpos"].shape[1] == 21
    # qpos is the state *of that row's observation* (prev_qpos), not the state after the step:
    # arm joints are obs[:6], and the cube position is obs[19:22] = (xyz - centre) * 10.
    np.testing.assert_array_equal(d["observations"][:, :6], d["qpos"][:, :6])
    cube_xyz = (d["qpos"][:, 14:17] - np.array([0.425, 0.0, 0.0])) * 10.0
    np.testing.assert_allclose(d["observations"][:, 19:22], cube_xyz, atol=1e-4)

    env, train, val = ogbench.make_env_and_datasets(
        "cube-single-noisy-singletask-task1-v0", dataset_dir=str(tmp_path)
    )
    assert train["observations"].shape == (3 * 150, 28)  # the loader drops each episode's last row
    assert val["observations"].shape == (150, 28)
    np.testing.assert_array_equal(train["next_observations"][:149], d["observations"][1:150])
    assert set(np.unique(train["rewards"])) <= {-1.0, 0.0}
    assert train["terminals"].sum() == 3


def test_scene_and_puzzle_layout_and_rewards(offline, tmp_path):
    import ogbench

    train_path, _ = generate("scene-play-v0", 2, tmp_path, workers=1, episode_length=101)
    d = _check_layout(train_path, 2, 101, buttons=2)
    assert d["qpos"].shape[1] == 25 and d["qvel"].shape[1] == 24
    _, train, _ = ogbench.make_env_and_datasets("scene-play-singletask-task2-v0", str(tmp_path))
    assert set(np.unique(train["rewards"])) <= {float(-k) for k in range(6)}

    train_path, _ = generate("puzzle-3x3-noisy-v0", 2, tmp_path, workers=1, episode_length=101)
    _check_layout(train_path, 2, 101, buttons=9)
    _, train, _ = ogbench.make_env_and_datasets("puzzle-3x3-noisy-singletask-v0", str(tmp_path))
    rewards = set(np.unique(train["rewards"]))
    assert rewards <= {float(-k) for k in range(10)} and len(rewards) >= 1
    assert train["observations"].shape == (200, 55)


def test_pointmaze_layout_oracle_actions_and_load(offline, tmp_path):
    import ogbench

    # A task name is accepted and mapped to its dataset file.
    train_path, _ = generate(
        "pointmaze-medium-navigate-singletask-v0", 3, tmp_path, workers=1, episode_length=201
    )
    assert train_path.name == "pointmaze-medium-navigate-v0.npz"
    d = _check_layout(train_path, 3, 201, buttons=None)
    np.testing.assert_array_equal(d["observations"], d["qpos"])  # point state = xy
    # The point moves by 0.2 * action (away from walls), so actions must be aligned with rows.
    keep = ~d["terminals"][:-1]
    moved = (d["observations"][1:] - d["observations"][:-1])[keep]
    free = np.abs(moved - 0.2 * d["actions"][:-1][keep]).max(axis=1) < 1e-4
    assert free.mean() > 0.9

    _, train, val = ogbench.make_env_and_datasets(
        "pointmaze-medium-navigate-singletask-task1-v0", dataset_dir=str(tmp_path)
    )
    assert train["observations"].shape == (600, 2) and val["observations"].shape == (200, 2)
    assert set(np.unique(train["rewards"])) <= {-1.0, 0.0}

    stitch, _ = generate("pointmaze-large-stitch-v0", 2, tmp_path, workers=1, episode_length=101)
    s = _check_layout(stitch, 2, 101, buttons=None)
    assert np.abs(s["actions"]).max() <= 1.0


# --------------------------------------------------------------------------------------------------
# Reproducibility.


def test_episode_does_not_depend_on_what_the_worker_ran_before():
    """Workers reuse one env for many episodes; an episode must be the same in a fresh env."""
    spec = gen._spec("puzzle-3x3-noisy-v0")
    warm = col.make_collector(spec)
    for i in range(2):
        gen._collect(warm, 7, "train", i, 60)
    after_others = gen._collect(warm, 7, "train", 2, 60)
    fresh = gen._collect(col.make_collector(spec), 7, "train", 2, 60)
    for k in fresh:
        np.testing.assert_array_equal(after_others[k], fresh[k])
    # ... while different episodes, splits and seeds do differ.
    other = gen._collect(warm, 7, "val", 2, 60)
    assert not np.array_equal(other["observations"], fresh["observations"])


def test_scene_health_rule():
    """OGBench re-collects scene episodes where the cube leaves the view outside the drawer."""
    qpos = np.zeros((3, 25), np.float32)
    qpos[:, 14:17] = [0.4, 0.0, 0.02]
    assert col.scene_healthy(qpos)
    qpos[1, 15] = 0.29  # too far right
    assert not col.scene_healthy(qpos)
    qpos[1, 15:17] = [-0.31, 0.07]  # far left but inside the drawer
    assert col.scene_healthy(qpos)
    qpos[1, 16] = 0.02  # far left on the table
    assert not col.scene_healthy(qpos)


def test_unhealthy_scene_episode_is_recollected_deterministically(monkeypatch):
    verdicts = []

    def first_attempt_unhealthy(qpos):
        verdicts.append(len(verdicts) % 2 == 1)
        return verdicts[-1]

    collector = col.make_collector(gen._spec("scene-noisy-v0"))
    monkeypatch.setattr(col, "scene_healthy", first_attempt_unhealthy)
    a = gen._collect(collector, 0, "train", 0, 30)
    b = gen._collect(collector, 0, "train", 0, 30)
    assert verdicts == [False, True, False, True]
    np.testing.assert_array_equal(a["observations"], b["observations"])
    monkeypatch.setattr(col, "scene_healthy", lambda qpos: True)
    first_try = gen._collect(collector, 0, "train", 0, 30)
    assert not np.array_equal(first_try["observations"], a["observations"])


def test_same_output_for_one_and_two_workers(tmp_path):
    state = np.random.get_state()
    a = generate("cube-single-noisy-v0", 3, tmp_path / "w1", workers=1, seed=11, episode_length=81)
    # In-process generation reseeds np.random per episode; the caller's stream is restored.
    assert np.random.get_state()[1].tolist() == state[1].tolist()
    b = generate("cube-single-noisy-v0", 3, tmp_path / "w2", workers=2, seed=11, episode_length=81)
    for pa, pb in zip(a, b, strict=True):
        assert pa.read_bytes() == pb.read_bytes()
    c = generate("cube-single-noisy-v0", 3, tmp_path / "s12", workers=1, seed=12, episode_length=81)
    assert not np.array_equal(_load(a[0])["observations"], _load(c[0])["observations"])


# --------------------------------------------------------------------------------------------------
# Safety: atomic files, kill and resume, locking.


def test_killed_run_leaves_no_dataset_and_rerun_reuses_shards(tmp_path, monkeypatch):
    name, episodes, length, seed = "cube-single-noisy-v0", 6, 101, 5
    out = tmp_path / "killed"
    script = textwrap.dedent(
        f"""
        from gfp.datagen.generate import generate
        if __name__ == "__main__":
            generate({name!r}, {episodes}, {str(out)!r}, workers=1, seed={seed},
                     episode_length={length}, progress=False)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    shard_root = out / f".{name}.shards"
    deadline = time.monotonic() + 120
    try:
        while len(list(shard_root.glob("*/*.npz"))) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no shards appeared"
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # mid-episode, possibly mid-write
        proc.wait()

    done = sorted(shard_root.glob("*/*.npz"))
    assert 2 <= len(done) < episodes + 1, "the run was not interrupted"
    assert not (out / f"{name}.npz").exists() and not (out / f"{name}-val.npz").exists()
    assert not list(out.glob("*.npz"))
    for shard in done:  # every finished shard is complete, whatever the kill interrupted
        assert _load(shard)["terminals"].shape == (length,)

    calls = []
    real_collect = gen._collect
    monkeypatch.setattr(
        gen, "_collect", lambda *a, **k: calls.append(a[2:4]) or real_collect(*a, **k)
    )
    resumed = generate(name, episodes, out, workers=1, seed=seed, episode_length=length)
    finished = {(p.stem.split("-")[0], int(p.stem.split("-")[1])) for p in done}
    assert len(calls) == episodes + 1 - len(done)  # only the missing episodes were generated
    assert not finished & set(calls)
    assert not shard_root.exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]

    monkeypatch.setattr(gen, "_collect", real_collect)
    fresh = generate(
        name, episodes, tmp_path / "fresh", workers=1, seed=seed, episode_length=length
    )
    for pr, pf in zip(resumed, fresh, strict=True):
        assert pr.read_bytes() == pf.read_bytes()


def test_concurrent_generation_of_same_dataset_is_refused(tmp_path):
    root = tmp_path / ".cube-single-play-v0.shards"
    root.mkdir()
    with open(root / "lock", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(DataError, match="another generation"):
            generate("cube-single-play-v0", 1, tmp_path, workers=1, episode_length=5)
    assert not (tmp_path / "cube-single-play-v0.npz").exists()


# --------------------------------------------------------------------------------------------------
# Through the CLI: existing data is never replaced unless asked, huge requests fail fast, Ctrl-C.


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Run `gfp ARGS` in this process: (exit code, stdout, stderr)."""
    try:
        gfp_main(args)
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _visible_lines(err: str | bytes) -> list[str]:
    """What a terminal shows of stderr: a progress bar redraws its line with '\\r'."""
    text = err.decode() if isinstance(err, bytes) else err
    lines = (line.split("\r")[-1].strip() for line in text.split("\n"))
    return [line for line in lines if line]


def test_existing_dataset_is_kept_unless_overwrite(tmp_path, capsys):
    name = "cube-single-noisy-v0"
    base = ["data", "generate", name, "--out", str(tmp_path), "--workers", "1"]
    base += ["--episode-length", "30"]
    assert _cli([*base, "--episodes", "2"], capsys)[0] == 0
    train, val = tmp_path / f"{name}.npz", tmp_path / f"{name}-val.npz"
    before = train.read_bytes(), val.read_bytes()

    code, out, err = _cli([*base, "--episodes", "1"], capsys)
    assert code == 2 and out == ""
    [line] = _visible_lines(err)
    assert line.startswith(f"gfp: error: {train} already exists (2 episodes, 60 rows)")
    assert "--overwrite" in line
    assert (train.read_bytes(), val.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([train.name, val.name])

    code, out, _ = _cli([*base, "--episodes", "1", "--overwrite"], capsys)
    assert code == 0 and out.split() == [str(train), str(val)]
    assert _load(train)["terminals"].tolist() == [False] * 29 + [True]

    # A val file without its train file is what a kill between the final writes (val first)
    # leaves: not a dataset, so it is replaced without --overwrite.
    train.unlink()
    val.write_bytes(b"leftover")
    assert _cli([*base, "--episodes", "1"], capsys)[0] == 0
    assert _load(val)["terminals"].shape == (30,)


def test_huge_episode_count_fails_fast_in_bounded_memory(tmp_path, capsys):
    """1e9 episodes can never be merged in memory: refused in a moment, before any job list."""
    import tracemalloc

    out_dir = tmp_path / "d"
    tracemalloc.start()
    start = time.perf_counter()
    code, out, err = _cli(
        ["data", "generate", "cube-single-noisy-v0", "--episodes", "1000000000", "--out",
         str(out_dir)], capsys,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert code == 2 and out == ""
    assert seconds < 3 and peak < 50 * 2**20, (seconds, peak)
    [line] = _visible_lines(err)
    assert line.startswith("gfp: error: --episodes 1000000000: cube-single-noisy-v0 would hold")
    assert "1,101,100,000,000 rows" in line and "the official size is 1000 episodes" in line
    assert not out_dir.exists()


def test_too_large_for_available_memory_stops_after_the_first_episode(tmp_path, monkeypatch):
    """The exact check: the first episode gives the row size; the shard is kept for a rerun."""
    calls = []
    real_collect = gen._collect
    monkeypatch.setattr(gen, "_meminfo_bytes", lambda field: 100_000)
    monkeypatch.setattr(gen, "_collect", lambda *a: calls.append(a[2:4]) or real_collect(*a))
    with pytest.raises(ConfigError, match=r"--episodes 50: .* GiB in memory .* than the 0.0 GiB"):
        generate("cube-single-noisy-v0", 50, tmp_path, workers=1, episode_length=30)
    assert calls == [("train", 0)]
    assert len(list(tmp_path.glob(".cube-single-noisy-v0.shards/*/train-000000.npz"))) == 1
    assert not list(tmp_path.glob("*.npz"))


# Holds the generation's episodes back (in the command's process and its spawned workers: Python
# imports a `sitecustomize` module from PYTHONPATH at start-up) so that a signal test does not
# race the generation: with `GATE_LET` = 1 the first training episode finishes and every other
# one waits in its worker, so the run cannot end before the test's Ctrl-C, however slow the
# machine; with 0 none finishes.
GATE = """
import os, time
import gfp.datagen.generate as g
_collect = g._collect
def _held(collector, seed, split, index, length):
    out = _collect(collector, seed, split, index, length)
    if not (int(os.environ["GATE_LET"]) and split == "train" and index == 0):
        while True:  # until the run is interrupted (the workers are terminated)
            time.sleep(0.05)
    return out
g._collect = _held
"""


def _interrupt_generation(
    out: Path,
    args: list[str],
    started: Callable[[], bool],
    group: list[int] | None = None,
    let_finish: int = 1,
) -> tuple[int, bytes, bytes]:
    """Start `gfp ARGS` with 2 workers, episodes held back by `GATE` (`let_finish` of them
    finish), send Ctrl-C (SIGINT to the process group, as a terminal does) once `started()`;
    (exit code, stdout, stderr). `group` receives the process id."""
    gate_dir = out.parent / "gate"
    gate_dir.mkdir(exist_ok=True)
    (gate_dir / "sitecustomize.py").write_text(GATE)
    path = os.pathsep.join(filter(None, [str(gate_dir), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "GATE_LET": str(let_finish)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gfp.cli", *args, "--workers", "2"], cwd=REPO, env=env,
        start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    if group is not None:
        group.append(proc.pid)
    # The limits only bound a broken test (the order of events does not depend on them): on a
    # loaded 2-core machine starting three processes that import ogbench can take minutes.
    deadline = time.monotonic() + 600
    try:
        while not started():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "generation did not start"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    gone = time.monotonic() + 120  # the workers go with the parent (a bound, not a schedule)
    while True:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < gone, "worker processes outlived the interrupted run"
        time.sleep(0.05)
    return proc.returncode, stdout, stderr


@pytest.mark.slow  # three processes start ogbench: about 15 s, more on a loaded machine
def test_ctrl_c_exits_130_with_one_line_and_keeps_finished_episodes(tmp_path, capsys, monkeypatch):
    name, out = "cube-single-noisy-v0", tmp_path / "data"
    args = ["data", "generate", name, "--episodes", "10", "--episode-length", "40"]
    args += ["--out", str(out)]
    shard_glob = f".{name}.shards/*/*.npz"

    def started() -> bool:
        # Plant what a worker stopped mid-write leaves (a terminated process removes nothing):
        # the interrupted run must clean it up, as it does the temp files of its own workers.
        if shards := list(out.glob(shard_glob)):
            (shards[0].parent / ".train-000009.npz.planted.tmp").write_bytes(b"half")
        return bool(shards)

    code, stdout, stderr = _interrupt_generation(out, args, started)
    assert code == 130 and stdout == b""
    [line] = _visible_lines(stderr)
    assert line.startswith(f"gfp: {name}: interrupted; ") and "rerun the same command" in line
    done = sorted(out.glob(shard_glob))
    assert len(done) == 1, "the run was not interrupted"  # the one episode the gate lets finish
    assert f"{len(done)} of 11 episodes are finished" in line
    assert not list(out.glob("*.npz")) and not list(out.glob(f".{name}.shards/*/*.tmp"))

    calls = []
    real_collect = gen._collect
    monkeypatch.setattr(gen, "_collect", lambda *a: calls.append(a[2:4]) or real_collect(*a))
    code, stdout, _ = _cli([*args, "--workers", "1"], capsys)
    assert code == 0 and stdout.split() == [str(out / f"{name}.npz"), str(out / f"{name}-val.npz")]
    finished = {(p.stem.split("-")[0], int(p.stem.split("-")[1])) for p in done}
    assert len(calls) == 11 - len(done) and not finished & set(calls)
    _check_layout(out / f"{name}.npz", 10, 40, buttons=None)


def test_default_job_generates_a_missing_dataset_and_reuses_a_present_one(tmp_path, monkeypatch):
    """`gfp train` with no arguments (gfp.run.ensure_default_dataset) is not refused by the
    existing-dataset rule: it generates only when the file is missing."""
    from gfp import run
    from gfp.job import DEFAULT_TASK

    stem = dataset_file_stem(DEFAULT_TASK)
    monkeypatch.setitem(OFFICIAL_SIZES, stem, (1000, 30))  # short episodes, for speed
    monkeypatch.setattr(os, "cpu_count", lambda: 1)  # in this process: no workers to start
    run.ensure_default_dataset(DEFAULT_TASK, tmp_path, episodes=1)
    train = tmp_path / f"{stem}.npz"
    made = train.read_bytes()
    assert _load(train)["terminals"].shape == (30,)
    run.ensure_default_dataset(DEFAULT_TASK, tmp_path, episodes=3)  # present: reused as is
    assert train.read_bytes() == made


def test_ctrl_c_while_workers_start_is_one_line_too(tmp_path):
    """Workers are spawned with SIGINT blocked: a Ctrl-C during their start-up neither kills one
    with a traceback nor leaves the pool to print one."""
    name, out = "cube-single-noisy-v0", tmp_path / "data"
    args = ["data", "generate", name, "--episodes", "10", "--episode-length", "40"]
    shard_glob = f".{name}.shards/*/*.npz"
    group: list[int] = []

    def workers_starting() -> bool:
        """Two spawned workers exist, and no episode is finished yet."""
        spawned = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                cmdline = (stat.parent / "cmdline").read_bytes()
                spawned += int(fields[2]) == group[0] and b"spawn_main" in cmdline
        if spawned < 2:
            return False
        time.sleep(0.05)  # into their start-up
        return True

    code, stdout, stderr = _interrupt_generation(
        out, [*args, "--out", str(out)], workers_starting, group, let_finish=0
    )
    assert not list(out.glob(shard_glob))  # interrupted before any episode was finished
    assert code == 130 and stdout == b""
    [line] = _visible_lines(stderr)
    assert line.startswith(f"gfp: {name}: interrupted; ")
    assert not list(out.glob("*.npz"))
