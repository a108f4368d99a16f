"""`gfp export` and `gfp.deploy`: exported policies act exactly as gfp's own, load without JAX,
and bad requests are one-line errors.

Runs are built in Python (small networks, random parameters, a run directory as `gfp train`
writes it), so every export here takes seconds; one slow test goes through `gfp train` and the
`gfp export` command.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from gfp.agents import AGENTS, make_agent
from gfp.agents.base import ObsSpec
from gfp.deploy import load_policy, sidecar_path
from gfp.errors import ConfigError, GfpError
from gfp.export import cli_main, export_policy
from gfp.rundir import RunDir

OBS_DIM, ACT_DIM = 11, 3
ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-5


def small_config(agent: str = "gfp", **kw):
    return AGENTS[agent].Config(actor_hidden_dims=(32, 32), value_hidden_dims=(32, 32), **kw)


def write_run(
    path: Path,
    agent_name: str,
    spec: ObsSpec,
    *,
    config_hash: bool = True,
    seed=0,
    act_dim: int = ACT_DIM,
    task: str = "cube-single-noisy-singletask-task1-v0",
    **config,
):
    """A finished run directory (config.json, params.msgpack, summary.json), as gfp train writes
    one, with random parameters; returns (agent, params)."""
    config = small_config(agent_name, **config)
    agent = make_agent(agent_name, config, obs_spec=spec, action_dim=act_dim)
    params = jax.device_get(agent.init(jax.random.PRNGKey(seed)).params)
    cfg = {
        "task": task,
        "agent": agent_name,
        "seed": seed,
        "agent_config": json.loads(json.dumps(dataclasses.asdict(config))),
        "dataset": {
            "obs_dim": spec.flat_dim,
            "obs_shape": list(spec.shape),
            "obs_dtype": spec.dtype,
            "act_dim": act_dim,
        },
    }
    if config_hash:
        cfg["config_hash"] = "0123456789abcdef"
    run = RunDir(path)
    try:
        run.write_config(cfg)
        run.save_params(params)
        run.write_summary({"task": cfg["task"], "agent": agent_name})
    finally:
        run.close()
    return agent, params


@pytest.fixture(scope="module")
def gfp_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("gfp_run")
    agent, params = write_run(path, "gfp", ObsSpec((OBS_DIM,), "float32"))
    return path, agent, params


def random_inputs(
    spec: ObsSpec, n: int, seed: int = 1, act_dim: int = ACT_DIM
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if spec.dtype == "uint8":
        obs = rng.integers(0, 256, (n, *spec.shape), dtype=np.uint8)
    else:
        obs = (2.0 * rng.standard_normal((n, *spec.shape))).astype(np.float32)
    return obs, rng.standard_normal((n, act_dim)).astype(np.float32)


@functools.cache
def _jitted_action(agent):
    return jax.jit(agent.action, static_argnums=3)


def gfp_actions(agent, params, obs, z, policy):
    """gfp's own action (jitted, as `gfp eval` runs it)."""
    return np.asarray(_jitted_action(agent)(params, obs, z, policy))


# ---- the same actions as gfp -------------------------------------------------------------------
@pytest.mark.parametrize("batch", [4, "dynamic"])
@pytest.mark.parametrize("policy", ["actor", "vabc"])
@pytest.mark.parametrize("fmt", ["onnx", "stablehlo"])
def test_exported_policy_acts_as_gfp(gfp_run, tmp_path, fmt, policy, batch, capsys):
    """max |exported(obs, z) - agent.action(params, obs, z)| < 1e-5 through the command's entry
    point and gfp.deploy, for several observations and noises (several batch sizes when dynamic)."""
    run_dir, agent, params = gfp_run
    out = tmp_path / f"{policy}.{fmt}"
    cli_main(run_dir, policy, fmt, out, batch, False)
    assert str(out) in capsys.readouterr().out
    loaded = load_policy(out)
    for n, seed in [(4, 1), (4, 2)] if batch == 4 else [(1, 1), (33, 2)]:
        obs, z = random_inputs(agent.obs_spec, n, seed)
        want = gfp_actions(agent, params, obs, z, policy)
        got = loaded(obs, z)
        assert got.shape == (n, ACT_DIM) and got.dtype == np.float32
        assert np.max(np.abs(got - want)) < TOL
        assert np.all(np.abs(got) <= 1.0)
        assert np.any(np.abs(want) < 0.99)  # not an all-clipped (trivially equal) comparison
    # The noise is an input: another z gives other actions (the policy is not deterministic).
    obs, z = random_inputs(agent.obs_spec, n, seed=5)
    assert np.max(np.abs(loaded(obs, z) - loaded(obs, -z))) > 1e-3


def test_actor_and_vabc_exports_differ(gfp_run, tmp_path):
    """The two policies are different functions: guards against exporting the wrong one."""
    run_dir, agent, params = gfp_run
    obs, z = random_inputs(agent.obs_spec, 8)
    got = {}
    for policy in ("actor", "vabc"):
        export_policy(agent, params, policy, "stablehlo", tmp_path / policy)
        got[policy] = load_policy(tmp_path / policy)(obs, z)
    assert np.max(np.abs(got["actor"] - got["vabc"])) > 1e-3


