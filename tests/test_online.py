"""Offline-to-online fine-tuning (gfp/engine/online.py): the replay buffer on the device, the
collection loop against a scripted environment pool, and `gfp train --online-steps` end to end
(the switch to --eta-online, the phase columns, the summary, and SIGKILL + --resume in the online
phase)."""

from __future__ import annotations

import csv
import json
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gfp.agents import make_agent
from gfp.agents.configs import CONFIGS
from gfp.cli import main
from gfp.engine.chunk import init_states
from gfp.engine.driver import drive
from gfp.engine.online import Collector, make_collect_step, make_first_actions
from gfp.engine.placement import make_sampler
from gfp.engine.replay import (
    add_rows,
    create_buffers,
    held_rows,
    restore_rows,
    sample_training_batch,
)
from gfp.job import job_record, make_train_job
from gfp.rundir import RunDir
from tests.conftest import TINY_TASK
from tests.test_resume import finish, gfp_train, jax_cache  # noqa: F401 (jax_cache: a fixture)

OBS, ACT, D = 3, 2, 10  # the scripted environment's sizes, rows in the synthetic dataset
TINY = dict(actor_hidden_dims=(8,), value_hidden_dims=(8,), batch_size=8)


class ScriptedPool:
    """Stands in for gfp.evaluate.EnvPool. Slot k's observation is (k, t, episode); even episodes
    terminate at t = 3, odd ones are truncated (time limit) at t = 4; the reward is t."""

    def __init__(self):
        self.t: dict[int, int] = {}
        self.episode: dict[int, int] = {}
        self.reset_seeds: list[int] = []

    def obs(self, k: int) -> np.ndarray:
        return np.array([k, self.t[k], self.episode[k]], np.float64)

    def reset(self, jobs):
        for k, seed in jobs:
            self.t[k], self.episode[k] = 0, self.episode.get(k, -1) + 1
            self.reset_seeds.append(seed)
        return [(k, self.obs(k)) for k, _ in jobs]

    def step(self, jobs):
        out = []
        for k, _ in jobs:
            self.t[k] += 1
            t, even = self.t[k], self.episode[k] % 2 == 0
            terminated, truncated = even and t == 3, (not even) and t == 4
            out.append((k, (self.obs(k), float(t), terminated, truncated, float(terminated))))
        return out


def dataset(rows: int = D) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "observations": rng.normal(size=(rows, OBS)).astype(np.float32),
        "actions": rng.uniform(-1, 1, (rows, ACT)).astype(np.float32),
        "rewards": np.full(rows, -7.0, np.float32),  # no online reward is negative
        "masks": np.ones(rows, np.float32),
        "terminals": (np.arange(rows) % 5 == 4).astype(np.float32),
        "next_observations": rng.normal(size=(rows, OBS)).astype(np.float32),
    }


def collector(agent_name="bc", *, n_envs=1, seeds=(0,), balanced=False, capacity=1000, **kw):
    agent = make_agent(agent_name, CONFIGS[agent_name](**TINY), obs_dim=OBS, action_dim=ACT)
    data = make_sampler(dataset(), agent.batch_keys).data
    col = Collector(agent, ScriptedPool(), data, seeds=seeds, n_envs=n_envs, capacity=capacity,
                    balanced=balanced, **kw)  # fmt: skip
    return col, init_states(agent, list(seeds))


def collect(col: Collector, states, steps: int):
    """`steps` collection steps for every seed; returns the states and the finished episodes."""
    states, episodes = col.reset(states), []
    for _ in range(steps):
        states, _, health, done = col.step(states, [True] * len(col.seeds), 0)
        assert int(health["first_bad"][0]) == -1
        episodes += done
    return states, episodes


def host(col: Collector, i: int = 0) -> dict[str, np.ndarray]:
    return {k: np.asarray(x[i]) for k, x in col.buffers.data.items()}


