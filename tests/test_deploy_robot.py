"""Deploying a policy trained on a LeRobot dataset: the raw observation dict a robot produces
({feature name: value}) through the exported ONNX model (gfp.deploy's `policy.act_raw`) gives
gfp's own actions (gfp.api's `Policy.act_raw`), in robot units; the preprocessing is training's
(the state features concatenated in order, camera frames stacked oldest first with the episode's
first frame repeated), the un-normalisation is the dataset's stats' (meta/stats.json, checked by
hand), and bad inputs are one line naming the key.

The runs are the fixture's (tests/fixtures/lerobot/v3.0), recorded as `gfp train` records them
(config.json's dataset record from the loader, gfp.api.fit_config) with random parameters, so
the actions are not saturated; one test goes through `gfp train` and `gfp export` themselves.
Tolerance: the exported model and gfp's jitted policy agree to within 1e-5 in [-1, 1] (float32,
test_export's TOL); in robot units that is 1e-5 * max(1, |min|, |max|) (`output_scale`), which
for the fixture's actions (all within [-1, 1]) is 1e-5.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("av")
pytest.importorskip("onnxruntime")

from gfp.agents import make_agent  # noqa: E402
from gfp.agents.base import ObsSpec  # noqa: E402
from gfp.api import Policy, fit_config, load_run  # noqa: E402
from gfp.data import lerobot_loader as L  # noqa: E402
from gfp.data.load import load_dataset  # noqa: E402
from gfp.deploy import DeployError, InvalidInput, load_policy, sidecar_path  # noqa: E402
from gfp.errors import ConfigError, DataError  # noqa: E402
from gfp.export import cli_main, output_scale  # noqa: E402
from tests.test_export import small_config, training_stacks, write_run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "lerobot" / "v3.0"
STATE, CAMERA, REWARD = "observation.state", "observation.images.top", "next.reward"
TOL = 1e-5
K = 3  # the camera run's frame stack (training_stacks' K)
EPISODE_STARTS = (0, 69, 136)  # the fixture's episodes: 69, 67 and 69 frames


def lerobot_run(path: Path, obs_keys: str | None = None, seed: int = 0, **config) -> Policy:
    """A finished run on the fixture with `--obs-keys obs_keys`, as gfp train records it,
    random parameters; saved to `path` and loaded back."""
    ds = load_dataset(f"lerobot:{FIXTURE}", obs_keys=obs_keys)
    agent = make_agent(
        "gfp",
        small_config("gfp", **config),
        obs_spec=ObsSpec.of(ds.train["observations"]),
        action_dim=ds.act_dim,
    )
    params = jax.device_get(agent.init(jax.random.PRNGKey(seed)).params)
    Policy(agent, params, fit_config(agent, ds, 0)).save(path)
    return load_run(path)


def exported(policy: Policy, out: Path, fmt: str = "onnx"):
    cli_main(policy.path, "actor", fmt, out, "dynamic", False)
    return load_policy(out)


def noise(policy: Policy, seed: int, n: int | None = None) -> np.ndarray:
    """The z gfp's Policy.act draws with `seed` (agent.act: jax.random.normal(PRNGKey(seed)))."""
    z = jax.random.normal(jax.random.PRNGKey(seed), policy.agent.noise_shape((n or 1,)))
    return np.asarray(z) if n else np.asarray(z)[0]


def stats_range() -> tuple[np.ndarray, np.ndarray]:
    """The actions' min and max as the fixture's meta/stats.json states them."""
    stats = json.loads((FIXTURE / "meta" / "stats.json").read_text())["action"]
    return np.asarray(stats["min"], np.float64), np.asarray(stats["max"], np.float64)


def by_hand(a: np.ndarray) -> np.ndarray:
    """[-1, 1] -> robot units from stats.json: x = min + (a + 1) / 2 * (max - min)."""
    lo, hi = stats_range()
    return lo + (np.asarray(a, np.float64) + 1.0) / 2.0 * (hi - lo)


