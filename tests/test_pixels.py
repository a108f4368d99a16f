"""Pixel tasks: the IMPALA encoders, frame stacking, random-shift augmentation, frame data on the
device or in host memory, evaluation's frame stack, and visual OGBench datasets generated offline
(frames equal to OGBench's own visual env, loaded by OGBench's loader, trained through the CLI and
resumed bit-identically).

Rendering is slow without a GPU (Mesa's software rasterizer: about a second per 64x64 frame on a
loaded 2-core machine), so the generated dataset is one 20-row episode, made once per module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gfp.agents import make_agent
from gfp.agents.base import ObsSpec
from gfp.agents.configs import GFPConfig
from gfp.agents.networks import ENCODERS
from gfp.data.frame_layout import frame_store
from gfp.engine import frames as F
from gfp.engine import placement as P
from gfp.engine.chunk import Chunk, init_states
from gfp.engine.driver import train
from gfp.engine.placement import make_sampler
from gfp.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


# ---- the encoders ------------------------------------------------------------------------------
def n_params(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_impala_small_output_and_parameters_match_the_reference_architecture():
    enc = ENCODERS["impala_small"](ObsSpec((64, 64, 9), "uint8"))
    x = jnp.zeros((2, 5, 64, 64, 9), jnp.uint8)  # two batch axes
    params = enc.init(jax.random.PRNGKey(0), x)
    assert enc.apply(params, x).shape == (2, 5, 512)
    # By hand, 3x3 convolutions with biases, 9 input channels (3 stacked RGB frames):
    stage1 = (3 * 3 * 9 * 16 + 16) + 2 * (3 * 3 * 16 * 16 + 16)  # conv to 16, one block (2 convs)
    stage2 = (3 * 3 * 16 * 32 + 32) + 2 * (3 * 3 * 32 * 32 + 32)
    stage3 = (3 * 3 * 32 * 32 + 32) + 2 * (3 * 3 * 32 * 32 + 32)
    dense = (8 * 8 * 32) * 512 + 512  # 64 -> 32 -> 16 -> 8 after three stride-2 pools
    assert n_params(params) == stage1 + stage2 + stage3 + dense == 1_105_920


def test_impala_cpu_is_smaller_and_named_as_such():
    enc = ENCODERS["impala_cpu"](ObsSpec((64, 64, 9), "uint8"))
    params = enc.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 9), jnp.uint8))
    stage1 = (3 * 3 * 9 * 4 + 4) + 2 * (3 * 3 * 4 * 4 + 4)
    stage2 = (3 * 3 * 4 * 8 + 8) + 2 * (3 * 3 * 8 * 8 + 8)
    assert n_params(params) == stage1 + stage2 + (16 * 16 * 8) * 64 + 64
    assert enc.apply(params, jnp.zeros((3, 64, 64, 9), jnp.uint8)).shape == (3, 64)


def test_impala_scales_pixels_to_unit_range():
    enc = ENCODERS["impala_cpu"](ObsSpec((8, 8, 3), "uint8"))
    params = enc.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3), jnp.uint8))
    img = jax.random.randint(jax.random.PRNGKey(1), (2, 8, 8, 3), 0, 256).astype(jnp.uint8)
    np.testing.assert_allclose(
        enc.apply(params, img), enc.apply(params, img.astype(jnp.float32)), rtol=1e-6
    )
    # a float image of 255s is not "the same" as uint8 255s scaled: the encoder divides by 255
    assert not np.allclose(enc.apply(params, img), enc.apply(params, img / 255.0))


def test_impala_on_state_vectors_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"impala_small.*image observations.*\(28,\)"):
        make_agent("gfp", GFPConfig(encoder="impala_small"), obs_dim=28, action_dim=5)


def test_each_network_has_its_own_encoder_and_sees_stacked_frames():
    cfg = GFPConfig(encoder="impala_cpu", frame_stack=3, actor_hidden_dims=(8,),
                    value_hidden_dims=(8,))  # fmt: skip
    agent = make_agent("gfp", cfg, obs_spec=ObsSpec((16, 16, 3), "uint8"), action_dim=2)
    assert agent.obs_spec == ObsSpec((16, 16, 9), "uint8")
    params = agent.init(jax.random.PRNGKey(0)).params
    kernels = {}
    for module in ("critic", "actor", "vabc"):
        enc = params[module]["encoder"]
        first = enc["ResidualStage_0"]["Conv_0"]["kernel"]
        assert first.shape == (3, 3, 9, 4)  # 3 stacked RGB frames in
        kernels[module] = np.asarray(first)
    assert not np.array_equal(kernels["critic"], kernels["actor"])
    assert not np.array_equal(kernels["actor"], kernels["vabc"])


# ---- stacking --------------------------------------------------------------------------------
def pixel_transitions(episode_lengths=(4, 3, 5), size=4, consecutive=True):
    """Transitions as OGBench's loader returns them. Frame r of the raw rows is filled with the
    value r (so a gathered frame says which row it came from)."""
    obs, nxt, term = [], [], []
    r = 0
    for length in episode_lengths:
        rows = np.arange(r, r + length + 1)
        r += length + 1
        obs.append(rows[:-1])
        nxt.append(rows[1:] if consecutive else rows[1:] + 1000)
        t = np.zeros(length, np.float32)
        t[-1] = 1
        term.append(t)
    n = sum(episode_lengths)

    def frames(rows):
        return np.broadcast_to(rows[:, None, None, None] % 256, (len(rows), size, size, 3))

    rng = np.random.default_rng(0)
    return {
        "observations": np.ascontiguousarray(frames(np.concatenate(obs))).astype(np.uint8),
        "next_observations": np.ascontiguousarray(frames(np.concatenate(nxt))).astype(np.uint8),
        "terminals": np.concatenate(term),
        "actions": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "masks": np.ones(n, np.float32),
    }


def raw_rows(clip):
    """The raw row number of each frame of gathered clips (B, K + 1, H, W, C)."""
    return np.asarray(clip)[:, :, 0, 0, 0].astype(int)


def test_frames_are_stored_once_and_stacking_repeats_an_episodes_first_frame():
    tr = pixel_transitions()  # raw rows 0..4 | 5..8 | 9..14; transitions 0..3 | 4..6 | 7..11
    store = frame_store(tr)
    assert store["frames"] is tr["observations"]  # no copy
    assert raw_rows(store["tail_frames"][:, None]).ravel().tolist() == [4, 8, 14]
    idx = np.array([0, 1, 3, 4, 5, 6, 11])
    ci = F.clip_indices(idx, store["frame_start"], store["frame_next"], 3, xp=np)
    clips = F.gather_clip(store["frames"], store["tail_frames"], ci, xp=np)
    assert raw_rows(clips).tolist() == [
        [0, 0, 0, 1],  # an episode's first row: its frame three times, then the next frame
        [0, 0, 1, 2],
        [1, 2, 3, 4],  # the episode's last transition: the next frame is a tail
        [5, 5, 5, 6],  # the second episode never reaches back into the first
        [5, 5, 6, 7],
        [5, 6, 7, 8],
        [11, 12, 13, 14],
    ]
    device = F.gather_clip(jnp.asarray(store["frames"]), jnp.asarray(store["tail_frames"]),
                           jnp.asarray(ci))  # fmt: skip
    np.testing.assert_array_equal(device, clips)
    host = F.HostFrameSampler({**store, "actions": tr["actions"]})  # the threaded host gather
    batch = host.gather(np.stack([idx, idx[::-1]]), 3)
    np.testing.assert_array_equal(batch[F.CLIP][0], clips)
    np.testing.assert_array_equal(batch[F.CLIP][1], clips[::-1])
    np.testing.assert_array_equal(batch["actions"][1], tr["actions"][idx[::-1]])
    obs, nxt = F.stack_clip(jnp.asarray(clips), 3)
    assert obs.shape == nxt.shape == (7, 4, 4, 9) and obs.dtype == jnp.uint8
    # channels: oldest frame first; next observation = the same window one step later
    assert np.asarray(obs)[2, 0, 0, ::3].tolist() == [1, 2, 3]
    assert np.asarray(nxt)[2, 0, 0, ::3].tolist() == [2, 3, 4]


def test_non_consecutive_rows_keep_every_next_frame():
    tr = pixel_transitions(consecutive=False)
    store = frame_store(tr)
    assert len(store["tail_frames"]) == len(tr["observations"])
    ci = F.clip_indices(np.array([1]), store["frame_start"], store["frame_next"], 2, xp=np)
    clip = F.gather_clip(store["frames"], store["tail_frames"], ci, xp=np)
    assert raw_rows(clip).tolist() == [[0, 1, 1002 % 256]]


@pytest.mark.parametrize("lengths", [(5, 4, 6), (1, 3), (2,), (3, 1, 1, 7)])
def test_ogbench_compact_layout_becomes_the_frame_form_in_place(lengths, tmp_path, monkeypatch):
    """OGBench's own loader is the reference: its regular layout (observations and
    next_observations copied out) and the frame form built in place from its compact layout hold
    the same transitions."""
    import ogbench.utils

    from gfp.data import frame_layout
    from gfp.data.frame_layout import from_compact, next_frames

    monkeypatch.setattr(frame_layout, "_BLOCK", 2)  # rows move in many blocks, as in a big file

    m = sum(length + 1 for length in lengths)  # each episode's final frame starts no transition
    rng = np.random.default_rng(len(lengths))
    raw_obs = rng.integers(0, 256, (m, 4, 4, 3), dtype=np.uint8)
    ends = np.cumsum([length + 1 for length in lengths]) - 1
    raw = {"observations": raw_obs, "actions": rng.uniform(-1, 1, (m, 2)).astype(np.float32),
           "terminals": np.isin(np.arange(m), ends).astype(np.float32)}  # fmt: skip
    np.savez(tmp_path / "d.npz", **raw)
    regular = ogbench.utils.load_dataset(str(tmp_path / "d.npz"), ob_dtype=np.uint8)
    compact = ogbench.utils.load_dataset(
        str(tmp_path / "d.npz"), ob_dtype=np.uint8, compact_dataset=True
    )
    frames = compact["observations"]
    form = from_compact(frames, compact["valids"] > 0)
    assert np.shares_memory(form["observations"], frames)  # moved in place, not copied
    np.testing.assert_array_equal(form["observations"], regular["observations"])
    np.testing.assert_array_equal(next_frames(form), regular["next_observations"])
    np.testing.assert_array_equal(form["terminals"], regular["terminals"])
    assert len(form["tail_frames"]) == len(lengths)
    store = frame_store(form)  # already stored once: nothing rebuilt
    assert store["frames"] is form["observations"] and store["frame_next"] is form["frame_next"]
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    assert form["frame_start"].tolist() == np.repeat(starts, lengths).tolist()
    with pytest.raises(ValueError, match="last frame starts a transition"):
        from_compact(raw_obs.copy(), np.ones(m, bool))


# ---- augmentation ----------------------------------------------------------------------------
def find_shift(padded, out, pad):
    """Every (dy, dx) with out == padded[dy:dy+H, dx:dx+W] (over all frames)."""
    h, w = out.shape[-3:-1]
    return [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
            if np.array_equal(padded[..., dy:dy + h, dx:dx + w, :], out)]  # fmt: skip


def test_random_shift_is_within_pad_and_the_same_for_all_frames_of_a_sample():
    pad, b = 4, 16
    clip = jax.random.randint(jax.random.PRNGKey(0), (b, 4, 12, 12, 3), 0, 256).astype(jnp.uint8)
    out = np.asarray(F.augment(clip, jax.random.PRNGKey(1), 1.0, pad))
    assert out.dtype == np.uint8 and out.shape == clip.shape
    padded = np.pad(np.asarray(clip), ((0, 0), (0, 0), (pad, pad), (pad, pad), (0, 0)), "edge")
    shifts = []
    for i in range(b):
        whole = find_shift(padded[i], out[i], pad)
        assert len(whole) == 1  # one shift explains all 4 frames of the sample at once
        per_frame = [find_shift(padded[i, f], out[i, f], pad) for f in range(4)]
        assert all(s == whole for s in per_frame)
        shifts.append(whole[0])
    assert len(set(shifts)) > 4  # samples get their own shifts
    assert any(s != (pad, pad) for s in shifts)


def test_no_augmentation_when_p_is_zero_and_a_coin_per_minibatch_otherwise():
    clip = jax.random.randint(jax.random.PRNGKey(0), (8, 2, 10, 10, 3), 0, 256).astype(jnp.uint8)
    for key in range(5):
        out = F.augment(clip, jax.random.PRNGKey(key), 0.0, 4)
        np.testing.assert_array_equal(out, clip)
    changed = []
    aug = jax.jit(lambda c, k: F.augment(c, k, 0.5, 4))
    for key in range(200):
        out = np.asarray(aug(clip, jax.random.PRNGKey(key)))
        same = [np.array_equal(out[i], clip[i]) for i in range(8)]
        assert all(same) or sum(same) <= 2  # the whole minibatch, or none of it (a sample may
        changed.append(not all(same))  # draw the zero shift, (4, 4), by chance)
    assert 0.35 < np.mean(changed) < 0.65


# ---- frame data in training --------------------------------------------------------------------
TINY = dict(actor_hidden_dims=(8,), value_hidden_dims=(8,), batch_size=4, flow_steps=2)


def tiny_agent(**kw):
    cfg = GFPConfig(**{**TINY, "frame_stack": 3, "p_aug": 0.5, "aug_pad": 1, **kw})
    return make_agent("gfp", cfg, obs_spec=ObsSpec((4, 4, 3), "uint8"), action_dim=2)


def test_uint8_frames_reach_the_update_without_a_float32_copy_of_the_dataset():
    tr = pixel_transitions((200, 150, 250), size=8)
    cfg = GFPConfig(**TINY, frame_stack=3, p_aug=0.5)
    agent = make_agent("gfp", cfg, obs_spec=ObsSpec((8, 8, 3), "uint8"), action_dim=2)
    sampler = make_sampler(tr, agent.batch_keys)
    data = sampler.data
    assert data["frames"].dtype == jnp.uint8 and data["frames"].shape == (600, 8, 8, 3)
    assert "observations" not in data and "next_observations" not in data  # stored once
    assert data["tail_frames"].shape == (3, 8, 8, 3)
    chunk = Chunk(agent, sampler)
    jaxpr = jax.make_jaxpr(lambda s, d: chunk.fused(s, d, 2))(init_states(agent, [0]), data)

    def arrays(jx):
        for eqn in jx.eqns:
            yield from (v.aval for v in eqn.outvars)
            for p in eqn.params.values():
                for sub in p if isinstance(p, tuple | list) else [p]:
                    inner = getattr(sub, "jaxpr", None)
                    if inner is not None:
                        yield from arrays(getattr(inner, "jaxpr", inner))

    float_sizes = [a.size for a in arrays(jaxpr.jaxpr) if a.dtype == jnp.float32]
    frame_floats = 600 * 8 * 8 * 3
    assert max(float_sizes) < frame_floats // 10  # minibatch-sized float images only


@pytest.mark.slow
def test_host_and_device_frame_data_train_bit_identically():
    tr = pixel_transitions((30, 25), size=4)
    agent = tiny_agent(encoder="none")
    on_device = make_sampler(tr, agent.batch_keys)
    on_host = P.frame_sampler(tr, agent.batch_keys, placement="host")
    assert isinstance(on_host, F.HostFrameSampler)
    assert np.shares_memory(on_host.arrays["frames"], tr["observations"])  # no copy in host memory
    # One block per chunk: the same minibatches, shifts and program as on the device.
    a = train(agent, on_device, init_states(agent, [3, 4]), steps=6, log_every=6, progress=False)
    b = train(agent, on_host, init_states(agent, [3, 4]), steps=6, log_every=6, progress=False)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.step.tolist() == [6, 6]


@pytest.mark.slow
def test_host_blocks_split_a_chunk_into_the_same_updates(monkeypatch):
    tr = pixel_transitions((30, 25), size=4)
    agent = tiny_agent(encoder="none")
    on_host = P.frame_sampler(tr, agent.batch_keys, placement="host")
    whole = train(agent, on_host, init_states(agent, [0]), steps=5, log_every=5, progress=False)
    monkeypatch.setattr(F, "BLOCK_BYTES", 1)  # one update per block: 5 prefetched blocks
    calls = []
    gather = F.HostFrameSampler.gather
    monkeypatch.setattr(F.HostFrameSampler, "gather", lambda *a: calls.append(1) or gather(*a))
    rows = []
    split = train(agent, on_host, init_states(agent, [0]), steps=5, log_every=5, progress=False,
                  on_log=lambda step, r: rows.append(r[0]))  # fmt: skip
    assert len(calls) == 5
    # The same key chain and minibatches; XLA compiles a 1-step scan differently from a 5-step
    # one, so parameters agree to rounding (bit-identical runs need the same blocks, which a
    # resumed run has: they follow from the chunk boundaries).
    np.testing.assert_array_equal(whole.rng, split.rng)
    for x, y in zip(jax.tree.leaves(whole.params), jax.tree.leaves(split.params), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
    assert np.isfinite(rows[0]["loss/total"])


def test_frame_settings_on_state_data_are_a_config_error():
    agent = make_agent("gfp", GFPConfig(**TINY, frame_stack=3), obs_dim=3, action_dim=2)
    rng = np.random.default_rng(0)
    tr = {k: rng.normal(size=(10, 3)).astype(np.float32)
          for k in ("observations", "next_observations")}  # fmt: skip
    tr |= {"actions": np.zeros((10, 2), np.float32), "rewards": np.zeros(10, np.float32),
           "masks": np.ones(10, np.float32)}  # fmt: skip
    with pytest.raises(ConfigError, match="frame_stack = 3 applies to pixel observations"):
        train(agent, make_sampler(tr, agent.batch_keys), init_states(agent, [0]), steps=1,
              progress=False)  # fmt: skip


def test_placement_follows_the_budget_and_the_override(monkeypatch):
    monkeypatch.setattr(P, "device_budget", lambda: 1000)
    monkeypatch.delenv(P.PLACEMENT_ENV, raising=False)
    assert P.choose_placement(999) == "device" and P.choose_placement(1001) == "host"
    monkeypatch.setenv(P.PLACEMENT_ENV, "device")
    assert P.choose_placement(10**12) == "device"
    monkeypatch.setenv(P.PLACEMENT_ENV, "gpu")
    with pytest.raises(ConfigError, match="GFP_FRAMES_ON"):
        P.choose_placement(1)


# ---- evaluation ------------------------------------------------------------------------------
def test_evaluation_stacks_frames_like_training_and_keeps_uint8():
    from gfp.evaluate import FrameStack, policy_input

    stack = FrameStack(3)
    f0, f1, f2 = (np.full((2, 2, 3), v, np.uint8) for v in (10, 11, 12))
    assert stack.reset(0, f0)[0, 0].tolist() == [10] * 9  # the first frame three times
    stack.push(0, f1)
    out = stack.push(0, f2)
    assert out[0, 0, ::3].tolist() == [10, 11, 12] and out.dtype == np.uint8
    assert stack.reset(1, f2)[0, 0, ::3].tolist() == [12, 12, 12]  # slots are independent
    assert policy_input(out[None]).dtype == np.uint8
    assert policy_input(np.zeros((1, 3))).dtype == np.float32
    assert FrameStack(1).reset(0, f1) is f1


# ---- presets -----------------------------------------------------------------------------------
def test_pixel_presets_are_the_papers_and_the_cpu_preset_is_smaller():
    from gfp.presets import resolve

    task = "visual-puzzle-3x3-play-singletask-task1-v0"
    for agent in ("gfp", "fql", "iql", "rebrac"):
        c, _ = resolve(agent, task, "paper", None)
        assert (c.encoder, c.frame_stack, c.p_aug) == ("impala_small", 3, 0.5)  # Tab. 4, App. A
        assert c.aug_pad == 3  # the reference's random shift pads by 3 (shifts 0..6); was 4
    c, _ = resolve("gfp", task, "cpu", None)
    assert (c.encoder, c.frame_stack, c.p_aug, c.alpha) == ("impala_cpu", 3, 0.5, 3.0)
    c, _ = resolve("gfp", "puzzle-3x3-play-singletask-task1-v0", "paper", None)
    assert (c.encoder, c.frame_stack, c.p_aug) == ("none", 1, 0.0)


# ---- rendering and generated datasets --------------------------------------------------------
# MuJoCo binds its OpenGL backend when first imported, and other tests of a session may import it
# first (state environments need none): rendering runs in fresh interpreters, which choose an
# offscreen backend (gfp.render) before importing it.
def in_fresh_python(code: str, timeout: float = 1800) -> dict:
    """Run `code` in a new interpreter; it prints one JSON object as its last line."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def lockstep_frames_equal(env: str, steps: int, oracle: bool) -> tuple[list[bool], int]:
    """Step OGBench's visual env and the state env + FrameRenderer with the same actions (the
    state oracle's, with its target changes mirrored, or random); per step whether the frames
    are equal, and how many button-state changes happened. Call it in a fresh interpreter."""
    from gfp.datagen.collectors import ManipCollector, Spec
    from gfp.datagen.visual import FrameRenderer, _make

    visual = _make(f"visual-{env}-v0")  # configures OpenGL before mujoco is imported
    family = env.split("-")[0]
    collector = ManipCollector(Spec(f"{env}-play-v0", f"{env}-v0", family, "play"))
    state = collector.env
    renderer = FrameRenderer(state, f"visual-{env}-v0")
    np.random.seed(0)  # the oracles draw from np.random
    ob, info = state.reset(seed=7)
    frame, _ = visual.reset(seed=7)
    equal, presses = [np.array_equal(frame, renderer.render())], 0
    agent = collector.oracles[info["privileged/target_task"]]
    agent.reset(ob, info)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        action = rng.uniform(-1, 1, 5)
        if oracle:
            action = np.clip(agent.select_action(ob, info), -1, 1)
        ob, _, _, _, info = state.step(action)
        frame, *_ = visual.step(action)
        equal.append(np.array_equal(frame, renderer.render()))
        if "button_states" in info:
            presses += int(np.any(info["button_states"] != info["prev_button_states"]))
        if oracle and agent.done:
            agent_ob, agent_info = state.set_new_target(p_stack=0.5)
            visual.set_new_target(return_info=False, p_stack=0.5)
            agent = collector.oracles[agent_info["privileged/target_task"]]
            agent.reset(agent_ob, agent_info)
    assert np.array_equal(state.data.qpos, visual.data.qpos)
    return equal, presses