@pytest.mark.parametrize("n_envs", [1, 2])
def test_buffer_starts_as_the_dataset_and_grows_one_row_per_env_step(n_envs):
    col, states = collector(n_envs=n_envs)
    data = dataset()
    assert int(col.buffers.size[0]) == D and int(col.buffers.pointer[0]) == D
    before = host(col)
    for key in col.buffers.data:
        np.testing.assert_array_equal(before[key][:D], data[key])
    states = col.reset(states)
    for k in range(1, 6):
        states = col.step(states, [True], 0)[0]
        assert int(col.buffers.size[0]) == D + k * n_envs == D + col.added[0]
    after = host(col)
    for key in col.buffers.data:  # the dataset rows are untouched, nothing past the new rows
        np.testing.assert_array_equal(after[key][:D], data[key])
        assert not after[key][D + 5 * n_envs :].any()
    # row D + n_envs * s + j is env j's transition of collection step s, in order
    obs = after["observations"][D : D + 5 * n_envs].reshape(5, n_envs, OBS)
    assert (obs[:, :, 0] == np.arange(n_envs)).all()  # slot
    assert (obs[0, :, 1] == 0).all() and (obs[1, :, 1] == 1).all()  # t


def test_masks_follow_terminated_and_truncated_and_next_actions_chain():
    col, states = collector("rebrac", reward_shift=-1.0)
    states, episodes = collect(col, states, 7)  # episode 0: 3 steps (terminated), 1: 4 (truncated)
    rows = {k: v[D : D + 7] for k, v in host(col).items()}
    np.testing.assert_array_equal(rows["masks"], [1, 1, 0, 1, 1, 1, 1])  # 0 only when terminated
    np.testing.assert_array_equal(rows["rewards"], np.array([1, 2, 3, 1, 2, 3, 4]) - 1.0)
    np.testing.assert_array_equal(rows["observations"][:, 1], [0, 1, 2, 0, 1, 2, 3])
    np.testing.assert_array_equal(rows["next_observations"][:, 1], [1, 2, 3, 1, 2, 3, 4])
    # a row's next action is the action taken at its next observation; its own at an episode end
    a, na = rows["actions"], rows["next_actions"]
    np.testing.assert_array_equal(na[[0, 1, 3, 4, 5]], a[[1, 2, 4, 5, 6]])
    np.testing.assert_array_equal(na[[2, 6]], a[[2, 6]])
    assert [(e["episode"], e["length"], e["return"], e["success"]) for _, e in episodes] == [
        (0, 3, 6.0, 1.0),
        (1, 4, 10.0, 0.0),
    ]  # returns as the environment gives them (unshifted)
    assert len(set(col.pool.reset_seeds)) == 3  # every episode its own reset seed


def test_balanced_sampling_draws_half_and_half():
    col, states = collector(balanced=True)
    assert int(col.buffers.size[0]) == 0  # a separate buffer of online rows only
    states, _ = collect(col, states, 3)
    assert int(col.buffers.size[0]) == 3
    buffer = jax.tree.map(lambda x: x[0], col.buffers)
    for seed in range(5):
        batch = sample_training_batch(
            buffer, col.sampler.offline, jax.random.PRNGKey(seed), 33, True
        )
        r = np.asarray(batch["rewards"])
        assert (r[:16] == -7).all() and (r[16:] > 0).all() and len(r) == 33


def test_unbalanced_sampling_reads_only_filled_rows():
    init = {"actions": np.zeros((4, 1), np.float32), "rewards": np.zeros(4, np.float32)}
    buf = jax.tree.map(lambda x: x[0], create_buffers(init, 1000, 1))
    buf = buf.replace(data={**buf.data, "rewards": buf.data["rewards"].at[4:].set(9.0)})
    buf = add_rows(buf, {"actions": np.ones((1, 1)), "rewards": np.ones(1)})
    seen = np.concatenate([
        np.asarray(sample_training_batch(buf, {}, jax.random.PRNGKey(s), 64, False)["rewards"])
        for s in range(10)
    ])  # fmt: skip
    assert set(seen.tolist()) == {0.0, 1.0}  # rows 0..4, never the empty ones (9)


