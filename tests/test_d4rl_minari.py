"""D4RL and Minari tasks end to end (issue 19, items 6 and 7).

D4RL: the reference code builds the evaluation environments from the `d4rl` package's old-gym
environments through shimmy's `GymV21Environment-v0` (envs/d4rl_utils.py). The real d4rl does not
import here (its mujoco-py needs the MuJoCo 2.1 binaries), so the wrapper path is tested on a tiny
old-gym environment registered under a D4RL name by a stand-in `d4rl` package; without d4rl,
`gfp train` ends in one line saying what to install, and `--no-eval` trains anyway.

Minari: evaluation recovers the dataset's own evaluation environment with Minari's
`recover_environment(eval_env=True)` (kwargs and episode limit included), in the evaluation
worker processes too; datasets are made here with Minari's DataCollector on the real
environments, under the paper's names.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gfp.errors import ConfigError
from gfp.evaluate import close_env_pools, evaluate, make_env
from gfp.tasks import parse_minari_env

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--preset", "cpu", "--log-every", "50", "--batch-size", "32"]
TINY += ["--actor-hidden-dims", "16", "16", "--value-hidden-dims", "16", "16"]
HOPPER_REF = (-20.272305, 3234.3)  # D4RL's, and the authors' Minari table's
PEN_REF = (137.92955108500217, 8820.50845967583)  # the authors' Minari table (not D4RL's)


def gfp_cli(*argv: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    """`gfp ...` in a fresh interpreter, as a user runs it: (returncode, stdout, stderr)."""
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "DISPLAY")}
    proc = subprocess.run(
        [sys.executable, "-m", "gfp.cli", *argv],
        env={**base, "PYTHONPATH": os.pathsep.join([str(ROOT), base.get("PYTHONPATH", "")])}
        | (env or {}),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc.returncode, proc.stdout, proc.stderr


def read_evals(run: Path) -> list[dict[str, str]]:
    with open(run / "eval.csv", newline="") as f:
        return list(csv.DictReader(f))


# tensorboardX's note when gfp/rundir.py logs the NaN success of an environment that reports none
# (MuJoCo): not this file's to fix (reported to the owner of gfp/rundir.py), so not asserted here.
def stderr_lines(err: str) -> list[str]:
    """stderr without tqdm's progress bar (carriage-return redraws on one line)."""
    lines = [line.split("\r")[-1] for line in err.splitlines()]
    return [x for x in lines if x.strip() and "step/s" not in x]


# ---------------------------------------------------------------------------------------- D4RL

# A stand-in for the d4rl package: registers an old-gym (v21 interface: reset() -> obs, step() ->
# 4-tuple) environment under a D4RL task's name, as `import d4rl` does for the real ones; Adroit
# names only from d4rl.hand_manipulation_suite, as in d4rl.
_OLD_ENV = '''
import gym
import numpy as np
from gym import spaces


class Old(gym.Env):
    """obs (3,), action (2,); reward 1 per step; done after 5 steps (or the time limit)."""

    def __init__(self, episode=5):
        self.observation_space = spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.episode, self.t, self.start = episode, 0, 0.0

    def seed(self, seed=None):
        self.start = float(seed or 0) % 7.0
        return [seed]

    def reset(self):
        self.t = 0
        return np.full(3, self.start, np.float32)

    def step(self, action):
        self.t += 1
        ob = np.full(3, self.start + self.t, np.float32)
        return ob, 1.0, self.t >= self.episode, {}
'''
_D4RL_INIT = (
    _OLD_ENV
    + """
gym.envs.registration.register(id="hopper-medium-v2", entry_point=Old, max_episode_steps=1000)
"""
)
_HAND = """
import gym
from d4rl import Old

gym.envs.registration.register(
    id="pen-human-v1", entry_point=Old, kwargs={"episode": 8}, max_episode_steps=1000
)
"""