LOCKSTEP = """
import json
from tests.test_pixels import lockstep_frames_equal
equal, presses = lockstep_frames_equal({env!r}, {steps}, {oracle})
print(json.dumps({{"equal": equal, "presses": presses}}))
"""


def test_frames_equal_ogbench_visual_env():
    out = in_fresh_python(LOCKSTEP.format(env="cube-single", steps=3, oracle=False))
    assert out["equal"] == [True] * 4


@pytest.mark.slow
def test_frames_equal_ogbench_visual_env_with_buttons_pressed():
    out = in_fresh_python(LOCKSTEP.format(env="puzzle-3x3", steps=40, oracle=True))
    assert out["presses"] >= 1  # button colours changed at run time, and were rendered the same
    assert all(out["equal"]) and len(out["equal"]) == 41


@pytest.fixture(scope="module")
def visual_dir(tmp_path_factory):
    """visual-cube-single-play-v0: one 20-row train episode and one val episode, in OGBench's
    layout, rendered by two (fresh, spawned) worker processes."""
    from gfp.datagen.generate import generate

    out = tmp_path_factory.mktemp("visual")
    generate("visual-cube-single-play-v0", 1, out, workers=2, episode_length=20, progress=False)
    return out


@pytest.mark.slow
def test_generated_visual_dataset_loads_through_ogbench(visual_dir):
    with np.load(visual_dir / "visual-cube-single-play-v0.npz") as f:
        raw = {k: f[k] for k in f.files}
    assert raw["observations"].shape == (20, 64, 64, 3) and raw["observations"].dtype == np.uint8
    assert set(raw) == {"observations", "actions", "terminals", "qpos", "qvel"}
    assert raw["qpos"].shape == (20, 21) and raw["terminals"].tolist() == [0] * 19 + [1]
    assert len({raw["observations"][i].tobytes() for i in range(20)}) > 10  # a moving scene
    out = in_fresh_python(f"""
import json, numpy as np
from gfp.render import configure_gl
configure_gl()
import ogbench
_, train, val = ogbench.make_env_and_datasets(
    "visual-cube-single-play-singletask-task1-v0", dataset_dir={str(visual_dir)!r})
first = np.load({str(visual_dir / "visual-cube-single-play-v0.npz")!r})["observations"][:19]
print(json.dumps({{
    "shape": list(train["observations"].shape), "dtype": str(train["observations"].dtype),
    "same_frames": bool(np.array_equal(train["observations"], first)),
    "next_is_next": bool(np.array_equal(train["next_observations"][:-1],
                                        train["observations"][1:])),
    "rewards": sorted(set(train["rewards"].tolist())), "val": list(val["observations"].shape)}}))
""")
    assert out["shape"] == [19, 64, 64, 3] and out["dtype"] == "uint8"
    assert out["same_frames"] and out["next_is_next"]
    assert set(out["rewards"]) <= {-1.0, 0.0}  # relabelled from qpos by OGBench
    assert out["val"] == [19, 64, 64, 3]


