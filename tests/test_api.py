"""The Python API's trained policy (gfp.api): `gfp.load_run` gives a Policy whose `act` is
evaluation's action, `save` writes a run directory that loads back identically, bad directories
are one-line errors, pixel runs stack frames as training did, and README.md's "Python API"
example runs as written."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gfp
from gfp.agents import AGENTS, make_agent
from gfp.agents.base import ObsSpec
from gfp.api import Policy
from gfp.errors import ConfigError, DataError
from gfp.rundir import RunDir
from tests.conftest import TINY_TASK

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(actor_hidden_dims=(16, 16), value_hidden_dims=(16, 16), batch_size=8, flow_steps=2)


@pytest.fixture(scope="module")
def trained(tiny_ogbench_dir):
    """GFP fitted for a few steps on the tiny OGBench dataset, two seeds side by side."""
    data = gfp.load_dataset(TINY_TASK, tiny_ogbench_dir)
    agent = make_agent(
        "gfp", AGENTS["gfp"].Config(**SMALL), obs_dim=data.obs_dim, action_dim=data.act_dim
    )
    states = gfp.fit(agent, data, steps=20, seeds=[0, 1], log_every=10, progress=False)
    return agent, states, data


def observations(data, n: int = 6) -> np.ndarray:
    return np.asarray(data.train["observations"][:n], np.float32)


def trees_equal(a, b) -> bool:
    same_shape = jax.tree.structure(a) == jax.tree.structure(b)
    return same_shape and all(
        np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


# ---- act is evaluation's action ------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["actor", "vabc"])
def test_act_equals_agent_act(trained, policy):
    """Policy.act(obs, policy, seed) == agent.act(params, obs, PRNGKey(seed), policy), the function
    evaluation calls, for a batch and for one observation; the seed picks the noise."""
    agent, states, data = trained
    pol = Policy.from_fit(agent, states, data, seed_index=1)
    params = jax.device_get(gfp.unstack(states, 1).params)
    assert trees_equal(pol.params, params)
    obs = observations(data)
    for seed in (0, 7):
        key = jax.random.PRNGKey(seed)
        want = np.asarray(agent.act(params, jnp.asarray(obs), key, policy))
        got = pol.act(obs, policy=policy, seed=seed)
        assert got.shape == (len(obs), data.act_dim) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
        one = pol.act(obs[2], policy=policy, seed=seed)
        assert one.shape == (data.act_dim,)
        want_one = np.asarray(agent.act(params, jnp.asarray(obs[2]), key, policy))
        np.testing.assert_allclose(one, want_one, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(pol.act(obs, policy, 3), pol.act(obs, policy, 3))
    assert not np.allclose(pol.act(obs, policy, 0), pol.act(obs, policy, 1))  # noise from the seed


def test_act_compiles_once_per_input_shape(trained, monkeypatch):
    """Repeated calls reuse the jitted policy: the agent's act is traced once per batch shape."""
    agent, states, data = trained
    traced = []
    original = agent.act
    monkeypatch.setattr(agent, "act", lambda *a, **k: traced.append(1) or original(*a, **k))
    pol = Policy.from_fit(agent, states, data)
    obs = observations(data, 4)
    for seed in range(4):
        pol.act(obs, seed=seed)
        pol.act(obs[seed], seed=seed)
    assert len(traced) == 2  # (4, obs_dim) and (1, obs_dim)


def test_bad_policy_and_observations_are_one_line_errors(trained):
    agent, states, data = trained
    pol = Policy.from_fit(agent, states, data)
    with pytest.raises(ConfigError, match="has no policy 'critic'; its policies: actor, vabc"):
        pol.act(observations(data), policy="critic")
    with pytest.raises(DataError, match=r"shape \(3,\); this policy takes \[28\]") as e:
        pol.act(np.zeros(3))
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="seed_index 2 is out of range: the states hold 2"):
        Policy.from_fit(agent, states, data, seed_index=2)


