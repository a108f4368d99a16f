"""A camera and a state vector together (issue 25 item 1): `--obs-keys observation.state,CAMERA`.

The loader keeps the camera's frame form plus the state rows (`observations_state`,
`next_observations_state`); the frame samplers hand the networks {"pixels": the frame stack,
"state": the current state}; every network's encoder is the image encoder with the state
concatenated (gfp.agents.networks.WithState). Checked against lerobot's own arrays and frames
(tests/fixtures/lerobot/*/expected.npz, as tests/test_lerobot.py does).
"""

from __future__ import annotations

import csv
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("av")

from gfp.agents import make_agent  # noqa: E402
from gfp.agents.base import PIXELS, STATE, ObsSpec, combined_obs  # noqa: E402
from gfp.agents.configs import config_class  # noqa: E402
from gfp.data.frame_layout import next_frames  # noqa: E402
from gfp.data.load import load_dataset  # noqa: E402
from gfp.engine.frames import FrameSampler, HostFrameSampler, draw_rows, split_key  # noqa: E402
from gfp.engine.placement import make_sampler  # noqa: E402
from gfp.errors import ConfigError  # noqa: E402
from tests.test_lerobot import CAMERA, FIXTURES, VERSIONS, expected, one_line  # noqa: E402

BOTH = f"observation.state,{CAMERA}"
SMALL = f"observation.state,{CAMERA}@16x16"  # the fixture's frames, smaller: fast networks
ENDS = [68, 135, 204]  # the fixture's episodes' last transitions
TINY = {
    "encoder": "impala_cpu",
    "frame_stack": 2,
    "actor_hidden_dims": (8,),
    "value_hidden_dims": (8,),
    "batch_size": 8,
    "flow_steps": 2,
}


def config(agent: str, **kw):
    cls = config_class(agent)
    return cls(**{k: v for k, v in {**TINY, **kw}.items() if k in cls.__dataclass_fields__})


# ---- the loader -----------------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_the_loader_returns_lerobots_state_and_frames_together(version):
    exp = expected(version)
    ds = load_dataset(f"lerobot:{FIXTURES / version}", obs_keys=BOTH)
    t = ds.train
    rows = exp["index"]  # every frame is a transition (next.done marks each episode's end)
    assert t["observations"].dtype == np.uint8 and t["observations"].shape == (205, 64, 64, 3)
    assert t["observations_state"].dtype == np.float32 and t["observations_state"].shape == (
        205,
        28,
    )
    assert np.array_equal(t["observations"][rows], exp[CAMERA])  # lerobot's frames, bit for bit
    assert np.array_equal(t["observations_state"][rows], exp["observation.state"])
    # the next state is the next frame's, and an episode's kept last frame its own
    state, nxt = t["observations_state"], t["next_observations_state"]
    inside = np.setdiff1d(np.arange(205), ENDS)
    assert np.array_equal(nxt[inside], state[inside + 1])
    assert np.array_equal(nxt[ENDS], state[ENDS])
    assert np.array_equal(next_frames(t)[inside], t["observations"][inside + 1])
    # the same arrays the state-only and the camera-only loads give
    alone = load_dataset(f"lerobot:{FIXTURES / version}").train
    camera = load_dataset(f"lerobot:{FIXTURES / version}", obs_keys=CAMERA).train
    assert np.array_equal(state, alone["observations"])
    assert np.array_equal(nxt, alone["next_observations"])
    for key in ("observations", "tail_frames", "frame_start", "frame_next", "actions", "rewards"):
        assert np.array_equal(t[key], camera[key]), key
    info = ds.info["lerobot"]
    assert info["obs_keys"] == ["observation.state", CAMERA] and info["image_size"] == [64, 64]
    assert ObsSpec.of_data(t) == ObsSpec((64, 64, 3), "uint8", 28)


def test_a_camera_resolution_with_the_state():
    t = load_dataset(f"lerobot:{FIXTURES / 'v3.0'}", obs_keys=SMALL).train
    assert t["observations"].shape == (205, 16, 16, 3) and t["observations_state"].shape == (
        205,
        28,
    )


# ---- the samplers ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small():
    return load_dataset(f"lerobot:{FIXTURES / 'v3.0'}", obs_keys=SMALL).train