@pytest.mark.slow
def test_gfp_loads_visual_data_as_ogbench_does_holding_each_frame_once(visual_dir):
    out = in_fresh_python(f"""
import json, numpy as np
import gfp
from gfp.data.frame_layout import next_frames
task = "visual-cube-single-play-singletask-task1-v0"
ds = gfp.load_dataset(task, {str(visual_dir)!r})
import ogbench
_, train, val = ogbench.make_env_and_datasets(task, dataset_dir={str(visual_dir)!r})
res = {{}}
for name, mine, theirs in (("train", ds.train, train), ("val", ds.val, val)):
    res[name] = {{k: bool(np.array_equal(mine[k], theirs[k]))
                  for k in ("observations", "rewards", "masks", "terminals")}}
    res[name]["next"] = bool(np.array_equal(next_frames(mine), theirs["next_observations"]))
    res[name]["actions"] = float(np.abs(mine["actions"] - np.clip(theirs["actions"], -1 + 1e-5,
                                                                   1 - 1e-5)).max())
    res[name]["stored"] = [k for k in mine if k.endswith("observations")]
    res[name]["tails"] = len(mine["tail_frames"])
print(json.dumps(res))
""")
    for split in ("train", "val"):
        r = out[split]
        assert r["observations"] and r["next"] and r["rewards"] and r["masks"] and r["terminals"]
        assert r["actions"] == 0.0
        assert r["stored"] == ["observations"] and r["tails"] == 1  # one episode, one tail frame