# ---- save and load -------------------------------------------------------------------------------
def test_save_then_load_run_gives_identical_params_and_actions(trained, tmp_path):
    agent, states, data = trained
    pol = Policy.from_fit(agent, states, data, seed_index=1)
    out = pol.save(tmp_path / "run")
    assert out == tmp_path / "run" and pol.path == out
    assert {p.name for p in out.iterdir()} >= {"config.json", "params.msgpack", "summary.json"}
    loaded = gfp.load_run(out)
    assert isinstance(loaded, Policy) and loaded.path == out
    assert trees_equal(loaded.params, pol.params)
    assert loaded.config == pol.config and loaded.agent.config == agent.config
    assert loaded.config["dataset"]["env_name"] == data.env_name
    assert loaded.summary == {"task": TINY_TASK, "agent": "gfp", "steps": 20}
    obs = observations(data)
    for policy in agent.policies:
        np.testing.assert_array_equal(loaded.act(obs, policy, 5), pol.act(obs, policy, 5))
    # The tuple form of gfp.run.load_run (gfp eval, gfp export) reads the same directory.
    agent2, params2, cfg2 = gfp.run.load_run(out)
    assert agent2.name == "gfp" and trees_equal(params2, pol.params) and cfg2 == pol.config
    # Saved again elsewhere: the same bytes, the run's summary kept.
    again = loaded.save(tmp_path / "copy")
    assert (again / "params.msgpack").read_bytes() == (out / "params.msgpack").read_bytes()
    assert json.loads((again / "summary.json").read_text()) == loaded.summary


def test_save_never_replaces_a_run_unless_asked(trained, tmp_path):
    agent, states, data = trained
    first, second = (Policy.from_fit(agent, states, data, seed_index=i) for i in (0, 1))
    out = first.save(tmp_path / "run")
    before = (out / "params.msgpack").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run .*overwrite=True") as e:
        second.save(out)
    assert "\n" not in str(e.value)
    assert (out / "params.msgpack").read_bytes() == before
    second.save(out, overwrite=True)
    assert trees_equal(gfp.load_run(out).params, second.params)
    loaded = gfp.load_run(out)
    with pytest.raises(ConfigError, match="is the run directory this policy was loaded from"):
        loaded.save(out, overwrite=True)
    assert trees_equal(gfp.load_run(out).params, second.params)


def test_load_run_on_a_directory_that_is_not_a_run_is_one_config_error(trained, tmp_path):
    agent, states, data = trained
    (tmp_path / "empty").mkdir()
    for path in (tmp_path / "empty", tmp_path / "missing"):
        with pytest.raises(ConfigError, match="has no params.msgpack: not a finished gfp run") as e:
            gfp.load_run(path)
        assert "\n" not in str(e.value) and str(path) in str(e.value)
    run = Policy.from_fit(agent, states, data).save(tmp_path / "run")
    (run / "params.msgpack").write_bytes(b"not msgpack")
    with pytest.raises(ConfigError, match=r"run/params\.msgpack.* gfp parameters") as e:
        gfp.load_run(run)
    assert "\n" not in str(e.value)
    # Parameters of another configuration (wider networks) than config.json describes.
    wide = make_agent(
        "gfp",
        AGENTS["gfp"].Config(**{**SMALL, "actor_hidden_dims": (32, 32)}),
        obs_dim=data.obs_dim,
        action_dim=data.act_dim,
    )
    Policy(wide, jax.device_get(wide.init(jax.random.PRNGKey(0)).params), {}).save(
        tmp_path / "wide"
    )
    (run / "params.msgpack").write_bytes((tmp_path / "wide" / "params.msgpack").read_bytes())
    wrong = r"\['actor'\]\['MLP_0'\]\['Dense_0'\]\['bias'\] is float32\[32\], the gfp agent"
    with pytest.raises(ConfigError, match=rf"array {wrong} of config.json needs float32\[16\]"):
        gfp.load_run(run)
    (run / "config.json").unlink()
    with pytest.raises(ConfigError, match="config.json: cannot be read"):
        gfp.load_run(run)


# ---- pixel runs: frames stacked as training and evaluation stack them ---------------------------
FRAME, K = (8, 8, 3), 3


@pytest.fixture(scope="module")
def pixel_run(tmp_path_factory):
    """A run directory as gfp train writes one for a pixel task with frame_stack 3 (random
    parameters, impala_cpu encoder)."""
    config = AGENTS["gfp"].Config(**SMALL, encoder="impala_cpu", frame_stack=K)
    agent = make_agent("gfp", config, obs_spec=ObsSpec(FRAME, "uint8"), action_dim=2)
    params = jax.device_get(agent.init(jax.random.PRNGKey(0)).params)
    path = tmp_path_factory.mktemp("pixel_run")
    run = RunDir(path)
    try:
        run.write_config(
            {
                "task": "visual-cube-single-singletask-task1-v0",
                "agent": "gfp",
                "agent_config": json.loads(json.dumps(dataclasses.asdict(config))),
                "dataset": {
                    "obs_dim": int(np.prod(FRAME)),
                    "obs_shape": list(FRAME),
                    "obs_dtype": "uint8",
                    "act_dim": 2,
                },
            }
        )
        run.save_params(params)
    finally:
        run.close()
    return path, agent, params