def test_full_buffer_wraps_and_a_checkpoint_restores_it_exactly():
    col, states = collector(capacity=D + 3, n_envs=2)
    states, _ = collect(col, states, 8)  # 16 rows into 3 free places: wraps over the dataset
    assert int(col.buffers.size[0]) == D + 3 and int(col.buffers.pointer[0]) == (D + 16) % (D + 3)
    arrays, meta = col.payload(0)
    assert len(arrays["rows"]["actions"]) == D + 3  # the buffer holds only online rows now
    fresh, _ = collector(capacity=D + 3, n_envs=2, saved=[(arrays, meta)])
    for a, b in zip(jax.tree.leaves(col.buffers), jax.tree.leaves(fresh.buffers), strict=True):
        np.testing.assert_array_equal(a, b)
    # and part-way, before any wrap
    col, states = collector(n_envs=1)
    states, _ = collect(col, states, 2)
    rows = held_rows(col.buffers, 0, 2)
    initial = make_sampler(dataset(), col.agent.batch_keys).data
    back = restore_rows(create_buffers(initial, 1000, 1), 0, rows, 2)
    for a, b in zip(jax.tree.leaves(col.buffers), jax.tree.leaves(back), strict=True):
        np.testing.assert_array_equal(a, b)


def test_resumed_collector_restarts_the_episode_and_keeps_its_rows():
    col, states = collector()
    states, _ = collect(col, states, 5)  # episode 0 (3 steps) done, episode 1 two steps in
    arrays, meta = col.payload(0)
    assert meta["added"] == 5 and meta["envs"] == [
        {"episode": 1, "start": 3, "queue": [], "lost": []}
    ]
    assert np.array_equal(meta["pending"], col.actions[0])  # the actions of the next step
    # The scripted pool is no simulator a reset seed brings back (a fresh pool's episodes count
    # from 0), so the replay of the interrupted episode fails its first observation and the
    # episode is cut instead (the exact replay: tests/test_incremental_checkpoints.py).
    again, states2 = collector(saved=[(arrays, meta)])
    assert again.restarted == ["seed 0 env 0: episode 1 restarted, its 2 transitions so far kept"]
    states2, _ = collect(again, states2, 1)
    rows = host(again)
    np.testing.assert_array_equal(
        rows["observations"][D : D + 5], host(col)["observations"][D : D + 5]
    )
    assert rows["observations"][D + 5, 1] == 0  # a fresh episode after the kept ones
    assert again.slots[0][0].episode == 2 and again.added == [6]


def test_the_online_phase_sits_out_a_seed_that_is_ahead():
    col, states = collector(seeds=(0, 1))
    logged = []

    def on_log(step, rows):
        logged.append((step, rows[1] is not None))

    states = drive(col, states, at=[0, 3], end=5, log_every=1, progress=False, on_log=on_log)
    assert col.added == [5, 2]  # seed 1 stepped only from step 3 on
    assert logged == [(1, False), (2, False), (3, False), (4, True), (5, True)]
    assert [int(s) for s in np.asarray(states.step)] == [5, 2]