@pytest.mark.parametrize("fmt", ["onnx", "stablehlo"])
def test_deterministic_bakes_in_zero_noise(gfp_run, tmp_path, fmt):
    run_dir, agent, params = gfp_run
    out = tmp_path / "vabc_det"
    cli_main(run_dir, "vabc", fmt, out, "dynamic", True)
    loaded = load_policy(out)
    assert loaded.deterministic and [i["name"] for i in loaded.meta["inputs"]] == ["obs"]
    obs, _ = random_inputs(agent.obs_spec, 5)
    want = gfp_actions(agent, params, obs, np.zeros((5, ACT_DIM), np.float32), "vabc")
    assert np.max(np.abs(loaded(obs) - want)) < TOL
    with pytest.raises(ValueError, match="takes no z"):
        loaded(obs, np.zeros((5, ACT_DIM)))


@pytest.mark.parametrize(
    ("fmt", "policy"), [("onnx", "actor"), ("onnx", "vabc"), ("stablehlo", "vabc")]
)
def test_pixel_policy_takes_uint8_frames(tmp_path, fmt, policy):
    """A pixel run (stacked uint8 frames H x W x 3*stack, the IMPALA encoder of the cpu preset:
    convolutions, max-pools, residual blocks) exports with its encoder inside and takes the raw
    uint8 frames; floats are refused rather than silently truncated."""
    spec = ObsSpec((16, 16, 6), "uint8")
    agent, params = write_run(tmp_path / "run", "gfp", spec, encoder="impala_cpu")
    out = tmp_path / "pix"
    cli_main(tmp_path / "run", policy, fmt, out, "dynamic", False)
    loaded = load_policy(out)
    assert {k: loaded.meta["observation"][k] for k in ("shape", "dtype")} == {
        "shape": [16, 16, 6],
        "dtype": "uint8",
    }
    obs, z = random_inputs(spec, 3)
    assert np.max(np.abs(loaded(obs, z) - gfp_actions(agent, params, obs, z, policy))) < TOL
    with pytest.raises(ValueError, match="uint8"):
        loaded(obs.astype(np.float32) / 255.0, z)


def test_other_agents_export(tmp_path):
    """Every agent's policies go through the same path (here FQL's flow, ReBRAC's actor)."""
    for name, policy in (("fql", "flow"), ("rebrac", "actor")):
        agent, params = write_run(tmp_path / name, name, ObsSpec((OBS_DIM,), "float32"))
        out = tmp_path / f"{name}.onnx"
        cli_main(tmp_path / name, policy, "onnx", out, 2, False)
        obs, z = random_inputs(agent.obs_spec, 2)
        want = gfp_actions(agent, params, obs, z, policy)
        assert np.max(np.abs(load_policy(out)(obs, z) - want)) < TOL


# ---- frame stacking: a robot feeds what training saw ----------------------------------------
FRAME = (12, 12, 3)  # one tiny RGB frame, as the environment gives it
K = 3


@pytest.fixture(scope="module")
def stacked_pixel_run(tmp_path_factory):
    """A pixel run (impala_cpu encoder, frame_stack 3) exported to ONNX with a dynamic batch."""
    path = tmp_path_factory.mktemp("pixel_stack")
    agent, params = write_run(
        path / "run", "gfp", ObsSpec(FRAME, "uint8"), encoder="impala_cpu", frame_stack=K
    )
    out = path / "actor.onnx"
    cli_main(path / "run", "actor", "onnx", out, "dynamic", False)
    return out, agent, params


def episode_frames(n: int, seed: int) -> np.ndarray:
    """n distinct random uint8 frames (any mix-up of order or of the episode start shows)."""
    return np.random.default_rng(seed).integers(0, 256, (n, *FRAME), dtype=np.uint8)


def training_stacks(frames: np.ndarray) -> np.ndarray:
    """The observations training builds from one episode's frames (gfp.engine.frames:
    clip_indices clamps to the episode's first row, stack_clip concatenates oldest first)."""
    from gfp.engine.frames import clip_indices, stack_clip

    n = len(frames)
    idx = np.arange(n)
    ci = clip_indices(idx, np.zeros(n, int), np.minimum(idx + 1, n - 1), K, xp=np)
    obs, _ = stack_clip(jax.numpy.asarray(frames[ci]), K)
    return np.asarray(obs)


def test_pixel_sidecar_records_frame_stack_and_order(stacked_pixel_run, capsys):
    out, agent, _ = stacked_pixel_run
    meta = json.loads(sidecar_path(out).read_text())
    assert (meta["observation"]["shape"], meta["observation"]["dtype"]) == ([12, 12, 9], "uint8")
    assert meta["observation"]["names"] is None and "pixel" in meta["observation"]["names_source"]
    assert meta["frame_stack"] == K
    frames = meta["frames"]
    assert frames["frame_shape"] == list(FRAME) and frames["dtype"] == "uint8"
    assert (frames["axis"], frames["order"], frames["episode_start"]) == (
        -1,
        "oldest_first",
        "repeat_first",
    )
    loaded = load_policy(out)
    assert (loaded.frame_stack, loaded.frame_shape) == (K, FRAME)