SMALL = ["--preset", "cpu", "--actor-hidden-dims", "16", "--value-hidden-dims", "16",
         "--batch-size", "8", "--flow-steps", "2"]  # fmt: skip
SCHEDULE = ["--steps", "200", "--log-every", "100", "--checkpoint-every", "100", "--eval-every",
            "0", "--eval-episodes", "1"]  # fmt: skip
# Evaluation episodes of 3 steps (each visual step renders a frame), and a pause after each log
# row, so that a signal sent when a row appears lands at that step.
DRIVER = """
import time, gymnasium
import gfp.rundir as rd
make = gymnasium.make
def short(env_id, *a, **k):
    if str(env_id).startswith("visual-"):
        k["max_episode_steps"] = 3
    return make(env_id, *a, **k)
gymnasium.make = short
log_metrics = rd.RunDir.log_metrics
def slow_log_metrics(self, step, row):
    log_metrics(self, step, row)
    time.sleep(0.5)
rd.RunDir.log_metrics = slow_log_metrics
import sys
from gfp.cli import main
main(sys.argv[1:])
"""


def gfp_train(env, *args):
    cmd = [sys.executable, "-c", DRIVER, "train", *map(str, args)]
    pipe = subprocess.PIPE
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=pipe, stderr=pipe, text=True)


