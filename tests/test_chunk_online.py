"""Online collection with action chunks (gfp/engine/online.py; Q-chunking, Li, Zhou and Levine
2025, Sec. 4: chunks executed open loop): the environment receives exactly each chunk's actions
in order, a new chunk is planned after chunk_len steps and after an episode's end, the buffer's
rows carry terminals for the replay sampler's windows, one environment per seed, and a resumed
run ends its interrupted episode in the buffer (terminals) across every later resume and in the
run directory's replay segments."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gfp.agents.base import BATCH_KEYS, TrainState
from gfp.engine.chunk import init_states
from gfp.engine.online import Collector
from gfp.engine.placement import make_sampler
from gfp.errors import ConfigError
from gfp.rundir import RunDir
from tests.test_incremental_checkpoints import checkpoint
from tests.test_online import ACT, D, ScriptedPool, dataset


class RecordingPool(ScriptedPool):
    """The scripted pool (episodes: even ones terminate at t = 3, odd ones are truncated at
    t = 4), recording every action it is sent."""

    def __init__(self):
        super().__init__()
        self.sent: list[tuple[int, ...]] = []

    def step(self, jobs):
        self.sent += [tuple(int(x) for x in np.asarray(a)) for _, a in jobs]
        return super().step(jobs)


class ChunkAgent:
    """A stand-in agent with the chunking interface (horizon, chunk_len, env_action_dim): at the
    observation (slot, t, episode) its chunk's step i is the action (10 t + i, episode), so the
    actions an environment receives say where their chunk was planned. Its update checks that it
    gets h-step windows."""

    name = "chunk_fake"
    policies = ("actor",)

    def __init__(self, horizon: int = 3, chunking: bool = True, batch_size: int = 8):
        self.config = types.SimpleNamespace(
            horizon=horizon, action_chunking=chunking, gamma=0.5, batch_size=batch_size
        )
        self.env_action_dim = ACT
        self.chunk_len = horizon if chunking else 1
        self.action_dim = self.chunk_len * ACT
        self.batch_keys = (*BATCH_KEYS, "valid") if horizon > 1 else BATCH_KEYS

    def init(self, rng):
        zero = jnp.zeros((), jnp.float32)
        return TrainState({"w": zero}, {}, {}, rng, jnp.zeros((), jnp.int32))

    def update(self, state, batch):
        h, b = self.config.horizon, self.config.batch_size
        if h > 1:
            assert batch["actions"].shape == (b, h, ACT) and batch["valid"].shape == (b, h)
        assert batch["rewards"].shape == (b,) and batch["masks"].shape == (b,)
        loss = jnp.mean(batch["rewards"]) + jnp.mean(batch.get("valid", 0.0))
        w = state.params["w"] + loss
        rng = jax.random.split(state.rng)[0]
        return state.replace(params={"w": w}, rng=rng, step=state.step + 1), {"loss": loss}

    def act(self, params, obs, rng, policy="actor", explore=False):
        t, episode = obs[..., 1], obs[..., 2]
        steps = [jnp.stack([10 * t + i, episode], -1) for i in range(self.chunk_len)]
        return jnp.concatenate(steps, -1)


def collector(agent, *, saved=(), balanced=False, n_envs=1):
    data = make_sampler(dataset(), agent.batch_keys, horizon=agent.config.horizon).data
    col = Collector(agent, RecordingPool(), data, seeds=(0,), n_envs=n_envs, capacity=1000,
                    balanced=balanced, saved=saved)  # fmt: skip
    return col, init_states(agent, [0])


def run(col, states, steps):
    states = col.reset(states)
    for _ in range(steps):
        states, _, health, _ = col.step(states, [True], 0)
        assert int(health["first_bad"][0]) == -1
    return states


def rows(col):
    return {k: np.asarray(x[0]) for k, x in col.buffers.data.items()}


@pytest.mark.parametrize("balanced", [False, True])
def test_chunks_run_open_loop_and_are_replanned_after_chunk_len_steps_and_episode_ends(balanced):
    col, states = collector(ChunkAgent(3), balanced=balanced)
    states = run(col, states, 12)
    sent = col.pool.sent
    assert sent == [
        (0, 0), (1, 0), (2, 0),  # episode 0: one chunk planned at t = 0, terminated at t = 3
        (0, 1), (1, 1), (2, 1),  # episode 1: a chunk at t = 0 ...
        (30, 1),  # ... a new one at t = 3 after 3 steps; truncated at t = 4: the rest dropped
        (0, 2), (1, 2), (2, 2),  # episode 2 starts with a fresh chunk
        (0, 3), (1, 3),
    ]  # fmt: skip
    r, base = rows(col), 0 if balanced else D
    np.testing.assert_array_equal(r["actions"][base : base + 12], np.array(sent, np.float32))
    ends = np.zeros(12, np.float32)
    ends[[2, 6, 9]] = 1  # terminated, truncated, terminated
    np.testing.assert_array_equal(r["terminals"][base : base + 12], ends)
    masks = np.ones(12, np.float32)
    masks[[2, 9]] = 0  # only a termination cuts the bootstrap
    np.testing.assert_array_equal(r["masks"][base : base + 12], masks)
    assert "valid" not in r and "next_actions" not in r
    assert int(np.asarray(states.step)[0]) == 12  # one update (of windows) per step


@pytest.mark.parametrize("agent", [ChunkAgent(1), ChunkAgent(3, chunking=False)])
def test_one_action_per_step_is_planned_at_every_step(agent):
    col, states = collector(agent)
    run(col, states, 5)
    assert col.pool.sent == [(0, 0), (10, 0), (20, 0), (0, 1), (10, 1)]
    assert ("terminals" in rows(col)) == (agent.config.horizon > 1)


def test_chunks_collect_with_one_environment_per_seed():
    with pytest.raises(ConfigError, match="online_envs = 2 with horizon = 3"):
        collector(ChunkAgent(3), n_envs=2)
    collector(ChunkAgent(1), n_envs=2)  # single steps: any number of environments


def test_a_resume_ends_the_interrupted_episode_in_the_buffer_every_time(tmp_path):
    agent = ChunkAgent(3)
    col, states = collector(agent)
    run(col, states, 5)  # episode 0 (3 steps) ended, episode 1 two steps in: rows 0..4 online
    arrays, meta = col.payload(0)
    assert meta["cuts"] == [] and arrays["rows"]["terminals"][4] == 0
    # A checkpoint without the pending actions (written before resumes replayed the interrupted
    # episode, or one whose replay fails) cuts the episode there.
    meta = {k: v for k, v in meta.items() if k != "pending"}
    again, states = collector(agent, saved=[(arrays, meta)])
    assert rows(again)["terminals"][D + 4] == 1  # the cut, like a time limit: mask 1
    assert rows(again)["masks"][D + 4] == 1
    assert again.counters(0)["cuts"] == [4]
    run(again, states, 2)  # a fresh episode (the fresh pool's 0th), planned afresh at t = 0
    assert again.pool.sent == [(0, 0), (1, 0)]
    # A later resume from rows saved before the cut (an earlier replay segment) marks it again,
    # as well as its own interrupted episode.
    arrays2, meta2 = again.payload(0)
    arrays2 = {"rows": {k: np.array(v) for k, v in arrays2["rows"].items()}}
    arrays2["rows"]["terminals"][4] = 0
    # With its pending actions the interrupted episode is replayed (the scripted pool's fresh
    # episode 0 gives the observations the buffer holds) and goes on: no new cut.
    exact, _ = collector(agent, saved=[(arrays2, meta2)])
    np.testing.assert_array_equal(np.flatnonzero(rows(exact)["terminals"][D:]), [2, 4])
    assert exact.counters(0)["cuts"] == [4] and "resumed where it stopped" in exact.restarted[0]
    assert exact.slots[0][0].length == 2 and exact.pool.sent == [(0, 0), (1, 0)]  # the replay
    meta2 = {k: v for k, v in meta2.items() if k != "pending"}
    third, _ = collector(agent, saved=[(arrays2, meta2)])
    np.testing.assert_array_equal(np.flatnonzero(rows(third)["terminals"][D:]), [2, 4, 6])
    assert third.counters(0)["cuts"] == [4, 6]
    # the run directory's replay segments carry the terminals
    folder = RunDir(tmp_path)
    checkpoint(folder, third, 1)
    state, saved = RunDir(tmp_path, create=False).load_checkpoint()
    kept = state["online"]["rows"]
    assert set(kept) == set(third.buffers.data) and "terminals" in kept
    np.testing.assert_array_equal(np.flatnonzero(kept["terminals"]), [2, 4, 6])
    assert saved["online"]["cuts"] == [4, 6]
    folder.close()