def test_state_sidecar_has_no_stack(gfp_run, tmp_path):
    """A state policy records frame_stack 1, its frame being the whole observation."""
    run_dir, agent, params = gfp_run
    export_policy(agent, params, "actor", "stablehlo", tmp_path / "s")
    meta = json.loads(sidecar_path(tmp_path / "s").read_text())
    assert meta["frame_stack"] == 1 and meta["frames"]["frame_shape"] == [OBS_DIM]
    loaded = load_policy(tmp_path / "s")
    obs, z = random_inputs(agent.obs_spec, 1)
    loaded.reset()
    np.testing.assert_array_equal(loaded.act(obs[0], z[0]), loaded(obs[0], z[0]))


def test_deploy_stacks_frames_as_evaluation_and_training(stacked_pixel_run):
    """Two episodes (reset + 5 steps, then reset + 3 steps): gfp.deploy's policy.act feeds the
    policy the same stacked inputs as gfp.evaluate's FrameStack and as training's stacking, and
    gives gfp's own actions on them."""
    from gfp.deploy import FrameStack as DeployStack
    from gfp.evaluate import FrameStack as EvalStack

    out, agent, params = stacked_pixel_run
    policy = load_policy(out)
    evaluation = EvalStack(K)
    alone = DeployStack(K)
    rng = np.random.default_rng(3)
    for episode, length in enumerate((6, 4)):
        frames = episode_frames(length, seed=10 + episode)
        train_obs = training_stacks(frames)
        policy.reset()
        alone.reset()
        for t, frame in enumerate(frames):
            want_obs = evaluation.reset(0, frame) if t == 0 else evaluation.push(0, frame)
            z = rng.standard_normal(ACT_DIM).astype(np.float32)
            action = policy.act(frame, z)
            got_obs = policy.stacked_input
            assert got_obs.shape == (12, 12, 9) and got_obs.dtype == np.uint8
            np.testing.assert_array_equal(got_obs, want_obs)
            np.testing.assert_array_equal(got_obs, train_obs[t])
            np.testing.assert_array_equal(alone.push(frame), want_obs)
            # Oldest first, the episode's first frame repeated before its start:
            for j in range(K):
                np.testing.assert_array_equal(
                    got_obs[..., 3 * j : 3 * j + 3], frames[max(t - K + 1 + j, 0)]
                )
            want = gfp_actions(agent, params, want_obs[None], z[None], "actor")[0]
            assert action.shape == (ACT_DIM,)
            assert np.max(np.abs(action - want)) < TOL
            if t == 2:  # the policy reads the order: newest-first frames give other actions
                reverse = np.concatenate([frames[2], frames[1], frames[0]], axis=-1)
                other = gfp_actions(agent, params, reverse[None], z[None], "actor")[0]
                assert np.max(np.abs(other - want)) > 1e-4


def test_deploy_stacks_batched_frames_and_checks_shapes(stacked_pixel_run):
    """n environments reset together stack per environment; a wrong frame is refused, and an
    unstacked frame given to policy(obs) says how to stack it."""
    from gfp.evaluate import FrameStack as EvalStack

    out, agent, params = stacked_pixel_run
    policy = load_policy(out)
    evaluation = EvalStack(K)
    frames = np.stack([episode_frames(4, seed=20 + i) for i in range(2)], axis=1)  # (T, n, ...)
    policy.reset()
    z = np.random.default_rng(4).standard_normal((2, ACT_DIM)).astype(np.float32)
    for t, batch in enumerate(frames):
        actions = policy.act(batch, z)
        want_obs = np.stack(
            [
                evaluation.reset(i, f) if t == 0 else evaluation.push(i, f)
                for i, f in enumerate(batch)
            ]
        )
        np.testing.assert_array_equal(policy.stacked_input, want_obs)
        assert np.max(np.abs(actions - gfp_actions(agent, params, want_obs, z, "actor"))) < TOL
    with pytest.raises(ValueError, match="single frames of"):
        policy.act(np.zeros((12, 12, 9), np.uint8))
    with pytest.raises(ValueError, match=r"policy.act\(frame\)"):
        policy(np.zeros(FRAME, np.uint8))


def test_old_sidecar_without_frame_stack(stacked_pixel_run, tmp_path):
    """A sidecar written before the frame stack was recorded still loads for stacked inputs;
    act() says to re-export instead of guessing the stack."""
    out, agent, params = stacked_pixel_run
    old = tmp_path / "old.onnx"
    old.write_bytes(out.read_bytes())
    meta = json.loads(sidecar_path(out).read_text())
    del meta["frame_stack"], meta["frames"]
    sidecar_path(old).write_text(json.dumps(meta))
    policy = load_policy(old)
    obs, z = random_inputs(agent.obs_spec, 2)
    assert np.max(np.abs(policy(obs, z) - gfp_actions(agent, params, obs, z, "actor"))) < TOL
    with pytest.raises(ValueError, match="export it again"):
        policy.act(obs[0, ..., :3])