def one_line(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text and text.strip(), text
    return text


@pytest.fixture(scope="module")
def state_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("robot_state")
    policy = lerobot_run(path / "run")
    return policy, exported(policy, path / "actor.onnx")


@pytest.fixture(scope="module")
def camera_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("robot_camera")
    # the IMPALA encoder scales the pixels (the 'none' encoder's raw 0..255 sums with random
    # weights reach hundreds, where float32 kernels differ by more than TOL)
    policy = lerobot_run(path / "run", f"{CAMERA}@32x32", frame_stack=K, encoder="impala_cpu")
    return policy, exported(policy, path / "actor.onnx")


@pytest.fixture(scope="module")
def states() -> np.ndarray:
    return L.read_columns(FIXTURE, [STATE, REWARD])


# ---- state-only: the same actions as gfp, in robot units ---------------------------------------
def test_state_run_acts_as_gfp_in_robot_units(state_run, states):
    policy, deployed = state_run
    lo, hi = stats_range()
    assert deployed.meta["robot"]["observation"]["features"] == [
        {"key": STATE, "kind": "state", "shape": [28], "dtype": "float32"}
    ]
    assert (
        output_scale(deployed.action_normalization) == 1.0
    )  # the fixture's actions lie in [-1, 1]
    for step, row in enumerate((0, 50, 70, 204)):
        raw = {STATE: states[STATE][row], "observation.other": "ignored"}
        policy.reset()
        deployed.reset()
        ours = policy.act_raw(raw, seed=step)
        normalised = policy.act(states[STATE][row], seed=step)
        theirs = deployed.act_raw(raw, noise(policy, step))
        assert ours.shape == theirs.shape == (5,) and theirs.dtype == np.float32
        assert np.max(np.abs(theirs - ours)) < TOL
        # the robot units are the policy's [-1, 1] action through the loader's inverse map...
        np.testing.assert_allclose(
            ours, L.unnormalize_actions(normalised, policy.action_normalization), atol=1e-6
        )
        # ...which is stats.json's min/max, by hand
        np.testing.assert_allclose(theirs, by_hand(normalised), atol=TOL)
        assert np.all((theirs >= lo - TOL) & (theirs <= hi + TOL))
        assert (
            np.max(np.abs(theirs - normalised)) > 1e-2
        )  # the un-normalisation is not the identity
    # a batch of 3 robots at once (a new episode)
    policy.reset()
    deployed.reset()
    batch = states[STATE][[3, 90, 150]]
    z = noise(policy, 7, 3)
    want = by_hand(policy.act(batch, seed=7))
    np.testing.assert_allclose(deployed.act_raw({STATE: batch}, z), want, atol=TOL)
    np.testing.assert_allclose(policy.act_raw({STATE: batch}, seed=7), want, atol=TOL)


def test_state_sidecar_records_the_preprocessing_and_the_stats(state_run):
    _, deployed = state_run
    meta = json.loads(sidecar_path(deployed.path).read_text())
    lo, hi = stats_range()
    robot = meta["robot"]
    assert robot["source"] == "lerobot" and robot["dataset"]["fps"] == 10
    norm = robot["action_normalization"]
    assert (norm["kind"], norm["stats"]) == ("min_max", "meta/stats.json")
    np.testing.assert_array_equal(norm["min"], lo)
    np.testing.assert_array_equal(norm["max"], hi)
    np.testing.assert_array_equal(meta["action_range"]["low"], lo)
    np.testing.assert_array_equal(deployed.action_low, lo)
    np.testing.assert_array_equal(deployed.action_high, hi)
    assert deployed.observation_names[:2] == [f"{STATE}[0]", f"{STATE}[1]"]
    assert meta["frame_stack"] == 1 and meta["outputs"][0]["shape"] == ["batch", 5]


def test_stablehlo_export_outputs_robot_units_too(state_run, states, tmp_path):
    policy, onnx = state_run
    hlo = exported(policy, tmp_path / "actor.stablehlo", "stablehlo")
    obs, z = states[STATE][:4], noise(policy, 3, 4)
    np.testing.assert_allclose(hlo(obs, z), onnx(obs, z), atol=TOL)
    np.testing.assert_allclose(hlo(obs, z), by_hand(policy.act(obs, seed=3)), atol=TOL)


def test_several_state_features_are_concatenated_in_order(tmp_path, states):
    """`--obs-keys observation.next.reward,observation.state`: the raw dict becomes exactly the
    training row (reward first), and the policy acts on it."""
    keys = f"{REWARD},{STATE}"
    policy = lerobot_run(tmp_path / "run", keys, seed=1)
    deployed = exported(policy, tmp_path / "two.onnx")
    features = deployed.meta["robot"]["observation"]["features"]
    assert [(f["key"], f["shape"]) for f in features] == [(REWARD, [1]), (STATE, [28])]
    train = load_dataset(f"lerobot:{FIXTURE}", obs_keys=keys).train["observations"]
    for row in (0, 100):
        raw = {STATE: states[STATE][row], REWARD: np.float32([states[REWARD][row]])}
        np.testing.assert_array_equal(deployed.preprocess(raw), train[row])
        deployed.reset()
        got = deployed.act_raw(raw, noise(policy, row))
        np.testing.assert_allclose(got, policy.act_raw(raw, seed=row), atol=TOL)
    assert deployed.observation_names[:2] == [REWARD, f"{STATE}[0]"]


# ---- camera-only: frame stacking as training, with the episode's reset ------------------------
def test_camera_run_stacks_frames_as_training_and_acts_as_gfp(camera_run):
    """Two episodes of the fixture's own frames (the end of episode 0, then the start of
    episode 1 after reset()): the stacked input is training's (clip_indices + stack_clip), and
    the actions are gfp's Policy.act_raw's, in robot units."""
    policy, deployed = camera_run
    frames = L.read_frames(FIXTURE, CAMERA, size=(32, 32))
    assert deployed.meta["frame_stack"] == K
    assert deployed.meta["robot"]["observation"]["features"] == [
        {"key": CAMERA, "kind": "camera", "shape": [32, 32, 3], "dtype": "uint8"}
    ]
    for first, length in ((EPISODE_STARTS[0], 5), (EPISODE_STARTS[1], 4)):
        episode = frames[first : first + length]
        train = training_stacks(episode)  # what training's sampler stacks for these rows
        policy.reset()
        deployed.reset()
        for t, frame in enumerate(episode):
            ours = policy.act_raw({CAMERA: frame}, seed=t)
            theirs = deployed.act_raw({CAMERA: frame}, noise(policy, t))
            np.testing.assert_array_equal(deployed.stacked_input, train[t])
            assert np.max(np.abs(theirs - ours)) < TOL
            a = np.asarray(policy.agent.action(policy.params, train[t][None], noise(policy, t, 1)))
            assert np.any(np.abs(a) < 0.99)  # not all clipped (trivially the stats' min/max)
            np.testing.assert_allclose(theirs, by_hand(a)[0], atol=TOL)
        # oldest first, the episode's first frame repeated before its start
        np.testing.assert_array_equal(deployed.stacked_input[..., :3], episode[length - K])
    policy.reset()
    deployed.reset()
    deployed.act_raw({CAMERA: frames[10]})
    np.testing.assert_array_equal(deployed.stacked_input, np.concatenate([frames[10]] * K, -1))


def test_a_frame_at_the_stored_resolution_is_refused(camera_run):
    """Training decoded the 64x64 video at 32x32 with FFmpeg's scaler; gfp.deploy does not
    resize (it cannot repeat that exactly), it says so."""
    policy, deployed = camera_run
    full = L.read_frames(FIXTURE, CAMERA)[0]
    assert full.shape == (64, 64, 3)
    deployed.reset()
    with pytest.raises(InvalidInput) as e:
        deployed.act_raw({CAMERA: full})
    msg = one_line(e)
    assert CAMERA in msg and "64x64" in msg and "resize it to 32x32" in msg
    with pytest.raises(DataError) as e:
        policy.act_raw({CAMERA: full})
    assert one_line(e) == msg
    with pytest.raises(InvalidInput, match=f"'{CAMERA}' is float32; .*uint8"):
        deployed.act_raw({CAMERA: full[:32, :32].astype(np.float32) / 255})


# ---- combined: a camera and the state vector ---------------------------------------------------
def test_combined_run_takes_the_state_and_the_stacked_frames(tmp_path, states):
    """`--obs-keys observation.state,observation.images.top@32x32`: the raw dict becomes the
    training row (the frame and the state vector beside it), the frames are stacked as training
    stacks them, the state is the current step's, and the actions are gfp's, in robot units."""
    import gfp.deploy
    from gfp.agents.base import PIXELS, combined_obs
    from gfp.agents.base import STATE as STATE_INPUT

    assert (gfp.deploy.PIXELS, gfp.deploy.STATE) == (PIXELS, STATE_INPUT)
    keys = f"{STATE},{CAMERA}@32x32"
    ds = load_dataset(f"lerobot:{FIXTURE}", obs_keys=keys)
    agent = make_agent(
        "gfp",
        small_config("gfp", frame_stack=K, encoder="impala_cpu"),
        obs_spec=ObsSpec.of_data(ds.train),
        action_dim=ds.act_dim,
    )
    params = jax.device_get(agent.init(jax.random.PRNGKey(2)).params)
    Policy(agent, params, fit_config(agent, ds, 0)).save(tmp_path / "run")
    policy = load_run(tmp_path / "run")
    deployed = exported(policy, tmp_path / "both.onnx")
    assert [i["name"] for i in deployed.meta["inputs"]] == ["obs", "state", "z"]
    features = deployed.meta["robot"]["observation"]["features"]
    assert [(f["key"], f["kind"], f["shape"]) for f in features] == [
        (STATE, "state", [28]),
        (CAMERA, "camera", [32, 32, 3]),
    ]
    frames, state = ds.train["observations"], ds.train["observations_state"]
    first = EPISODE_STARTS[1]
    episode = frames[first : first + 4]
    train = training_stacks(episode)
    policy.reset()
    deployed.reset()
    for t, row in enumerate(range(first, first + 4)):
        raw = {CAMERA: frames[row], STATE: states[STATE][row]}
        prepared = deployed.preprocess(raw)
        np.testing.assert_array_equal(prepared[PIXELS], frames[row])
        np.testing.assert_array_equal(prepared[STATE_INPUT], state[row])
        theirs = deployed.act_raw(raw, noise(policy, t))
        np.testing.assert_array_equal(deployed.stacked_input, train[t])
        assert np.max(np.abs(theirs - policy.act_raw(raw, seed=t))) < TOL
        obs = combined_obs(train[t][None], state[row][None])
        a = np.asarray(agent.action(params, obs, noise(policy, t, 1)))
        assert np.any(np.abs(a) < 0.99)  # not all clipped
        np.testing.assert_allclose(theirs, by_hand(a)[0], atol=TOL)
    # the state matters: another state, the same frames, other actions
    deployed.reset()
    other = deployed.act_raw({CAMERA: frames[first], STATE: states[STATE][0] + 1}, noise(policy, 0))
    deployed.reset()
    same = deployed.act_raw({CAMERA: frames[first], STATE: states[STATE][first]}, noise(policy, 0))
    assert np.max(np.abs(other - same)) > 1e-4
    with pytest.raises(InvalidInput) as e:
        deployed.act_raw({STATE: states[STATE][0]})
    assert f"'{CAMERA}' is missing" in one_line(e)


# ---- refusals: one line naming the key ---------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({}, [f"'{STATE}' is missing"]),
        ({STATE: np.zeros(27, np.float32)}, [f"'{STATE}' has shape [27]", "[28]"]),
        ({STATE: np.zeros((2, 3, 28), np.float32)}, [f"'{STATE}' has shape [2, 3, 28]"]),
        ({STATE: np.zeros(28, bool)}, [f"'{STATE}' is bool"]),
        ({STATE: np.array(["x"] * 28)}, [f"'{STATE}' is <U1"]),
        (
            {STATE: np.where(np.arange(28) == 4, np.nan, 0.0)},
            [f"'{STATE}'", "NaN", "dimension(s) 4"],
        ),
        (
            {STATE: np.where(np.arange(28) == 9, np.inf, 0.0)},
            [f"'{STATE}'", "inf", "dimension(s) 9"],
        ),
    ],
)
def test_bad_raw_observations_are_one_line(state_run, raw, words):
    policy, deployed = state_run
    deployed.reset()
    with pytest.raises(InvalidInput) as e:
        deployed.act_raw(raw)
    msg = one_line(e)
    assert all(w in msg for w in words), msg
    with pytest.raises(DataError) as e:  # gfp's own Policy says the same
        policy.act_raw(raw)
    assert one_line(e) == msg