def test_a_minibatch_holds_each_rows_state_beside_its_frame_stack(small):
    cfg = config("gfp", batch_size=256, p_aug=0.0)  # no shift: the frames are the data's
    keys = make_agent("gfp", cfg, obs_spec=ObsSpec.of_data(small), action_dim=5).batch_keys
    device = make_sampler(small, keys, "device")
    host = make_sampler(small, keys, "host")
    assert type(device) is FrameSampler and type(host) is HostFrameSampler
    rng = jax.random.PRNGKey(3)
    batch, _, _ = device.minibatch(cfg, device.data, rng)
    idx = np.asarray(draw_rows(split_key(rng)[2], 205, 256))  # the rows the key chain draws
    assert {0, 69, 136} & set(idx.tolist()) and set(ENDS) & set(idx.tolist())  # episode edges
    obs, nxt = batch["observations"], batch["next_observations"]
    assert set(obs) == set(nxt) == {PIXELS, STATE}
    assert obs[PIXELS].dtype == jnp.uint8 and obs[PIXELS].shape == (256, 16, 16, 6)
    assert obs[STATE].dtype == jnp.float32 and obs[STATE].shape == (256, 28)
    # row by row: the state of t (not stacked) beside the stack [t-1, t] (t's first frame repeated
    # at an episode's start), and the next state beside the stack [t, next(t)]
    frames, start = small["observations"], small["frame_start"]
    following = next_frames(small)
    for b, t in enumerate(idx.tolist()):
        prev = max(t - 1, int(start[t]))
        assert np.array_equal(obs[STATE][b], small["observations_state"][t])
        assert np.array_equal(nxt[STATE][b], small["next_observations_state"][t])
        assert np.array_equal(obs[PIXELS][b], np.concatenate([frames[prev], frames[t]], -1))
        assert np.array_equal(nxt[PIXELS][b], np.concatenate([frames[t], following[t]], -1))
    # host memory: the same minibatch from the same key
    fed = host.gather(idx, cfg.frame_stack)
    host_batch, _, _ = host.minibatch(cfg, host.data, rng, jax.device_put(fed))
    same = jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), batch, host_batch)
    assert all(jax.tree.leaves(same)), same


# ---- the encoder ----------------------------------------------------------------------------
def test_the_critic_sees_both_the_image_and_the_state():
    spec = ObsSpec((16, 16, 3), "uint8", 28)
    agent = make_agent("gfp", config("gfp"), obs_spec=spec, action_dim=5)
    critic, example = agent.nets["critic"]  # the critic alone: initialised, not the whole agent
    params = {"critic": jax.jit(critic.init)(jax.random.PRNGKey(0), *example)["params"]}
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (2, 16, 16, 6), dtype=np.uint8)
    state = rng.standard_normal((2, 28)).astype(np.float32)
    actions = jnp.zeros((2, 5))

    value = jax.jit(lambda px, st: agent.q(params["critic"], combined_obs(px, st), actions))

    def q(px, st):
        return np.asarray(value(px, st))

    base = q(pixels, state)
    moved_state = state.copy()
    moved_state[0, 3] += 1.0  # one state coordinate of row 0
    moved_pixel = pixels.copy()
    moved_pixel[0, 5, 7, 1] ^= 0xFF  # one pixel channel of row 0
    for changed in (q(pixels, moved_state), q(moved_pixel, state)):
        assert abs(changed[0] - base[0]) > 1e-6  # row 0's value moves
        assert changed[1] == base[1]  # row 1's does not
    # the first dense layer reads the image features (impala_cpu: 64) + the state (28) + a (5)
    crit = params["critic"]
    assert crit["VmapMLP_0"]["Dense_0"]["kernel"].shape == (2, 64 + 28 + 5, 8)
    assert crit["encoder"]["image"]["ResidualStage_0"]["Conv_0"]["kernel"].shape == (3, 3, 6, 4)


# ---- training -------------------------------------------------------------------------------
def finite_metrics(run) -> dict[str, float]:
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert rows, run
    last = {k: float(v) for k, v in rows[-1].items() if k not in ("step", "phase") and v != ""}
    assert last and all(np.isfinite(v) for v in last.values()), last
    return last