def test_pixel_act_stacks_single_frames_as_evaluation_does(pixel_run):
    """act(frame) == agent.act on the stack evaluation builds (gfp.evaluate.FrameStack: oldest
    first, the episode's first frame repeated), for one environment and for two; reset() starts a
    new episode."""
    from gfp.evaluate import FrameStack

    path, agent, params = pixel_run
    pol = gfp.load_run(path)
    assert pol.frame_stack == K and pol.obs_shape == FRAME
    frames = np.random.default_rng(0).integers(0, 256, (6, 2, *FRAME), dtype=np.uint8)
    key = jax.random.PRNGKey(4)
    evaluation = FrameStack(K)
    for episode in (frames[:4], frames[4:]):  # two episodes: the stack restarts at reset()
        pol.reset()
        for t, frame in enumerate(episode):
            stacked = np.stack(
                [(evaluation.reset if t == 0 else evaluation.push)(i, frame[i]) for i in (0, 1)]
            )
            want = np.asarray(agent.act(params, jnp.asarray(stacked), key))
            np.testing.assert_allclose(pol.act(frame, seed=4), want, rtol=0, atol=1e-6)
            np.testing.assert_allclose(pol.act_stacked(stacked, seed=4), want, rtol=0, atol=1e-6)
            if t == 0:  # the first frame fills the stack
                assert np.array_equal(stacked[0], np.concatenate([frame[0]] * K, axis=-1))
    pol.reset()
    one = pol.act(frames[0, 0], seed=4)  # one environment: one frame, one action
    stacked = np.concatenate([frames[0, 0]] * K, axis=-1)
    want = np.asarray(agent.act(params, jnp.asarray(stacked[None]), key))[0]
    np.testing.assert_allclose(one, want, rtol=0, atol=1e-6)
    with pytest.raises(DataError, match="single frames of \\[8, 8, 3\\]"):
        pol.act(np.zeros((8, 8, 9), np.uint8))
    with pytest.raises(DataError, match="takes the uint8 frames"):
        pol.act_stacked(np.zeros((8, 8, 9), np.float32))


# ---- README.md's example -------------------------------------------------------------------------
def readme_example() -> str:
    """The ```python block of README.md's "## Python API" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the Python API section has one python example"
    return blocks[0]


def test_readme_example_is_short():
    assert len(readme_example().strip().splitlines()) <= 15


@pytest.mark.slow
def test_readme_python_example_runs_as_written(tmp_path):
    """The README example, saved as a script and run from an empty directory with an empty home
    and gfp cache: it generates its data, trains, evaluates, saves, loads and acts, printing the
    evaluation and then the action of the saved run's actor."""
    (tmp_path / "example.py").write_text(readme_example())
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "XDG_CACHE_HOME": str(tmp_path / "home" / ".cache"),
        "GFP_DATA_DIR": str(tmp_path / "gfp-cache"),
    }
    done = subprocess.run(
        [sys.executable, "example.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # The last two things printed: the evaluation (a dict on one line), then the action.
    lines = done.stdout.strip().splitlines()
    at = max(i for i, line in enumerate(lines) if line.startswith("{"))
    evaluation = ast.literal_eval(lines[at])
    for policy in ("actor", "vabc"):
        assert 0.0 <= evaluation[f"{policy}/success"] <= 1.0
        assert evaluation[f"{policy}/length"] > 0
    action = np.array(" ".join(lines[at + 1 :]).strip(" []").split(), dtype=np.float32)
    assert action.shape == (5,) and np.all(np.abs(action) <= 1.0)
    # The saved run acts the same in this process (same observation, seed 0).
    data = gfp.load_dataset(TINY_TASK, tmp_path / "data")
    want = gfp.load_run(tmp_path / "runs" / "python-api").act(data.train["observations"][0])
    np.testing.assert_allclose(action, want, rtol=0, atol=1e-6)
    assert not (tmp_path / "gfp-cache").exists()  # nothing written to the gfp cache