@pytest.mark.slow
def test_cli_trains_on_pixels_and_resumes_bit_identically_from_host_memory(visual_dir, tmp_path):
    from gfp.rundir import RunDir

    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
           "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0", "PYTHONPATH": str(ROOT)}  # fmt: skip
    task = ["--task", "visual-cube-single-play-singletask-task1-v0", "--dataset-dir", visual_dir]
    ref, out = tmp_path / "ref", tmp_path / "run"
    proc = gfp_train(env, *task, *SCHEDULE, *SMALL, "--out", ref)
    _, err = proc.communicate(timeout=1800)
    assert proc.returncode == 0, err[-3000:]
    config = RunDir(ref, create=False).read_config()
    assert config["agent_config"]["encoder"] == "impala_cpu"
    assert config["agent_config"]["frame_stack"] == 3 and config["agent_config"]["p_aug"] == 0.5
    assert (
        config["dataset"]["obs_shape"] == [64, 64, 3] and config["dataset"]["obs_dtype"] == "uint8"
    )
    assert "actor/success" in (ref / "eval.csv").read_text().splitlines()[0]

    # The interrupted run keeps its frames in host memory (prefetched minibatches): a chunk of 100
    # updates is one block there, the same program as the reference's device-resident frames.
    env[P.PLACEMENT_ENV] = "host"
    proc = gfp_train(env, *task, *SCHEDULE, *SMALL, "--out", out)
    deadline = time.monotonic() + 1800
    while (
        not (out / "metrics.csv").exists()
        or len((out / "metrics.csv").read_text().splitlines()) < 2
    ):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 143 and "stopped by SIGTERM at step 100" in err, err[-3000:]
    proc = gfp_train(env, "--resume", out)
    _, err = proc.communicate(timeout=1800)
    assert proc.returncode == 0, err[-3000:]
    assert (out / "params.msgpack").read_bytes() == (ref / "params.msgpack").read_bytes()
    (state, meta), (ref_state, _) = (RunDir(p, create=False).load_checkpoint() for p in (out, ref))
    assert meta["step"] == 200
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state), strict=True):
        np.testing.assert_array_equal(a, b)