# ---- end to end: gfp train --online-steps -------------------------------------------------------
SMALL = ["--actor-hidden-dims", "16", "16", "--value-hidden-dims", "16", "16", "--batch-size", "16",
         "--flow-steps", "2"]  # fmt: skip


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_online_phase_switches_to_eta_online_at_the_first_online_step(tiny_ogbench_dir, tmp_path):
    """eta = 1000 offline (g close to 1/2), eta_online = 0 (g = 1 exactly, the plain flow BC
    loss): the per-update log rows show the switch between steps 4 and 5."""
    out = tmp_path / "run"
    main(["train", "--task", TINY_TASK, "--dataset-dir", str(tiny_ogbench_dir), *SMALL,
          "--steps", "4", "--online-steps", "4", "--log-every", "1", "--eval-every", "0",
          "--eval-episodes", "1", "--eta", "1000", "--eta-online", "0",
          "--out", str(out)])  # fmt: skip
    rows = read_csv(out / "metrics.csv")
    assert [(int(r["step"]), r["phase"]) for r in rows] == [
        (s, "offline" if s <= 4 else "online") for s in range(1, 9)
    ]
    g = [float(r["vabc/g_mean"]) for r in rows]
    assert all(abs(x - 0.5) < 0.05 for x in g[:4]) and g[4:] == [1.0] * 4
    evals = read_csv(out / "eval.csv")
    assert [(int(r["step"]), r["phase"]) for r in evals] == [(4, "offline"), (8, "online")]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["online_steps"] == 4 and summary["explore/episodes"] == 0
    for phase in ("offline", "online"):
        assert f"{phase}/actor/success_final" in summary
    config = json.loads((out / "config.json").read_text())
    assert (config["online_steps"], config["eta_online"], config["agent_config"]["eta"]) == (
        4, 0.0, 1000.0
    )  # fmt: skip
    _, meta = RunDir(out, create=False).load_checkpoint()
    assert meta["step"] == 8 and meta["online"]["added"] == 4


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--online-steps", "-1"], "online_steps = -1 must be >= 0"),
        (["--online-steps", "3", "--online-envs", "2"], "must be a multiple of online_envs = 2"),
        (["--eta-online", "0.1"], "eta_online set without online_steps"),
        (["--online-steps", "4", "--eta-online", "-1"], "eta_online = -1.0 is out of range"),
        (["--agent", "fql", "--online-steps", "4", "--eta-online", "1"], "agent 'fql' has none"),
        (["--online-steps", "4", "--online-envs", "4", "--buffer-size", "2"], "buffer_size = 2"),
    ],
)
def test_bad_online_settings_are_one_line(flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--task", TINY_TASK, "--steps", "10", "--out", str(tmp_path), *flags])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gfp: error: ") and "\n" not in err and message in err


@pytest.mark.parametrize(
    ("recorded", "flags", "message"),
    [
        ({"online_steps": 40}, ["--online-steps", "80"], "--online-steps 80 (run: 40)"),
        ({}, ["--online-steps", "10"], "--online-steps 10 (run: 0)"),  # an offline run
        ({"online_steps": 40}, ["--online-envs", "2"], "--online-envs 2 (run: 1)"),
    ],
)
def test_resume_refuses_other_online_settings(recorded, flags, message, tmp_path, capsys):
    from tests.test_cli import write_run_config

    write_run_config(tmp_path / "run", **recorded)
    with pytest.raises(SystemExit) as e:
        main(["train", "--resume", str(tmp_path / "run"), *flags])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_an_offline_run_records_no_online_settings():
    offline = job_record(make_train_job(TINY_TASK, steps=10))
    online = job_record(make_train_job(TINY_TASK, steps=10, online_steps=4))
    assert "online_steps" not in offline and "buffer_size" not in offline
    assert online["online_steps"] == 4 and online["config_hash"] != offline["config_hash"]


# SIGKILL just before the collection step at global step 230: after the step-200 checkpoint and
# after the end of exploration episode 0 (step 220, 200 environment steps after step 20).
KILL_AT_230 = """
import os, signal
import gfp.engine.online as online
step = online.Collector.step
def killing_step(self, states, active, at):
    if at == 230:
        os.kill(os.getpid(), signal.SIGKILL)
    return step(self, states, active, at)
online.Collector.step = killing_step
"""