@pytest.fixture
def fake_d4rl(tmp_path, monkeypatch):
    """A `d4rl` stand-in on sys.path and PYTHONPATH (for the evaluation workers)."""
    pytest.importorskip("gym", reason="old gym (shimmy's GymV21 wrapper wraps it) not installed")
    pytest.importorskip("shimmy", reason="shimmy not installed")
    pkg = tmp_path / "site" / "d4rl"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(_D4RL_INIT))
    (pkg / "hand_manipulation_suite.py").write_text(textwrap.dedent(_HAND))
    monkeypatch.syspath_prepend(str(pkg.parent))
    path = os.pathsep.join([str(pkg.parent), str(ROOT), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", path)
    yield pkg.parent
    close_env_pools()
    for name in [m for m in sys.modules if m == "d4rl" or m.startswith("d4rl.")]:
        del sys.modules[name]


def d4rl_file(directory: Path, name: str, obs_dim: int = 3, act_dim: int = 2) -> Path:
    """A D4RL-layout HDF5 file (observations, actions, rewards, terminals, timeouts): 4
    episodes of 25 steps."""
    import h5py

    rng = np.random.default_rng(0)
    n = 100
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.hdf5"
    timeouts = np.zeros(n, bool)
    timeouts[24::25] = True
    with h5py.File(path, "w") as f:
        f["observations"] = rng.normal(size=(n, obs_dim)).astype(np.float32)
        f["actions"] = rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32)
        f["rewards"] = rng.normal(size=n).astype(np.float32)
        f["terminals"] = np.zeros(n, bool)
        f["timeouts"] = timeouts
    return path


def test_d4rl_env_through_the_gym_v21_wrapper(fake_d4rl):
    """make_env builds a D4RL name as the reference does: `import d4rl` (Adroit: its
    hand_manipulation_suite), then gymnasium's GymV21Environment-v0 (shimmy) around the old-gym
    env; evaluation steps it in worker processes and scores it with D4RL's hopper reference."""
    from shimmy.openai_gym_compatibility import GymV21CompatibilityV0

    env = make_env("hopper-medium-v2")
    assert isinstance(env.unwrapped, GymV21CompatibilityV0)
    assert env.observation_space.shape == (3,) and env.action_space.shape == (2,)
    ob, _ = env.reset(seed=3)
    np.testing.assert_array_equal(ob, np.full(3, 3.0, np.float32))  # the seed reached old gym
    steps = [env.step(np.zeros(2, np.float32)) for _ in range(5)]
    assert [s[2] for s in steps] == [False] * 4 + [True]  # old `done` -> terminated
    env.close()
    assert make_env("pen-human-v1").reset(seed=0)[0].shape == (3,)  # via hand_manipulation_suite

    def policy(obs, key):
        return np.zeros((len(obs), 2), np.float32)

    for workers in (0, 2):
        out = evaluate(policy, "hopper-medium-v2", episodes=4, num_envs=2, workers=workers)
        assert (out["return"], out["length"]) == (5.0, 5.0)
        lo, hi = HOPPER_REF
        assert out["normalized_score"] == pytest.approx(100 * (5.0 - lo) / (hi - lo))
    pen = evaluate(policy, "pen-human-v1", episodes=2, num_envs=2, workers=2)
    assert pen["length"] == 8.0


def test_d4rl_without_the_package_is_one_line():
    """make_env of a D4RL name without d4rl: a ConfigError saying what to install, in one line."""
    if importlib.util.find_spec("d4rl") is not None:
        pytest.skip("d4rl is importable here")
    with pytest.raises(ConfigError) as e:
        make_env("antmaze-large-play-v2")
    msg = str(e.value)
    assert "\n" not in msg and "pip install 'gfp[d4rl]'" in msg and "--no-eval" in msg
    assert "antmaze-large-play-v2" in msg


def test_gfp_train_on_d4rl_data_without_d4rl(tmp_path):
    """`gfp train` on a D4RL file named like a paper task, without the d4rl package: one line on
    stderr naming what to install (exit 2, no run directory); with --no-eval it trains without
    environment evaluation (said on stdout, in summary.json and config.json; eval.csv empty)."""
    if importlib.util.find_spec("d4rl") is not None:
        pytest.skip("d4rl is importable here")
    data = tmp_path / "d4rl"
    d4rl_file(data, "hopper-medium-v2", obs_dim=11, act_dim=3)
    out = tmp_path / "run"
    args = ["train", "--task", "hopper-medium-v2", "--dataset-dir", str(data), "--out", str(out)]
    args += ["--steps", "100", "--eval-every", "50", "--eval-episodes", "2", *TINY]

    rc, stdout, stderr = gfp_cli(*args)
    assert rc == 2, stderr
    lines = stderr_lines(stderr)
    assert len(lines) == 1, stderr
    assert lines[0].startswith("gfp: error: cannot create the evaluation environment")
    assert "pip install 'gfp[d4rl]'" in lines[0] and "--no-eval" in lines[0]
    assert not out.exists()

    rc, stdout, stderr = gfp_cli(*args, "--no-eval")
    assert rc == 0, stderr
    assert stderr_lines(stderr) == [], stderr  # no library warnings
    assert "without environment evaluation" in stdout
    assert not (out / "eval.csv").exists() or read_evals(out) == []  # no evaluation row
    summary = json.loads((out / "summary.json").read_text())
    assert summary["no_eval"] is True and summary["steps"] == 100
    assert not any(k.endswith("normalized_score_final") for k in summary)
    assert json.loads((out / "config.json").read_text())["no_eval"] is True
    assert (out / "params.msgpack").is_file()


def test_no_eval_is_recorded_only_when_set():
    """A run without no_eval keeps its config.json and config_hash (the key is absent); with it,
    the record says so, the hash is the same (training does not depend on evaluation), and a
    record without the key reads False."""
    from gfp.settings import RunSettings, from_record, record

    plain = record(RunSettings(steps=10))
    assert "no_eval" not in plain
    assert record(RunSettings(steps=10, no_eval=True)) == {**plain, "no_eval": True}
    assert from_record(plain, "config.json")["no_eval"] is False
    with pytest.raises(ConfigError, match="no_eval with online_steps"):
        RunSettings(steps=10, no_eval=True, online_steps=10)


def test_no_eval_keeps_the_config_hash(tmp_path):
    from gfp.job import job_record, make_train_job

    def hashed(**kw):
        job = make_train_job("hopper-medium-v2", "gfp", steps=10, out=tmp_path / "r", **kw)
        return job_record(job)

    a, b = hashed(), hashed(no_eval=True)
    assert "no_eval" not in a and b["no_eval"] is True
    assert a["config_hash"] == b["config_hash"]


@pytest.mark.slow
def test_gfp_train_on_d4rl_data_with_d4rl(fake_d4rl, tmp_path):
    """With d4rl (here the stand-in) the same file trains and is evaluated through the wrapper
    in the worker processes, scored with D4RL's hopper reference."""
    data = tmp_path / "d4rl"
    d4rl_file(data, "hopper-medium-v2")
    out = tmp_path / "run"
    rc, stdout, stderr = gfp_cli(
        *("train", "--task", "hopper-medium-v2", "--dataset-dir", str(data), "--out", str(out)),
        *("--steps", "100", "--eval-every", "100", "--eval-episodes", "2", *TINY),
    )
    assert rc == 0, stderr
    assert stderr_lines(stderr) == [], stderr
    (row,) = read_evals(out)
    assert float(row["actor/length"]) == 5.0 and float(row["actor/return"]) == 5.0
    lo, hi = HOPPER_REF
    assert float(row["actor/normalized_score"]) == pytest.approx(100 * (5.0 - lo) / (hi - lo))


# -------------------------------------------------------------------------------------- Minari


def make_minari(root: Path, dataset_id: str, env, eval_env, episodes: int) -> None:
    """A Minari dataset made with Minari's own DataCollector: uniform random actions."""
    import warnings

    import minari

    os.environ["MINARI_DATASETS_PATH"] = str(root)  # where create_dataset writes
    collector = minari.DataCollector(env, record_infos=False, data_format="hdf5")
    rng = np.random.default_rng(0)
    low, high = env.action_space.low, env.action_space.high
    for ep in range(episodes):
        collector.reset(seed=ep)
        done = False
        while not done:
            _, _, term, trunc, _ = collector.step(rng.uniform(low, high).astype(np.float32))
            done = term or trunc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # description / eval_env notes
        collector.create_dataset(
            dataset_id=dataset_id,
            algorithm_name="random",
            author="gfp",
            author_email="gfp@example.com",
            code_permalink="https://example.com",
            eval_env=eval_env,
        )
    collector.close()


# The hopper's evaluation environment differs from the collecting one in its kwargs and episode
# limit, so evaluating in gymnasium.make(spec.id) (what gfp did) is told apart.
HOPPER_LIMIT = 30


@pytest.fixture(scope="module")
def minari_root(tmp_path_factory):
    """mujoco/hopper/medium-v0 on Hopper-v5 and D4RL/pen/human-v2 on AdroitHandPen-v1."""
    import gymnasium

    gymnasium_robotics = pytest.importorskip("gymnasium_robotics")
    root = tmp_path_factory.mktemp("minari")
    before = os.environ.get("MINARI_DATASETS_PATH")
    try:
        eval_env = gymnasium.make(
            "Hopper-v5", max_episode_steps=HOPPER_LIMIT, terminate_when_unhealthy=False
        )
        make_minari(root, "mujoco/hopper/medium-v0", gymnasium.make("Hopper-v5"), eval_env, 8)
        gymnasium.register_envs(gymnasium_robotics)
        pen = gymnasium.make("AdroitHandPen-v1", max_episode_steps=50)
        make_minari(root, "D4RL/pen/human-v2", pen, None, 3)
    finally:
        if before is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = before
    return root


def test_minari_evaluation_env_is_recovered(minari_root):
    """The loader names the dataset as its evaluation environment; make_env recovers the stored
    evaluation spec (kwargs, episode limit), and so do the worker processes."""
    from gfp.data.load import load_dataset

    ds = load_dataset("mujoco/hopper/medium-v0", minari_root)
    dataset_id, path = parse_minari_env(ds.env_name)
    assert dataset_id == "mujoco/hopper/medium-v0"
    assert path == (minari_root / "mujoco/hopper/medium-v0/data").resolve()
    env = make_env(ds.env_name)
    assert (env.spec.id, env.spec.max_episode_steps) == ("Hopper-v5", HOPPER_LIMIT)
    assert env.spec.kwargs["terminate_when_unhealthy"] is False
    env.close()

    def policy(obs, key):
        return np.zeros((len(obs), 3), np.float32)

    try:
        out = evaluate(policy, ds.env_name, episodes=2, num_envs=2, workers=2)
    finally:
        close_env_pools()
    assert out["length"] == HOPPER_LIMIT

    pen = load_dataset("D4RL/pen/human-v2", minari_root)
    env = make_env(pen.env_name)
    assert (env.spec.id, env.spec.max_episode_steps) == ("AdroitHandPen-v1", 50)
    assert env.observation_space.shape == (45,) and env.action_space.shape == (24,)
    env.close()


def test_minari_dataset_moved_is_one_line(minari_root, tmp_path):
    from gfp.tasks import minari_env

    with pytest.raises(ConfigError, match="holds none") as e:
        make_env(minari_env("mujoco/hopper/medium-v0", tmp_path / "gone" / "data"))
    assert "\n" not in str(e.value)


@pytest.mark.slow
@pytest.mark.parametrize(
    "task, ref, length",
    [("mujoco/hopper/medium-v0", HOPPER_REF, HOPPER_LIMIT), ("D4RL/pen/human-v2", PEN_REF, 50)],
)
def test_gfp_train_on_minari_end_to_end(minari_root, tmp_path, task, ref, length):
    """`gfp train` loads the local dataset, trains 200 steps, evaluates 2 episodes in the
    recovered environment and records and prints the score normalized with the authors'
    constants (pen: 137.93 / 8820.51, not D4RL's 96.26 / 3076.83)."""
    out = tmp_path / "run"
    rc, stdout, stderr = gfp_cli(
        *("train", "--task", task, "--steps", "200", "--eval-episodes", "2", "--out", str(out)),
        *(*TINY, "--json"),  # the summary as a JSON line, not the table
        env={"MINARI_DATASETS_PATH": str(minari_root)},
    )
    assert rc == 0, stderr
    assert stderr_lines(stderr) == [], stderr  # no library notes (gymnasium-robotics', Minari's)
    rows = read_evals(out)
    assert rows
    lo, hi = ref
    for row in rows:
        assert float(row["actor/length"]) == length
        ret = float(row["actor/return"])
        assert float(row["actor/normalized_score"]) == pytest.approx(100 * (ret - lo) / (hi - lo))
    summary = json.loads((out / "summary.json").read_text())
    final = summary["actor/normalized_score_final"]
    assert final == pytest.approx(100 * (float(rows[-1]["actor/return"]) - lo) / (hi - lo), 1e-4)
    assert '"actor/normalized_score_final"' in stdout