def check_policy(run, agent_name: str) -> None:
    from gfp.api import load_run

    record = json.loads((run / "config.json").read_text())["dataset"]
    assert record["obs_shape"] == [16, 16, 3] and record["obs_state_dim"] == 28
    policy = load_run(run)
    spec = policy.agent.obs_spec
    assert spec == ObsSpec((16, 16, 6), "uint8", 28) and policy.agent.name == agent_name
    p = policy.params
    for net in ("critic", "actor"):  # the image encoder's input channels, the state's width
        image = p[net]["encoder"]["image"]
        assert image["ResidualStage_0"]["Conv_0"]["kernel"].shape[2] == 6
        assert image["Dense_0"]["kernel"].shape[1] + 28 + 5 == next(
            v["Dense_0"]["kernel"].shape[-2] for k, v in p[net].items() if "MLP" in k
        )
    obs = combined_obs(np.zeros((3, 16, 16, 6), np.uint8), np.ones((3, 28), np.float32))
    actions = np.asarray(policy.agent.policy_fn("actor")(p, obs, jax.random.PRNGKey(0)))
    assert actions.shape == (3, 5) and np.all(np.abs(actions) <= 1.0)
    # Policy.act takes one frame and the state: the first frame fills the stack of 2
    frame = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    state = np.linspace(-1, 1, 28, dtype=np.float32)
    policy.reset()
    action = policy.act({PIXELS: frame, STATE: state})
    stacked = combined_obs(np.concatenate([frame, frame], -1)[None], state[None])
    direct = np.asarray(policy.agent.policy_fn("actor")(p, stacked, jax.random.PRNGKey(0)))[0]
    assert action.shape == (5,) and np.allclose(action, direct, atol=1e-6)


@pytest.mark.slow
def test_gfp_train_with_a_camera_and_the_state(tmp_path):
    from gfp.cli import main

    out = tmp_path / "gfp"
    main(["train", "--task", f"lerobot:{FIXTURES / 'v3.0'}", "--obs-keys", SMALL, "--no-eval",
          "--preset", "cpu", "--steps", "4", "--log-every", "2", "--out", str(out),
          "--encoder", "impala_cpu", "--frame-stack", "2", "--p-aug", "0.5", "--batch-size", "8",
          "--actor-hidden-dims", "8", "--value-hidden-dims", "8", "--flow-steps", "2"])  # fmt: skip
    last = finite_metrics(out)
    assert {"critic/loss", "actor/loss", "vabc/loss"} <= set(last)
    check_policy(out, "gfp")


@pytest.mark.slow
def test_fql_trains_on_a_camera_and_the_state(tmp_path):
    from gfp.job import make_train_job
    from gfp.run import run_training

    job = make_train_job(f"lerobot:{FIXTURES / 'v3.0'}", "fql", preset="cpu", overrides=TINY,
                         obs_keys=SMALL, no_eval=True, steps=4, log_every=2,
                         out=tmp_path / "fql", progress=False)  # fmt: skip
    run_training(job)
    last = finite_metrics(tmp_path / "fql")
    assert {"critic/loss", "actor/loss", "flow/loss"} <= set(last)
    check_policy(tmp_path / "fql", "fql")


@pytest.mark.slow
def test_bc_acts_on_a_camera_and_the_state(small):
    agent = make_agent("bc", config("bc"), obs_spec=ObsSpec.of_data(small), action_dim=5)
    sampler = make_sampler(small, agent.batch_keys, "device")
    state = agent.init(jax.random.PRNGKey(0))
    batch, _, _ = sampler.minibatch(agent.config, sampler.data, state.rng)
    new, metrics = jax.jit(agent.update)(state, batch)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert agent.act(new.params, batch["observations"], jax.random.PRNGKey(1)).shape == (8, 5)


# ---- what is refused ------------------------------------------------------------------------
def test_action_chunks_of_combined_observations_are_one_line_refusals(small):
    spec = ObsSpec.of_data(small)
    for agent in ("qc", "gfp"):
        with pytest.raises(ConfigError) as e:
            make_agent(agent, config(agent, horizon=3), obs_spec=spec, action_dim=5)
        assert "horizon = 3 with a camera and a state together" in one_line(e)
    with pytest.raises(ConfigError) as e:
        make_sampler(small, ("observations", "actions", "rewards", "masks"), "device", horizon=3)
    assert "horizon = 3: action-chunk windows of a camera and a state" in one_line(e)


def test_two_cameras_are_a_one_line_refusal():
    with pytest.raises(ConfigError) as e:
        load_dataset(f"lerobot:{FIXTURES / 'v3.0'}", obs_keys=f"{BOTH},{CAMERA}@32x32")
    assert "one camera at a time" in one_line(e)