@pytest.mark.slow
def test_sigkill_in_the_online_phase_then_resume_loses_and_duplicates_nothing(
    tiny_ogbench_dir,
    tmp_path,
    jax_cache,  # noqa: F811
):
    out = tmp_path / "run"
    n, m = 20, 400
    args = ["--task", TINY_TASK, "--dataset-dir", tiny_ogbench_dir, *SMALL, "--steps", n,
            "--online-steps", m, "--log-every", "50", "--checkpoint-every", "100",
            "--eval-every", "0", "--eval-episodes", "1", "--out", out]  # fmt: skip
    code, _, err = finish(gfp_train(jax_cache, *args, driver=KILL_AT_230))
    assert code == -signal.SIGKILL, err[-3000:]
    assert [int(r["step"]) for r in read_csv(out / "explore.csv")] == [220]  # written, then lost
    killed, meta = RunDir(out, create=False).load_checkpoint()
    assert meta["step"] == 200 and meta["online"]["added"] == 180
    assert len(killed["online"]["rows"]["actions"]) == 180

    code, text, err = finish(gfp_train(jax_cache, "--resume", out))
    assert code == 0, err[-3000:]
    assert "seed 0 env 0: episode 0 resumed where it stopped (180 steps replayed" in text
    state, meta = RunDir(out, create=False).load_checkpoint()
    rows = state["online"]["rows"]
    assert meta["step"] == n + m and meta["online"]["added"] == m == len(rows["actions"])
    for key, before in killed["online"]["rows"].items():  # the checkpointed rows, unchanged
        np.testing.assert_array_equal(rows[key][:180], before)
    # Consecutive rows chain (next_observations = the next row's observations) except where an
    # episode ended (explore.csv): the interrupted episode went on from where it stopped and ended
    # at step 220 as in the killed run. No row lost, none added twice.
    episodes = read_csv(out / "explore.csv")
    assert [(int(e["episode"]), int(e["step"])) for e in episodes][:1] == [(0, 220)]
    ends = {int(e["step"]) - n - 1 for e in episodes}
    chained = [np.array_equal(rows["next_observations"][k], rows["observations"][k + 1])
               for k in range(m - 1)]  # fmt: skip
    breaks = {k for k, ok in enumerate(chained) if not ok}
    assert breaks == ends - {m - 1}
    logged = read_csv(out / "metrics.csv")
    assert [int(r["step"]) for r in logged] == [20, *range(50, n + m + 1, 50), n + m]
    assert {r["phase"] for r in logged if int(r["step"]) > n} == {"online"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["explore/episodes"] == len(episodes) >= 1


# ---- the reference's online defaults (issue 19) -------------------------------------------------
def test_the_replay_buffer_holds_two_million_rows_by_default_as_the_reference():
    job = make_train_job(TINY_TASK, steps=10, online_steps=4)
    assert job.buffer_size == 2_000_000  # config/main.yaml buffer_size; was 1,000,000
    assert job_record(job)["buffer_size"] == 2_000_000


@pytest.mark.parametrize("agent_name", ["rebrac", "iql", "bc"])
def test_exploration_adds_the_reference_noise_and_evaluation_none(agent_name):
    agent = make_agent(agent_name, CONFIGS[agent_name](**TINY), obs_dim=OBS, action_dim=ACT)
    params = agent.init(jax.random.PRNGKey(0)).params
    obs = jnp.asarray(dataset(64)["observations"])
    key = jax.random.PRNGKey(3)
    z = jax.random.normal(key, (64, ACT))
    evaluated = agent.act(params, obs, key)
    explored = agent.act(params, obs, key, explore=True)
    if agent_name == "rebrac":  # pi(s) + clip(0.2 z, -0.5, 0.5), clipped
        c = agent.config
        noise = jnp.clip(c.actor_noise * z, -c.actor_noise_clip, c.actor_noise_clip)
        want = jnp.clip(evaluated + noise, -1, 1)
    else:  # a sample of the Gaussian: mean + std * z, clipped
        mean, log_std = agent.apply("actor", params, obs)
        want = jnp.clip(mean + jnp.exp(log_std) * z, -1, 1)
        np.testing.assert_allclose(evaluated, jnp.clip(mean, -1, 1), rtol=0, atol=0)
    np.testing.assert_allclose(explored, want, rtol=1e-6, atol=1e-6)
    assert float(jnp.abs(explored - evaluated).mean()) > 0.05  # the noise is really there


def test_the_collector_acts_with_the_exploration_policy(monkeypatch):
    col, states = collector("rebrac")
    marker = 0.375

    def explore_action(params, obs, z, policy="actor"):
        return jnp.full((*obs.shape[:-1], ACT), marker)

    monkeypatch.setattr(col.agent, "explore_action", explore_action)
    col.collect = make_collect_step(col.agent, col.sampler)  # traced again with the patch
    col.first = make_first_actions(col.agent)
    collect(col, states, 4)
    online_actions = host(col)["actions"][D : D + 4]
    np.testing.assert_array_equal(online_actions, np.full((4, ACT), marker, np.float32))