def test_not_a_dict_and_mixed_batches_are_refused(state_run, tmp_path, states):
    policy, deployed = state_run
    with pytest.raises(InvalidInput, match=f"pass a dict {{feature name: value}} holding {STATE}"):
        deployed.act_raw(states[STATE][0])
    two = lerobot_run(tmp_path / "run", f"{STATE},{REWARD}")
    raw = {STATE: states[STATE][:2], REWARD: np.float32([1.0])}
    with pytest.raises(DataError) as e:
        two.act_raw(raw)
    assert f"'{REWARD}' has no batch axis, '{STATE}' a batch of 2" in one_line(e)


def test_act_raw_of_a_run_not_on_lerobot_data(tmp_path):
    """Other runs record no preprocessing: act_raw says so; their sidecar has no `robot`."""
    write_run(tmp_path / "run", "gfp", ObsSpec((11,), "float32"))
    cli_main(tmp_path / "run", "actor", "onnx", tmp_path / "a.onnx", "dynamic", False)
    deployed = load_policy(tmp_path / "a.onnx")
    assert "robot" not in deployed.meta and deployed.meta["action_range"] == [-1.0, 1.0]
    with pytest.raises(DeployError, match="records no raw-observation preprocessing") as e:
        deployed.act_raw({STATE: np.zeros(11)})
    one_line(e)
    policy = load_run(tmp_path / "run")
    assert policy.robot is None and policy.action_normalization is None
    with pytest.raises(ConfigError, match="act_raw is for runs trained on a LeRobot dataset"):
        policy.act_raw({STATE: np.zeros(11)})