# ---- the sidecar and gfp.deploy -------------------------------------------------------------
def test_sidecar_says_what_a_user_needs(gfp_run, tmp_path):
    run_dir, agent, _ = gfp_run
    out = tmp_path / "actor.onnx"
    cli_main(run_dir, "actor", "onnx", out, 1, False)
    meta = json.loads(sidecar_path(out).read_text())
    assert sidecar_path(out).name == "actor.onnx.json"
    assert (meta["observation"]["shape"], meta["observation"]["dtype"]) == ([OBS_DIM], "float32")
    assert meta["action_dim"] == ACT_DIM
    assert (meta["task"], meta["agent"], meta["policy"]) == (
        "cube-single-noisy-singletask-task1-v0",
        "gfp",
        "actor",
    )
    assert meta["versions"]["gfp"] == __import__("gfp").__version__
    assert meta["config_hash"] == "0123456789abcdef"
    assert meta["batch"] == 1 and meta["format"] == "onnx" and not meta["deterministic"]
    assert [i["shape"] for i in meta["inputs"]] == [[1, OBS_DIM], [1, ACT_DIM]]
    assert meta["check"]["max_abs_diff"] < TOL


# ---- what each dimension means ------------------------------------------------------------------
def assert_cube_dimensions(meta: dict, data) -> None:
    """The sidecar of a cube-single policy names every dimension as OGBench's CubeEnv does: the
    action [dx, dy, dz, dyaw, gripper] with the env's bounds, and observation names that fit the
    dataset's values (each cos/sin pair on the unit circle, the cube's quaternion of norm 1, so a
    shifted or reordered list fails)."""
    import gymnasium
    import ogbench  # noqa: F401  (registers the OGBench environments)

    env = gymnasium.make("cube-single-singletask-task1-v0")
    try:
        space = env.action_space
    finally:
        env.close()
    action = meta["action"]
    assert action["names"] == ["dx", "dy", "dz", "dyaw", "gripper"]
    assert len(action["names"]) == meta["action_dim"] == space.shape[0]
    np.testing.assert_array_equal(action["low"], space.low)
    np.testing.assert_array_equal(action["high"], space.high)
    names = meta["observation"]["names"]
    assert len(names) == meta["observation"]["shape"][0] == 28
    assert "compute_observation" in meta["observation"]["names_source"]
    obs = np.asarray(data["observations"], np.float64)
    for key in ("proprio/effector_yaw", "privileged/block_0_yaw"):
        c, s = names.index(f"cos({key})"), names.index(f"sin({key})")
        np.testing.assert_allclose(obs[:, c] ** 2 + obs[:, s] ** 2, 1.0, atol=1e-4)
    quat = [names.index(f"privileged/block_0_quat[{i}]") for i in range(4)]
    np.testing.assert_allclose(np.linalg.norm(obs[:, quat], axis=1), 1.0, atol=1e-4)
    # Not all columns are unit-norm pairs: the check above can tell the right columns apart.
    joints = [names.index(f"proprio/joint_pos[{i}]") for i in range(2)]
    assert np.max(np.abs(np.linalg.norm(obs[:, joints], axis=1) - 1.0)) > 0.05


def test_sidecar_names_the_dimensions_of_an_ogbench_cube_run(tiny_ogbench_dir, tmp_path):
    """A run on the tiny OGBench cube dataset (its dimensions, 28 -> 5): the sidecar's names and
    bounds are the environment's, and gfp_deploy exposes them."""
    data = np.load(tiny_ogbench_dir / "cube-single-noisy-v0.npz")
    assert data["observations"].shape[1] == 28 and data["actions"].shape[1] == 5
    write_run(tmp_path / "run", "gfp", ObsSpec((28,), "float32"), act_dim=5)
    out = tmp_path / "actor.onnx"
    cli_main(tmp_path / "run", "actor", "onnx", out, 1, False)
    meta = json.loads(sidecar_path(out).read_text())
    assert_cube_dimensions(meta, data)
    loaded = load_policy(out)
    assert loaded.action_names == meta["action"]["names"]
    assert loaded.observation_names == meta["observation"]["names"]
    np.testing.assert_array_equal(loaded.action_low, -np.ones(5))
    np.testing.assert_array_equal(loaded.action_high, np.ones(5))


@pytest.mark.parametrize("task", ["hopper-medium-v2", "cube-single-noisy-singletask-task1-v0"])
def test_sidecar_names_are_null_where_nothing_states_them(tmp_path, task):
    """A D4RL task (its env names no dimension, or cannot be built here) and a run whose sizes
    are not its env's (11 -> 3 on the cube task) get "names": null and a reason, never guesses."""
    write_run(tmp_path / "run", "gfp", ObsSpec((OBS_DIM,), "float32"), task=task)
    out = tmp_path / "p.stablehlo"
    cli_main(tmp_path / "run", "actor", "stablehlo", out, 1, False)
    meta = json.loads(sidecar_path(out).read_text())
    for part in (meta["observation"], meta["action"]):
        assert part["names"] is None and part["names_source"].strip()
    if task.startswith("cube"):  # the env is built: its sizes are what does not fit
        assert "not the run's (11)" in meta["observation"]["names_source"]
    loaded = load_policy(out)
    assert loaded.observation_names is None and loaded.action_names is None


def test_export_without_a_run_records_null_names(gfp_run, tmp_path):
    run_dir, agent, params = gfp_run
    export_policy(agent, params, "actor", "stablehlo", tmp_path / "s")
    meta = json.loads(sidecar_path(tmp_path / "s").read_text())
    assert meta["observation"]["names"] is None and meta["action"]["names"] is None
    assert meta["action"]["low"] is None and "not recorded" in meta["action"]["names_source"]


