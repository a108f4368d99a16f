"""Action-chunk windows (gfp/engine/sequence.py; Q-chunking, Li, Zhou and Levine 2025): the window
math against a hand-built dataset and a NumPy re-implementation of the reference sampler's
sequence sampling on the same start rows, the device, host and disk state samplers, the pixel
frame windows (both stacks respect the episodes' starts) and the replay sampler's windows."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gfp.agents.base import BATCH_KEYS
from gfp.engine import frames as F
from gfp.engine import placement as P
from gfp.engine.host_arrays import HostArraySampler
from gfp.engine.replay import ReplaySampler, create_buffers
from gfp.engine.samplers import ArraySampler
from gfp.engine.sequence import (
    SequenceSampler,
    check_online,
    data_keys,
    gather_windows,
    window_batch,
)
from gfp.errors import ConfigError, DataError
from tests.test_pixels import find_shift, pixel_transitions

KEYS = (*BATCH_KEYS, "valid")
GAMMA = 0.5  # powers of two: the discounted sums are exact in float32


def config(h: int = 3, batch_size: int = 64, **kw) -> types.SimpleNamespace:
    base = dict(horizon=h, gamma=GAMMA, batch_size=batch_size, frame_stack=1, p_aug=0.0, aug_pad=0)
    return types.SimpleNamespace(**{**base, **kw})


def episodes() -> dict[str, np.ndarray]:
    """12 rows, episodes 0..3 | 4..8 | 9..11: row 3 terminates (mask 0), row 8 is a time limit
    (mask 1), row 11 terminates. Row r's observation is (r, -r), its next observation (r + 100,
    0), its reward r + 1, its action (r, 2r)."""
    r = np.arange(12, dtype=np.float32)
    terminals = np.isin(np.arange(12), [3, 8, 11]).astype(np.float32)
    masks = 1.0 - np.isin(np.arange(12), [3, 11]).astype(np.float32)
    return {
        "observations": np.stack([r, -r], 1),
        "actions": np.stack([r, 2 * r], 1),
        "rewards": r + 1,
        "masks": masks,
        "terminals": terminals,
        "next_observations": np.stack([r + 100, 0 * r], 1),
    }


def qc_sample_sequence(data, idxs, h, discount):
    """The reference implementation's sequence sampling (its Dataset.sample_sequence) on the
    start rows `idxs`, re-implemented in NumPy (float64), reduced to the batch gfp trains on:
    the last column of its cumulative rewards and masks, its valid, its actions, the last
    next observation and the observation at the start."""
    b = len(idxs)
    all_idxs = idxs[:, None] + np.arange(h)[None, :]
    r, m, t = (np.asarray(data[k], np.float64)[all_idxs] for k in ("rewards", "masks", "terminals"))
    rewards, masks, terminals = np.zeros((b, h)), np.ones((b, h)), np.zeros((b, h))
    valid = np.ones((b, h))
    rewards[:, 0], masks[:, 0], terminals[:, 0] = r[:, 0], m[:, 0], t[:, 0]
    powers = discount ** np.arange(h)
    for i in range(1, h):
        rewards[:, i] = rewards[:, i - 1] + r[:, i] * powers[i]
        masks[:, i] = np.minimum(masks[:, i - 1], m[:, i])
        terminals[:, i] = np.maximum(terminals[:, i - 1], t[:, i])
        valid[:, i] = 1.0 - terminals[:, i - 1]
    return {
        "observations": data["observations"][idxs],
        "actions": data["actions"][all_idxs],
        "rewards": rewards[:, -1],
        "masks": masks[:, -1],
        "valid": valid,
        "next_observations": data["next_observations"][all_idxs][:, -1],
    }


def window(data, idx, h, keys=KEYS):
    raw = gather_windows({k: jnp.asarray(v) for k, v in data.items()}, jnp.asarray(idx), h)
    return {k: np.asarray(v) for k, v in window_batch(raw, GAMMA, keys).items()}


def assert_batches_equal(a, b, keys=KEYS):
    for k in keys:
        np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=0, atol=0, err_msg=k)


# ---- the window math -----------------------------------------------------------------------------
def test_hand_built_windows_sum_discounted_rewards_and_mark_the_steps_after_a_terminal():
    data = episodes()
    got = window(data, np.array([0, 2, 7, 9]), 3)
    # rows 0,1,2: inside episode 0
    assert got["rewards"][0] == 1 + 0.5 * 2 + 0.25 * 3
    assert got["masks"][0] == 1 and got["valid"][0].tolist() == [1, 1, 1]
    # rows 2,3,4: row 3 terminates (mask 0); the step after it is not the episode's
    assert got["rewards"][1] == 3 + 0.5 * 4 + 0.25 * 5  # accumulated past the end, as QC does
    assert got["masks"][1] == 0 and got["valid"][1].tolist() == [1, 1, 0]
    np.testing.assert_array_equal(got["actions"][1], data["actions"][2:5])
    np.testing.assert_array_equal(got["observations"][1], data["observations"][2])
    np.testing.assert_array_equal(got["next_observations"][1], data["next_observations"][4])
    # rows 7,8,9: row 8 is a time limit: mask 1, but the window's last step is the next episode's
    assert got["masks"][2] == 1 and got["valid"][2].tolist() == [1, 1, 0]
    # rows 9,10,11: the last window of the data; row 11's terminal is its own last step
    assert got["masks"][3] == 0 and got["valid"][3].tolist() == [1, 1, 1]
    assert got["valid"].dtype == np.float32 and got["rewards"].shape == (4,)


@pytest.mark.parametrize("h", [2, 3, 5])
def test_every_window_equals_the_reference_sequence_sampling(h):
    data = episodes()
    idx = np.arange(len(data["actions"]) - h + 1)  # every start there is
    ours, qc = window(data, idx, h), qc_sample_sequence(data, idx, h, GAMMA)
    for k in KEYS:
        np.testing.assert_allclose(ours[k], qc[k], rtol=1e-6, err_msg=k)
    assert ours["actions"].shape == (len(idx), h, 2) and ours["valid"].shape == (len(idx), h)


def test_terminals_are_asked_for_by_name_and_next_actions_are_refused():
    got = window(episodes(), np.array([2, 4]), 3, keys=(*KEYS, "terminals"))
    assert got["terminals"].tolist() == [1, 0]
    assert "terminals" in data_keys(BATCH_KEYS, 3) and "valid" not in data_keys(KEYS, 3)
    assert data_keys((*BATCH_KEYS, "next_actions"), 1) == (*BATCH_KEYS, "next_actions")
    with pytest.raises(ConfigError, match="horizon = 3.*next_actions"):
        data_keys((*BATCH_KEYS, "next_actions"), 3)


# ---- the samplers ------------------------------------------------------------------------------
def device_minibatches(sampler, cfg, rng, steps):
    """`steps` minibatches along the key chain an update leaves (Agent.update keeps the first
    half of its key), with their starts re-drawn as ArraySampler draws rows."""
    out, starts = [], []
    n = sampler.data["actions"].shape[0]
    for _ in range(steps):
        batch, upd, _ = sampler.minibatch(cfg, sampler.data, rng)
        _, batch_key = jax.random.split(rng)
        starts.append(np.asarray(jax.random.randint(batch_key, (cfg.batch_size,), 0, n - 2)))
        out.append({k: np.asarray(v) for k, v in batch.items()})
        rng = jax.random.split(upd)[0]
    return out, starts


def test_the_device_sampler_draws_starts_as_rows_are_drawn_and_never_past_the_end():
    data, cfg = episodes(), config(3, batch_size=512)
    sampler = P.make_sampler(data, KEYS, horizon=3)
    assert isinstance(sampler, SequenceSampler) and "terminals" in sampler.data
    keys = sampler.keys()
    assert keys >= set(KEYS) and "next_actions" not in keys
    batches, starts = device_minibatches(sampler, cfg, jax.random.PRNGKey(0), 2)
    for batch, idx in zip(batches, starts, strict=True):
        assert set(batch) == set(KEYS)
        np.testing.assert_array_equal(batch["observations"][:, 0], idx)
        assert idx.min() == 0 and idx.max() == 12 - 3  # every start, none past N - h
        assert_batches_equal(batch, window(data, idx, 3))
        for k, v in qc_sample_sequence(data, idx, 3, GAMMA).items():
            np.testing.assert_allclose(batch[k], v, rtol=1e-6, err_msg=k)


def test_horizon_one_keeps_todays_samplers():
    data = episodes()
    assert isinstance(P.make_sampler(data, BATCH_KEYS), ArraySampler)
    assert isinstance(P.make_sampler(data, BATCH_KEYS, horizon=1), ArraySampler)
    host = P.make_sampler(data, BATCH_KEYS, "host", horizon=1)
    assert isinstance(host, HostArraySampler) and host.horizon == 1
    assert host.keys() == set(BATCH_KEYS)
    frames = P.make_sampler(pixel_transitions(), BATCH_KEYS, horizon=1)
    assert frames.horizon == 1 and frames.keys() == {*BATCH_KEYS, *F.FRAME_KEYS}


def test_the_agents_sampler_follows_its_config_and_carries_what_it_reads():
    agent = types.SimpleNamespace(batch_keys=KEYS, config=config(4))
    sampler = P.agent_sampler(episodes(), agent)
    assert isinstance(sampler, SequenceSampler) and sampler.horizon == 4
    assert set(sampler.for_agent(agent).data) == {*BATCH_KEYS, "terminals"}
    with pytest.raises(ValueError, match="windows of 4 rows; the agent's horizon is 3"):
        sampler.minibatch(config(3), sampler.data, jax.random.PRNGKey(0))


def test_windows_need_the_episodes_ends_and_one_environment_online():
    data = {k: v for k, v in episodes().items() if k != "terminals"}
    with pytest.raises(DataError, match="horizon = 3: .*terminals"):
        P.make_sampler(data, KEYS, horizon=3)
    with pytest.raises(ConfigError, match="online_envs = 2 with horizon = 3"):
        check_online(3, 2)
    check_online(1, 4)
    check_online(3, 1)


@pytest.mark.parametrize("placement", ["host", "disk"])
def test_host_and_disk_windows_equal_the_devices(placement, tmp_path):
    data, cfg = episodes(), config(3, batch_size=16)
    device = P.make_sampler(data, KEYS, horizon=3)
    fed = P.make_sampler(data, KEYS, placement, horizon=3, cache_dir=tmp_path)
    assert isinstance(fed, HostArraySampler) and fed.placement == placement
    rngs = np.stack([np.asarray(jax.random.PRNGKey(s)) for s in (0, 1)])
    blocks = list(fed.feed(rngs, 5, cfg))
    assert sum(steps for steps, _ in blocks) == 5
    block = jax.tree.map(np.asarray, blocks[0][1])
    assert block["actions"].shape == (2, 5, 16, 3, 2) and "next_actions" not in block
    for s in range(2):
        expected, _ = device_minibatches(device, cfg, jnp.asarray(rngs[s]), 5)
        for step in range(5):
            one = jax.tree.map(lambda x, s=s, step=step: jnp.asarray(x[s, step]), block)
            batch, _, _ = fed.minibatch(cfg, None, jnp.asarray(rngs[s]), one)
            assert_batches_equal(batch, expected[step])


# ---- pixels ------------------------------------------------------------------------------------
def expected_stacks(tr, idx, k, h):
    """The raw row of every frame of the observation stack at t and of the next-observation
    stack at s = t + h - 1, computed from the episodes: frames before an episode's first row
    repeat it."""
    lengths = np.diff(np.flatnonzero(np.concatenate([[1], tr["terminals"]])))  # per episode
    episode = np.repeat(np.arange(len(lengths)), lengths)
    first = np.concatenate([[0], np.cumsum(lengths)[:-1]])[episode]
    raw = np.arange(len(episode)) + episode  # pixel_transitions: transition t's raw row

    def stack(t, frames):
        return [raw[max(t - j, first[t])] for j in range(frames - 1, -1, -1)]

    obs = [stack(t, k) for t in idx]
    nxt = [stack(t + h - 1, k)[1:] + [raw[t + h - 1] + 1] for t in idx]
    return np.array(obs), np.array(nxt)


def frame_rows(stacked, k):
    """The raw row of each of the K frames stacked in observations (B, H, W, K * 3)."""
    return np.asarray(stacked)[:, 0, 0, ::3][:, :k].astype(int)


@pytest.mark.parametrize("k", [1, 3])
def test_pixel_windows_stack_the_first_and_the_last_rows_within_their_episodes(k):
    tr = pixel_transitions((4, 3, 5), size=4)  # transitions 0..3 | 4..6 | 7..11
    h, cfg = 3, config(3, batch_size=256, frame_stack=k)
    device = P.frame_sampler(tr, KEYS, placement="device", horizon=h)
    host = P.frame_sampler(tr, KEYS, placement="host", horizon=h)
    assert isinstance(host, F.HostFrameSampler) and "terminals" in device.data
    rng = jax.random.PRNGKey(1)
    batch, _, _ = device.minibatch(cfg, device.data, rng)
    _, _, k_batch, _ = F.split_key(rng)
    idx = np.asarray(F.draw_rows(k_batch, 12 - h + 1, cfg.batch_size))
    assert idx.min() == 0 and idx.max() == 12 - h
    obs, nxt = expected_stacks(tr, idx, k, h)
    np.testing.assert_array_equal(frame_rows(batch["observations"], k), obs)
    np.testing.assert_array_equal(frame_rows(batch["next_observations"], k), nxt)
    assert batch["observations"].shape == (256, 4, 4, 3 * k)
    state = {key: v for key, v in tr.items() if key not in ("observations", "next_observations")}
    assert_batches_equal(batch, window(state, idx, h, ("actions", "rewards", "masks", "valid")),
                         ("actions", "rewards", "masks", "valid"))  # fmt: skip
    # the host gathers the same windows from the same key chain
    (steps, fed), *_ = host.feed(np.asarray(rng)[None], 1, cfg)
    one = jax.tree.map(lambda x: x[0, 0], fed)
    from_host, _, _ = host.minibatch(cfg, None, rng, one)
    assert_batches_equal(from_host, batch)


def test_pixel_windows_shift_all_their_frames_alike():
    tr = pixel_transitions((30, 25), size=8)
    rng = np.random.default_rng(0)
    for key in ("observations", "next_observations"):
        tr[key] = rng.integers(0, 256, tr[key].shape, dtype=np.uint8)
    pad, key = 2, jax.random.PRNGKey(3)
    sampler = P.frame_sampler(tr, KEYS, placement="device", horizon=2)
    plain, _, _ = sampler.minibatch(config(2, 16, frame_stack=2), sampler.data, key)
    cfg = config(2, 16, frame_stack=2, p_aug=1.0, aug_pad=pad)
    shifted, _, _ = sampler.minibatch(cfg, sampler.data, key)  # the same rows, shifted
    both = [
        np.concatenate([b["observations"], b["next_observations"]], -1) for b in (plain, shifted)
    ]
    padded = np.pad(both[0], ((0, 0), (pad, pad), (pad, pad), (0, 0)), "edge")
    shifts = []
    for i in range(16):
        whole = find_shift(padded[i], both[1][i], pad)
        assert len(whole) == 1  # one shift explains the 2K frames of both stacks at once
        shifts.append(whole[0])
    assert len(set(shifts)) > 3


# ---- the replay sampler ----------------------------------------------------------------------
def buffers_of(data, capacity, filled):
    """One seed's buffer holding the first `filled` rows of `data` (the rest empty)."""
    start = {k: v[:filled] for k, v in data.items()}
    return create_buffers(start, capacity, 1)