# ---- on a robot: numpy and onnxruntime only ---------------------------------------------------
ROBOT = textwrap.dedent(
    """
    import json, sys
    import numpy as np

    class NoJax:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("jax", "jaxlib", "flax", "optax", "av", "pyarrow"):
                raise ImportError(f"{name} is not installed here")
            return None

    sys.meta_path.insert(0, NoJax())
    from gfp_deploy import load_policy

    policy = load_policy(sys.argv[1])
    state, z = np.load(sys.argv[2]), np.load(sys.argv[3])
    policy.reset()
    action = policy.act_raw({"observation.state": state}, z)
    print(json.dumps(action.tolist()))
    """
)


def test_act_raw_runs_without_jax(state_run, states, tmp_path):
    policy, deployed = state_run
    np.save(tmp_path / "state.npy", states[STATE][30])
    np.save(tmp_path / "z.npy", noise(policy, 4))
    (tmp_path / "robot.py").write_text(ROBOT)
    proc = subprocess.run(
        [sys.executable, "robot.py", str(deployed.path), "state.npy", "z.npy"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT / "deploy")},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    policy.reset()
    want = policy.act_raw({STATE: states[STATE][30]}, seed=4)
    assert np.max(np.abs(np.array(json.loads(proc.stdout)) - want)) < TOL


# ---- gfp train -> gfp export -> gfp.deploy ----------------------------------------------------
@pytest.mark.slow
def test_gfp_train_then_export_then_act_raw(tmp_path, capsys, states):
    from gfp.cli import main

    run = tmp_path / "run"
    main(["train", "--task", f"lerobot:{FIXTURE}", "--agent", "gfp", "--no-eval", "--preset",
          "cpu", "--steps", "20", "--log-every", "10", "--batch-size", "16", "--flow-steps", "2",
          "--actor-hidden-dims", "16", "--value-hidden-dims", "16", "--out", str(run)])  # fmt: skip
    main(["export", str(run), "--out", str(tmp_path / "policy.onnx")])
    out = capsys.readouterr().out
    assert "action[5] in robot units (raw observation: observation.state)" in out
    deployed = load_policy(tmp_path / "policy.onnx")
    policy = load_run(run)
    for row in (0, 120):
        raw = {STATE: states[STATE][row]}
        deployed.reset()
        policy.reset()
        got = deployed.act_raw(raw, noise(policy, row))
        assert np.max(np.abs(got - policy.act_raw(raw, seed=row))) < TOL
        np.testing.assert_allclose(got, by_hand(policy.act(states[STATE][row], seed=row)), atol=TOL)