def test_old_run_gets_its_config_hash_recomputed(tmp_path):
    from gfp.job import config_hash

    write_run(tmp_path / "run", "gfp", ObsSpec((OBS_DIM,), "float32"), config_hash=False)
    cli_main(tmp_path / "run", "actor", "stablehlo", tmp_path / "p", "dynamic", False)
    meta = json.loads(sidecar_path(tmp_path / "p").read_text())
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert meta["config_hash"] == config_hash(cfg)
    assert "recomputed" in meta["config_hash_source"]


def test_deploy_input_checks(gfp_run, tmp_path):
    run_dir, agent, params = gfp_run
    out = tmp_path / "actor.onnx"
    cli_main(run_dir, "actor", "onnx", out, 4, False)
    loaded = load_policy(out, seed=0)
    obs, z = random_inputs(agent.obs_spec, 4)
    with pytest.raises(ValueError, match="batches of 4"):
        loaded(obs[:3], z[:3])
    with pytest.raises(ValueError, match="shape"):
        loaded(obs[:, :-1], z)
    with pytest.raises(ValueError, match="z has shape"):
        loaded(obs, z[:, :2])
    # Without z it draws N(0, I) noise itself, from its seed: reproducible, and random.
    a1, a2 = load_policy(out, seed=7)(obs), load_policy(out, seed=7)(obs)
    np.testing.assert_array_equal(a1, a2)
    assert np.max(np.abs(a1 - load_policy(out, seed=8)(obs))) > 1e-3
    # A model that does not match its sidecar, or has none, is refused.
    out.write_bytes(out.read_bytes() + b"\0")
    with pytest.raises(ValueError, match="sha256"):
        load_policy(out)
    with pytest.raises(FileNotFoundError, match="json"):
        load_policy(tmp_path / "nothing.onnx")


def test_single_observation(gfp_run, tmp_path):
    run_dir, agent, params = gfp_run
    export_policy(agent, params, "actor", "onnx", tmp_path / "a", batch="dynamic")
    obs, z = random_inputs(agent.obs_spec, 1)
    a = load_policy(tmp_path / "a")(obs[0], z[0])
    assert a.shape == (ACT_DIM,)
    assert np.max(np.abs(a - gfp_actions(agent, params, obs, z, "actor")[0])) < TOL


# Blocks `import jax` (and flax), as on a robot without them; then loads and runs a policy with
# gfp.deploy and prints the actions and the modules that got imported.
NO_JAX = textwrap.dedent(
    """
    import json, sys
    import numpy as np

    class NoJax:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("jax", "jaxlib", "flax", "optax"):
                raise ImportError(f"{name} is not installed here")
            return None

    sys.meta_path.insert(0, NoJax())
    try:
        import jax  # noqa: F401
        sys.exit("the import hook did not block jax")
    except ImportError:
        pass
    from gfp.deploy import load_policy

    policy = load_policy(sys.argv[1])
    obs = np.load(sys.argv[2])
    z = np.load(sys.argv[3])
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("jax", "flax", "gfp.agents"))
    print(json.dumps({"actions": policy(obs, z).tolist(), "heavy": heavy}))
    """
)