def test_replay_windows_come_from_the_filled_rows_only():
    data, cfg = episodes(), config(3, batch_size=512)
    keys = data_keys(KEYS, 3)
    buffers = buffers_of({k: data[k] for k in keys}, capacity=20, filled=9)
    sampler = ReplaySampler(buffers, {}, False, 3, KEYS)
    assert sampler.keys() >= set(KEYS)
    one = jax.tree.map(lambda x: x[0], buffers)
    rng = jax.random.PRNGKey(0)
    batch, _, _ = sampler.minibatch(cfg, {"buffer": one, "offline": {}}, rng)
    idx = np.asarray(batch["observations"][:, 0]).astype(int)
    assert idx.min() == 0 and idx.max() == 9 - 3  # never into the empty rows 9..19
    assert_batches_equal(batch, window(data, idx, 3))


def test_balanced_replay_windows_take_half_from_the_dataset():
    data, cfg = episodes(), config(2, batch_size=256)
    keys = data_keys(KEYS, 2)
    online = {k: data[k] for k in keys}
    online["observations"] = online["observations"] + 1000.0  # tells the halves apart
    buffers = buffers_of(online, capacity=30, filled=6)
    offline = {k: jnp.asarray(data[k]) for k in keys}
    sampler = ReplaySampler(buffers, offline, True, 2).select(KEYS)
    one = jax.tree.map(lambda x: x[0], sampler.buffers)
    batch, _, _ = sampler.minibatch(cfg, {"buffer": one, "offline": sampler.offline},
                                    jax.random.PRNGKey(2))  # fmt: skip
    obs = np.asarray(batch["observations"][:, 0])
    off, on = obs[:128], obs[128:] - 1000
    assert (off < 1000).all() and off.max() == 12 - 2
    assert on.min() == 0 and on.max() == 6 - 2
    assert_batches_equal(jax.tree.map(lambda x: x[:128], batch), window(data, off.astype(int), 2))