def test_load_policy_runs_where_jax_cannot_be_imported(gfp_run, tmp_path):
    run_dir, agent, params = gfp_run
    out = tmp_path / "vabc.onnx"
    cli_main(run_dir, "vabc", "onnx", out, "dynamic", False)
    obs, z = random_inputs(agent.obs_spec, 6)
    np.save(tmp_path / "obs.npy", obs)
    np.save(tmp_path / "z.npy", z)
    script = tmp_path / "robot.py"
    script.write_text(NO_JAX)
    proc = subprocess.run(
        [sys.executable, str(script), str(out), str(tmp_path / "obs.npy"), str(tmp_path / "z.npy")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    want = gfp_actions(agent, params, obs, z, "vabc")
    assert np.max(np.abs(np.array(result["actions"]) - want)) < TOL


def test_stablehlo_loads_with_jax_alone(gfp_run, tmp_path):
    """A user with JAX but not gfp: jax.export.deserialize(file).call(obs, z)."""
    run_dir, agent, params = gfp_run
    out = tmp_path / "actor.stablehlo"
    cli_main(run_dir, "actor", "stablehlo", out, "dynamic", False)
    obs, z = random_inputs(agent.obs_spec, 5)
    np.save(tmp_path / "obs.npy", obs)
    np.save(tmp_path / "z.npy", z)
    code = textwrap.dedent(
        """
        import sys
        class NoGfp:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "gfp":
                    raise ImportError("gfp is not installed here")
        sys.meta_path.insert(0, NoGfp())
        import numpy as np
        from jax import export
        exp = export.deserialize(bytearray(open(sys.argv[1], "rb").read()))
        np.save(sys.argv[4], np.asarray(exp.call(np.load(sys.argv[2]), np.load(sys.argv[3]))))
        """
    )
    args = [str(out), str(tmp_path / "obs.npy"), str(tmp_path / "z.npy"), str(tmp_path / "a.npy")]
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    got = np.load(tmp_path / "a.npy")
    assert np.max(np.abs(got - gfp_actions(agent, params, obs, z, "actor"))) < TOL


# ---- bad requests ------------------------------------------------------------------------------
def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_run_without_final_params(gfp_run, tmp_path):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text((gfp_run[0] / "config.json").read_text())
    with pytest.raises(ConfigError) as e:
        cli_main(unfinished, "actor", "onnx", tmp_path / "p.onnx", 1, False)
    assert "params.msgpack" in one_line(e)
    assert not (tmp_path / "p.onnx").exists()


def test_policy_the_agent_does_not_have(gfp_run, tmp_path):
    with pytest.raises(ConfigError) as e:
        cli_main(gfp_run[0], "flow", "onnx", tmp_path / "p.onnx", 1, False)
    msg = one_line(e)
    assert "'flow'" in msg and "actor, vabc" in msg


def test_unknown_format_and_bad_batch(gfp_run, tmp_path):
    with pytest.raises(ConfigError) as e:
        cli_main(gfp_run[0], "actor", "tflite", tmp_path / "p", 1, False)
    assert "onnx, stablehlo" in one_line(e)
    for bad in ("0", "-3", "many", 2.5):
        with pytest.raises(ConfigError) as e:
            cli_main(gfp_run[0], "actor", "onnx", tmp_path / "p", bad, False)
        assert "--batch" in one_line(e)


@pytest.mark.parametrize("missing", ["jax2onnx", "onnxruntime"])
def test_converter_not_installed_names_the_extra(gfp_run, tmp_path, monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # `import missing` now raises ImportError
    with pytest.raises(ConfigError) as e:
        cli_main(gfp_run[0], "actor", "onnx", tmp_path / "p.onnx", 1, False)
    msg = one_line(e)
    assert missing in msg and "gfp[export]" in msg
    assert not (tmp_path / "p.onnx").exists()


def test_failed_check_writes_nothing(gfp_run, tmp_path, monkeypatch):
    """An export whose actions do not match gfp's is refused before any file is written."""
    import gfp.export

    monkeypatch.setattr(gfp.export, "TOLERANCE", -1.0)
    run_dir, agent, params = gfp_run
    with pytest.raises(GfpError, match="differ from gfp's"):
        export_policy(agent, params, "actor", "stablehlo", tmp_path / "p")
    assert list(tmp_path.iterdir()) == []


def test_out_is_a_directory(gfp_run, tmp_path):
    with pytest.raises(ConfigError) as e:
        cli_main(gfp_run[0], "actor", "onnx", tmp_path, 1, False)
    assert "directory" in one_line(e)


# ---- end to end ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_gfp_train_then_gfp_export(tiny_ogbench_dir, tmp_path, capsys):
    """`gfp train` (tiny) then the `gfp export` command: the exported actor acts as the run's, and
    a bad request is one line on stderr with exit status 2."""
    from gfp.cli import main
    from gfp.run import load_run
    from tests.conftest import TINY_TASK

    run_dir, out = tmp_path / "run", tmp_path / "actor.onnx"
    main(
        ["train", "--task", TINY_TASK, "--dataset-dir", str(tiny_ogbench_dir), "--steps", "20"]
        + ["--log-every", "10", "--eval-every", "0", "--eval-episodes", "1", "--out", str(run_dir)]
        + ["--actor-hidden-dims", "16", "16", "--value-hidden-dims", "16", "16"]
    )
    export = ["export", str(run_dir), "--policy", "actor", "--format", "onnx", "--out", str(out)]
    main([*export, "--batch", "dynamic"])
    agent, params, cfg = load_run(run_dir)
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["config_hash"] == cfg["config_hash"] and meta["task"] == TINY_TASK
    assert (meta["observation"]["shape"], meta["observation"]["dtype"]) == ([28], "float32")
    assert meta["action_dim"] == 5
    assert_cube_dimensions(meta, np.load(tiny_ogbench_dir / "cube-single-noisy-v0.npz"))
    obs, z = random_inputs(agent.obs_spec, 16, act_dim=5)
    want = gfp_actions(agent, params, obs, z, "actor")
    assert np.max(np.abs(load_policy(out)(obs, z) - want)) < TOL
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main([*export[:3], "vabcx", *export[4:]])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "vabcx" in err


# ---- gfp-deploy: its own distribution, one copy of the code (issue 20, item 7) ----------------
def test_gfp_deploy_is_one_module_under_two_names():
    """gfp.deploy is the gfp_deploy module itself (not a copy), and deploy/'s distribution needs
    numpy and onnxruntime only."""
    import tomllib

    import gfp_deploy

    import gfp.deploy

    assert gfp.deploy is gfp_deploy and gfp.deploy.load_policy is gfp_deploy.load_policy
    assert Path(gfp_deploy.__file__).resolve() == ROOT / "deploy" / "gfp_deploy" / "__init__.py"
    assert "def load_policy" not in (ROOT / "gfp" / "deploy.py").read_text()
    project = tomllib.loads((ROOT / "deploy" / "pyproject.toml").read_text())["project"]
    names = sorted(d.split(">")[0].split("=")[0].split("<")[0] for d in project["dependencies"])
    assert names == ["numpy", "onnxruntime"]
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert "deploy" in find["find"]["where"] and "gfp_deploy" in find["find"]["include"]


# ---- ONNX opset (issue 20, item 8) --------------------------------------------------------------
def model_opset(path: Path) -> tuple[int, int]:
    import onnx

    model = onnx.load(str(path))
    return [e.version for e in model.opset_import if e.domain in ("", "ai.onnx")][0], int(
        model.ir_version
    )


def test_default_opset_is_the_lowest_the_graph_needs(stacked_pixel_run, gfp_run, tmp_path):
    """Without --opset the model is stamped with the lowest opset its graph needs (<= 21, which
    onnxruntime 1.18 runs), the sidecar says so with the oldest onnxruntime, and it still acts as
    gfp's policy (the export's check ran it at that opset)."""
    from gfp.deploy import min_onnxruntime

    run_dir, agent, params = gfp_run
    for out in (stacked_pixel_run[0], tmp_path / "vabc.onnx"):
        if not out.exists():
            cli_main(run_dir, "vabc", "onnx", out, "dynamic", False)
        meta = json.loads(sidecar_path(out).read_text())
        opset, ir = model_opset(out)
        assert opset <= 21 and ir <= 10
        assert meta["onnx"] == {
            "opset": opset,
            "ir_version": ir,
            "min_onnxruntime": "1.18",
            "lowest_opset": opset,
        }
        assert meta["versions"]["opset"] == opset and min_onnxruntime(opset, ir) == "1.18"
    obs, z = random_inputs(agent.obs_spec, 3)
    want = gfp_actions(agent, params, obs, z, "vabc")
    assert np.max(np.abs(load_policy(tmp_path / "vabc.onnx")(obs, z) - want)) < TOL


def test_opset_flag(gfp_run, tmp_path, capsys):
    run_dir, agent, params = gfp_run
    out = tmp_path / "a23.onnx"
    cli_main(run_dir, "actor", "onnx", out, "dynamic", False, opset=23)
    assert "ONNX opset 23" in capsys.readouterr().out
    meta = json.loads(sidecar_path(out).read_text())
    assert model_opset(out)[0] == 23 and meta["onnx"]["opset"] == 23
    assert meta["onnx"]["min_onnxruntime"] not in ("1.18", "1.19", "1.20")
    obs, z = random_inputs(agent.obs_spec, 2)
    want = gfp_actions(agent, params, obs, z, "actor")
    assert np.max(np.abs(load_policy(out)(obs, z) - want)) < TOL
    lowest = meta["onnx"]["lowest_opset"]
    assert lowest < 23
    bad = [(3, "--opset must be"), ("x", "--opset must be"), (999, "cannot produce")]
    if lowest > 7:
        bad.append((lowest - 1, f"needs ONNX opset >= {lowest}"))
    for opset, match in bad:
        with pytest.raises(ConfigError) as e:
            cli_main(run_dir, "actor", "onnx", tmp_path / f"b{opset}.onnx", 1, False, opset=opset)
        assert match in one_line(e)
    with pytest.raises(ConfigError) as e:
        cli_main(run_dir, "actor", "stablehlo", tmp_path / "s", 1, False, opset=17)
    assert "--format onnx" in one_line(e)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a23.onnx", "a23.onnx.json"]


ORT_118_REFUSAL = (
    "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Failed to load model with error: /onnxruntime_src/"
    "onnxruntime/core/graph/model_load_utils.h:46 void onnxruntime::model_load_utils::"
    "ValidateOpsetForDomain(...) ONNX Runtime only *guarantees* support for models stamped with "
    "official released onnx opset versions. Opset 23 is under development and support for this "
    "is limited. The operator schemas and or other functionality may change before next ONNX "
    "release and in this case ONNX Runtime will not guarantee backward compatibility. Current "
    "official support for domain ai.onnx is till opset 21.\n"
)


def test_a_model_the_installed_onnxruntime_refuses_is_one_line(gfp_run, tmp_path, monkeypatch):
    """onnxruntime 1.18's own refusal of an opset-23 model (its message, verbatim) becomes one
    line naming both versions and the way out (the real 1.18 runs in the slow test below)."""
    import onnxruntime

    run_dir = gfp_run[0]
    out = tmp_path / "a.onnx"
    cli_main(run_dir, "actor", "onnx", out, 1, False, opset=23)

    def refuse(*args, **kwargs):
        raise RuntimeError(ORT_118_REFUSAL)

    monkeypatch.setattr(onnxruntime, "InferenceSession", refuse)
    monkeypatch.setattr(onnxruntime, "__version__", "1.18.1")
    with pytest.raises(ValueError) as e:
        load_policy(out)
    msg = one_line(e)
    for part in (str(out), "opset 23", "onnxruntime 1.18.1", "up to opset 21", "--opset 21"):
        assert part in msg, (part, msg)


# ---- gfp export never overwrites silently (issue 20, item 9) --------------------------------
def test_export_refuses_to_overwrite(gfp_run, tmp_path):
    run_dir = gfp_run[0]
    out = tmp_path / "p.onnx"
    cli_main(run_dir, "actor", "onnx", out, 1, False)
    before = out.read_bytes()
    with pytest.raises(ConfigError) as e:
        cli_main(run_dir, "vabc", "onnx", out, 1, False)
    assert str(out) in one_line(e) and "--overwrite" in one_line(e)
    assert out.read_bytes() == before
    sidecar_path(tmp_path / "q.onnx").write_text("{}")  # a lone sidecar is a file too
    with pytest.raises(ConfigError, match="q.onnx.json exists"):
        cli_main(run_dir, "vabc", "onnx", tmp_path / "q.onnx", 1, False)
    cli_main(run_dir, "vabc", "onnx", out, 1, False, overwrite=True)
    assert out.read_bytes() != before and load_policy(out).meta["policy"] == "vabc"
    # A run's own files, never: params.msgpack as the model, config.json as its sidecar.
    run_files = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    for name in ("params.msgpack", "config", "summary"):
        with pytest.raises(ConfigError) as e:
            cli_main(run_dir, "actor", "onnx", run_dir / name, 1, False, overwrite=True)
        assert "the run's own" in one_line(e)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == run_files


def test_export_never_replaces_any_file_of_the_run_directory(tmp_path):
    """Not only the run's known files: any file already in the run directory, at any depth,
    directly or through a symbolic link, as the model or as its sidecar, --overwrite or not."""
    run_dir = tmp_path / "run"
    write_run(run_dir, "gfp", ObsSpec((OBS_DIM,), "float32"))
    (run_dir / "notes.txt").write_text("mine")
    (run_dir / "tb").mkdir(exist_ok=True)  # the run's TensorBoard folder
    (run_dir / "tb" / "events.out").write_text("events")
    (run_dir / "old.onnx.json").write_text("{}")
    (tmp_path / "link").symlink_to(run_dir / "notes.txt")
    files = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    outs = [run_dir / "notes.txt", run_dir / "tb" / "events.out", run_dir / "old.onnx"]
    for out in [*outs, tmp_path / "link"]:
        with pytest.raises(ConfigError) as e:
            cli_main(run_dir, "actor", "stablehlo", out, 1, False, overwrite=True)
        assert "run directory" in one_line(e) and "never replaced" in one_line(e), out
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == files
    # A new file in the run directory is not one of its files: it is written.
    cli_main(run_dir, "actor", "stablehlo", run_dir / "actor.stablehlo", 1, False)
    assert load_policy(run_dir / "actor.stablehlo").meta["policy"] == "actor"


# ---- the runtime alone in fresh virtual environments (issue 20, items 7 and 8) ------------------
ALONE = textwrap.dedent(
    """
    import importlib.util, json, sys
    import numpy as np
    import onnxruntime
    from gfp_deploy import load_policy

    absent = [m for m in ("gfp", "jax", "flax", "mujoco", "ogbench")
              if importlib.util.find_spec(m) is not None]
    out = {"onnxruntime": onnxruntime.__version__, "present": absent}
    out["actions"] = load_policy(sys.argv[1])(np.load(sys.argv[2]), np.load(sys.argv[3])).tolist()
    try:
        load_policy(sys.argv[4])
        out["refused"] = None
    except ValueError as e:
        out["refused"] = str(e)
    print(json.dumps(out))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("onnxruntime", ["onnxruntime==1.18.1", "newest"])
def test_deploy_alone_in_a_fresh_venv(gfp_run, tmp_path, onnxruntime):
    """`pip install ./deploy` into a venv with nothing else (no gfp, JAX, MuJoCo): the exported
    policy (default opset) gives gfp's actions with the oldest onnxruntime the extra allows and
    with the newest; an opset-23 export is refused by 1.18 with one line naming both versions."""
    import shutil

    run_dir, agent, params = gfp_run
    model, model23 = tmp_path / "vabc.onnx", tmp_path / "vabc23.onnx"
    cli_main(run_dir, "vabc", "onnx", model, "dynamic", False)
    cli_main(run_dir, "vabc", "onnx", model23, "dynamic", False, opset=23)
    obs, z = random_inputs(agent.obs_spec, 7)
    np.save(tmp_path / "obs.npy", obs)
    np.save(tmp_path / "z.npy", z)
    src = tmp_path / "deploy"  # a copy: pip's build leaves build/ and egg-info next to the source
    shutil.copytree(ROOT / "deploy", src, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = str(venv / "bin" / "python")
    pins = [] if onnxruntime == "newest" else [onnxruntime, "numpy<2"]
    pip = subprocess.run(
        [py, "-m", "pip", "install", "-q", *pins, str(src)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    listed = subprocess.run([py, "-m", "pip", "list", "--format", "json"], capture_output=True)
    names = sorted(p["name"].lower() for p in json.loads(listed.stdout))
    assert "gfp" not in names and "jax" not in names and "gfp-deploy" in names
    (tmp_path / "alone.py").write_text(ALONE)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run(
        [py, "alone.py", str(model), "obs.npy", "z.npy", str(model23)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["present"] == []
    want = gfp_actions(agent, params, obs, z, "vabc")
    assert np.max(np.abs(np.array(result["actions"]) - want)) < TOL
    if onnxruntime == "newest":
        assert result["refused"] is None
    else:
        assert result["onnxruntime"] == "1.18.1"
        msg = result["refused"]
        assert "\n" not in msg and "opset 23" in msg and "1.18.1" in msg and "21" in msg
