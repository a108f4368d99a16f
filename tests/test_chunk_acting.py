"""Acting with action chunks (issue 24; Q-chunking, Li, Zhou & Levine 2025, Sec. 4): a policy
that outputs k actions at once executes them open loop, in order, one per environment step, and
acts again only when they are all taken or an episode ends. Evaluation (`gfp.evaluate`), videos,
`Policy.act` (gfp.api), exported models (gfp.export) and `gfp.deploy`'s queue all do it; k = 1
stays as before (the existing tests of those modules).
"""

from __future__ import annotations

import json

import gymnasium
import jax
import numpy as np
import pytest
from gymnasium.wrappers import TimeLimit

from gfp import evaluate as ev
from gfp.agents import AGENTS, make_agent
from gfp.api import Policy
from gfp.deploy import ActionQueue, FrameStack, load_policy
from gfp.errors import DataError

ENV = "Pendulum-v1"  # one action dimension in [-2, 2]; cheap to build and step
K = 3
OBS_DIM, ACT_DIM = 5, 2


# ---- a recording environment and a policy whose outputs name their call -----------------------
class Recorder(gymnasium.Wrapper):
    """Pendulum cut to `length` steps, appending ("reset", env) / ("step", env, action, done) to
    a shared event log."""

    def __init__(self, env, log: list, number: int, length: int):
        super().__init__(TimeLimit(env, length))
        self.log, self.number = log, number

    def reset(self, **kw):
        self.log.append(("reset", self.number))
        out = self.env.reset(**kw)
        self.log.append(("obs", self.number, np.array(out[0])))
        return out

    def step(self, action):
        out = self.env.step(action)
        self.log.append(("step", self.number, np.array(action), bool(out[2] or out[3])))
        self.log.append(("obs", self.number, np.array(out[0])))
        return out


def chunk_policy(log: list, k: int, a: int = 1):
    """A policy (obs, key) -> (batch, k * a): element [b, i*a + j] = call * 0.01 + b * 0.1 +
    i * 0.001 + j * 0.0001 names its call, row and step. Each call is logged with its output."""

    def policy(obs, key):
        call = sum(1 for e in log if e[0] == "call")
        n = len(obs)
        b, i, j = np.meshgrid(np.arange(n), np.arange(k), np.arange(a), indexing="ij")
        out = (call * 0.01 + b * 0.1 + i * 0.001 + j * 0.0001).astype(np.float32)
        log.append(("call", out))
        return out.reshape(n, k * a)

    return policy


def replay_open_loop(log: list, k: int, a: int = 1) -> dict[str, int]:
    """Check the log against open-loop execution: every call refills exactly the queues of the
    running environments that were empty (at least one), each step takes the next action of its
    environment's queue, an episode's end clears the queue. Returns counts."""
    queues: dict[int, list] = {}
    running: set[int] = set()
    counts = {"calls": 0, "steps": 0, "episodes": 0, "discarded": 0}
    for event in log:
        if event[0] == "reset":
            env = event[1]
            counts["discarded"] += len(queues.get(env, []))
            queues[env], _ = [], running.add(env)
        elif event[0] == "obs":
            continue
        elif event[0] == "call":
            out = event[1]
            takers = [env for env in running if not queues[env]]
            assert takers, "the policy was called while every running environment had actions"
            for env in takers:
                queues[env] = list(out[env])  # env number = slot = batch row
            counts["calls"] += 1
        else:
            _, env, action, done = event
            assert env in running and queues[env], "a step without a queued action"
            np.testing.assert_array_equal(action, queues[env].pop(0))
            counts["steps"] += 1
            if done:
                running.discard(env)
                counts["discarded"] += len(queues[env])
                queues[env] = []
                counts["episodes"] += 1
    return counts


@pytest.fixture
def recorded_envs(monkeypatch):
    """ev.make_env gives Recorders (slot i: episodes of 7 + 2 i steps) writing to one log."""
    ev.close_env_pools()
    log: list = []
    built: list[int] = []
    real = ev.make_env

    def make(spec, render=False):
        n = len(built)
        built.append(n)
        return Recorder(real(spec, render), log, n, 7 + 2 * n)

    monkeypatch.setattr(ev, "make_env", make)
    yield log
    ev.close_env_pools()


@pytest.mark.parametrize("chunk_len", [K, None])  # given, or inferred from the action size
def test_evaluation_executes_each_chunk_open_loop(recorded_envs, chunk_len):
    log = recorded_envs
    result = ev.evaluate(
        chunk_policy(log, K), ENV, episodes=5, num_envs=2, seed=3, workers=0, chunk_len=chunk_len
    )
    counts = replay_open_loop(log, K)
    assert counts["episodes"] == 5 and counts["steps"] == result["length"] * 5
    # slot 0 plays episodes 0, 2, 4 of 7 steps (chunks at 0, 3, 6, 7, ..., 20; 2 actions dropped
    # at each end), slot 1 episodes 1, 3 of 9 steps (chunks at 0, 3, 6, 9, 12, 15): the slots
    # drift apart, and the 15 chunks come from 12 calls, shared where they coincide
    assert counts["steps"] == 3 * 7 + 2 * 9 and counts["discarded"] == 3 * 2
    assert counts["calls"] == len({0, 3, 6, 7, 10, 13, 14, 17, 20} | {0, 3, 6, 9, 12, 15}) == 12


def test_evaluation_with_chunks_is_deterministic_and_independent_of_workers():
    """The same results and policy inputs with workers in other processes (the action size
    comes from the worker), in-process, and again (the key schedule is fixed)."""
    ev.close_env_pools()
    fn = jax.jit(
        lambda obs, key: jax.numpy.tanh(obs[:, :1] * jax.random.normal(key, (len(obs), K)))
    )
    runs = []
    for workers in (0, 2, 0):
        seen: list[np.ndarray] = []

        def policy(obs, key, seen=seen):
            seen.append(np.array(obs))
            return fn(obs, key)

        runs.append(
            (ev.evaluate(policy, ENV, episodes=3, num_envs=2, seed=5, workers=workers), seen)
        )
    ev.close_env_pools()
    (first, seen0), *rest = runs
    assert len(seen0) == 2 * -(-200 // K)  # two rounds of 200-step episodes, 67 chunks each
    for result, seen in rest:
        np.testing.assert_equal(result, first)  # NaN success (Pendulum has none) included
        np.testing.assert_array_equal(np.stack(seen), np.stack(seen0))


def test_frame_stack_follows_every_step_between_chunks(recorded_envs):
    """With frame_stack 2 the policy sees, when it plans, the last two observations of each
    environment, however many steps the chunk took (the stack is pushed at every step)."""
    log = recorded_envs
    policy = chunk_policy(log, K)
    seen = []

    def recording(obs, key):
        seen.append((len(log), np.array(obs)))
        return policy(obs, key)

    ev.evaluate(recording, ENV, episodes=2, num_envs=2, seed=1, workers=0, frame_stack=2)
    replay_open_loop(log, K)
    assert len(seen) == 3
    for at, obs in seen:
        for env in (0, 1):
            history = [e[2] for e in log[:at] if e[0] == "obs" and e[1] == env]
            started = max(i for i, e in enumerate(log[:at]) if e[:2] == ("reset", env))
            fresh = sum(1 for e in log[started:at] if e[0] == "obs" and e[1] == env)
            last_two = history[-2:] if fresh > 1 else history[-1:] * 2
            np.testing.assert_array_equal(obs[env], np.concatenate(last_two))


def test_outputs_that_are_no_whole_chunk_are_refused(recorded_envs):
    with pytest.raises(ValueError, match="not a chunk of whole actions"):
        ev.as_chunks(np.zeros((2, 5)), None, lambda: 2)
    assert ev.as_chunks(np.zeros((2, 6)), None, lambda: 2).shape == (2, 3, 2)
    assert ev.as_chunks(np.zeros((2, 6)), None, lambda: None).shape == (2, 1, 6)
    with pytest.raises(ValueError, match="not 2 steps"):
        ev.evaluate(
            lambda obs, key: np.zeros((len(obs), 3), np.float32),
            ENV,
            episodes=1,
            num_envs=1,
            workers=0,
            chunk_len=2,
        )


def test_k1_evaluation_calls_the_policy_every_step(recorded_envs):
    log = recorded_envs
    result = ev.evaluate(chunk_policy(log, 1), ENV, episodes=3, num_envs=2, seed=0, workers=0)
    counts = replay_open_loop(log, 1)
    assert counts["discarded"] == 0
    # one call per step of the pool: slot 0 plays episodes 0 and 2 (7 steps each), slot 1
    # episode 1 (9 steps) and then idles
    assert counts["calls"] == 14 and counts["steps"] == 3 * result["length"] == 7 + 9 + 7


def test_video_executes_each_chunk_open_loop(recorded_envs, monkeypatch, tmp_path):
    """record_video: the same queue, one frame per environment step (the render is stubbed)."""
    import gfp.render

    log = recorded_envs
    monkeypatch.setattr(gfp.render, "configure_gl", lambda: None)
    real = ev.make_env

    def make(spec, render=False):
        env = real(spec)
        env.render = lambda: np.zeros((16, 16, 3), np.uint8)
        return env

    monkeypatch.setattr(ev, "make_env", make)
    frames = ev.record_video(chunk_policy(log, K), ENV, tmp_path / "v.mp4", episodes=2, seed=0)
    counts = replay_open_loop(log, K)
    assert frames == counts["steps"] == 2 * 7 and counts["episodes"] == 2
    assert counts["calls"] == 2 * 3 and counts["discarded"] == 2 * 2
    assert (tmp_path / "v.mp4").stat().st_size > 0


# ---- the queue itself (gfp.deploy, numpy only) -------------------------------------------------
def test_action_queue_plans_only_for_empty_rows():
    calls = []

    def plan():
        calls.append(len(calls))
        return np.arange(2 * K * 1).reshape(2, K, 1) + 100 * len(calls)

    queue = ActionQueue(K)
    got = [queue.pop(plan)[:, 0].tolist() for _ in range(2)]
    assert got == [[100, 103], [101, 104]] and len(calls) == 1
    queue.reset(rows=[1])  # environment 1 starts an episode: it re-plans, 0 goes on
    assert queue.pop(plan)[:, 0].tolist() == [102, 203] and len(calls) == 2
    assert queue.pop(plan)[:, 0].tolist() == [300, 204] and len(calls) == 3  # row 0 ran out
    queue.reset()
    assert queue.pop(plan)[:, 0].tolist() == [400, 403]
    with pytest.raises(ValueError, match="another batch size"):
        queue.reset(rows=[0])
        queue.pop(lambda: np.zeros((3, K, 1)))
    one = ActionQueue(1)  # k = 1: plans at every pop, returns its action as it is
    out = [one.pop(lambda i=i: np.full((2, 1, 1), i)) for i in range(3)]
    assert [o[:, 0].tolist() for o in out] == [[0, 0], [1, 1], [2, 2]]


def test_frame_stack_resets_single_rows():
    stack = FrameStack(3)
    stack.push(np.array([[1], [2]]))
    stack.push(np.array([[3], [4]]))
    stack.reset(rows=[1])
    np.testing.assert_array_equal(stack.push(np.array([[5], [6]])), [[1, 3, 5], [6, 6, 6]])
    np.testing.assert_array_equal(stack.push(np.array([[7], [8]])), [[3, 5, 7], [6, 6, 8]])


# ---- agents with action chunks -----------------------------------------------------------
def chunked_agent(name: str, k: int = K, obs_dim: int = OBS_DIM, act_dim: int = ACT_DIM):
    """`name` built with horizon k and action chunking: its policies output k * A."""
    config = AGENTS[name].Config(
        actor_hidden_dims=(16, 16), value_hidden_dims=(16, 16), horizon=k, action_chunking=True
    )
    agent = make_agent(name, config, obs_dim=obs_dim, action_dim=act_dim)
    assert agent.chunk_len == k and agent.env_action_dim == act_dim
    assert agent.action_dim == k * act_dim
    return agent


@pytest.fixture(scope="module")
def fql_chunked():
    agent = chunked_agent("fql")
    params = jax.device_get(agent.init(jax.random.PRNGKey(0)).params)
    return agent, params


def counting_policy(agent, params) -> tuple[Policy, list]:
    """A Policy whose actor calls are counted."""
    policy = Policy(agent, params, {"task": None})
    fn, calls = agent.policy_fn("actor"), []

    def counted(p, obs, key):
        calls.append(np.array(obs))
        return fn(p, obs, key)

    policy._fns["actor"] = counted
    return policy, calls


def test_policy_act_pops_the_chunk_and_replans(fql_chunked):
    agent, params = fql_chunked
    policy, calls = counting_policy(agent, params)
    assert (
        policy.chunk_len == K and policy.env_action_dim == ACT_DIM and "chunk[3, 2]" in repr(policy)
    )
    obs = np.random.default_rng(0).standard_normal((7, OBS_DIM)).astype(np.float32)
    chunk = policy.act_chunk(obs[0], seed=4)
    assert chunk.shape == (K, ACT_DIM) and len(calls) == 1
    want = np.asarray(agent.act(params, obs[:1], jax.random.PRNGKey(4))).reshape(K, ACT_DIM)
    np.testing.assert_allclose(chunk, want, atol=1e-6)
    calls.clear()
    acted = [policy.act(o, seed=4) for o in obs]
    assert [len(c) for c in calls] == [1, 1, 1]  # steps 0, 3, 6
    np.testing.assert_array_equal(np.stack([c[0] for c in calls]), obs[[0, 3, 6]])
    for t, action in enumerate(acted):
        assert action.shape == (ACT_DIM,)
        np.testing.assert_allclose(action, policy.act_chunk_stacked(obs[t - t % K], seed=4)[t % K])
    calls.clear()
    policy.reset()  # mid-chunk: the next act plans a new one
    policy.act(obs[1], seed=4)
    assert len(calls) == 1 and calls[0][0].tolist() == obs[1].tolist()


def test_policy_act_batch_rows_reset_on_their_own(fql_chunked):
    agent, params = fql_chunked
    policy, calls = counting_policy(agent, params)
    obs = np.random.default_rng(1).standard_normal((4, 2, OBS_DIM)).astype(np.float32)
    first = policy.act(obs[0])
    policy.act(obs[1])
    policy.reset(rows=[1])
    third = policy.act(obs[2])
    assert len(calls) == 2
    np.testing.assert_allclose(third[0], policy.act_chunk_stacked(obs[0])[0, 2])  # row 0 goes on
    np.testing.assert_allclose(third[1], policy.act_chunk_stacked(obs[2])[1, 0])  # row 1 re-planned
    np.testing.assert_allclose(first, policy.act_chunk_stacked(obs[0])[:, 0])
    with pytest.raises(DataError, match="reset"):
        policy.act(obs[3, :1].repeat(3, axis=0))  # another batch size mid-chunk


def test_a_chunked_agent_is_evaluated_open_loop(recorded_envs):
    """flow_bc with horizon 3 on Pendulum (A = 1): its (batch, 3) output is inferred to be a
    chunk of 3 actions, each executed in order, as the agent's chunk says."""
    log = recorded_envs
    agent = chunked_agent("flow_bc", obs_dim=3, act_dim=1)
    params = agent.init(jax.random.PRNGKey(1)).params
    fn = agent.policy_fn("actor")

    def policy(obs, key):
        out = np.asarray(fn(params, obs, key))
        log.append(("call", out.reshape(len(obs), K, 1)))
        return out

    ev.evaluate(policy, ENV, episodes=2, num_envs=2, seed=0, workers=0)
    counts = replay_open_loop(log, K)
    assert counts["steps"] == 7 + 9 and counts["calls"] == 3  # at steps 0, 3, 6 of both slots


# ---- export and deploy ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported_chunked(fql_chunked, tmp_path_factory):
    from gfp.export import export_policy

    agent, params = fql_chunked
    out = tmp_path_factory.mktemp("chunk_export") / "policy.onnx"
    meta = export_policy(agent, params, "actor", "onnx", out, batch="dynamic")
    return out, meta


def test_exported_chunk_equals_the_agents_and_sidecar_names_it(fql_chunked, exported_chunked):
    agent, params = fql_chunked
    path, meta = exported_chunked
    side = json.loads(path.with_name(path.name + ".json").read_text())
    assert side == json.loads(json.dumps(meta))
    assert side["chunk"]["length"] == K and side["chunk"]["action_dim"] == ACT_DIM
    assert side["action_dim"] == side["action"]["dim"] == ACT_DIM  # names / bounds: one step
    assert side["outputs"][0]["shape"] == ["batch", K, ACT_DIM]
    from gfp.export import noise_shape

    assert side["inputs"][1]["shape"] == list(noise_shape(agent, ("batch",)))
    assert side["inputs"][1]["shape"][-1] == K * ACT_DIM
    policy = load_policy(path)
    assert policy.chunk_len == K and policy.chunk_shape == (K, ACT_DIM)
    rng = np.random.default_rng(2)
    obs = rng.standard_normal((3, OBS_DIM)).astype(np.float32)
    z = rng.standard_normal((3, *policy.noise_shape)).astype(np.float32)
    want = np.asarray(agent.action(params, obs, z, "actor")).reshape(3, K, ACT_DIM)
    got = policy(obs, z)
    assert got.shape == (3, K, ACT_DIM)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(policy.act_chunk(obs[0], z[0]), want[0], atol=1e-5)


def test_deploy_act_executes_the_chunk_open_loop(exported_chunked):
    path, _ = exported_chunked
    policy = load_policy(path, seed=0)
    calls = []
    run = policy._run

    def counted(inputs):
        calls.append(inputs[0].copy())
        return run(inputs)

    policy._run = counted
    obs = np.random.default_rng(3).standard_normal((5, OBS_DIM)).astype(np.float32)
    z = np.random.default_rng(4).standard_normal(policy.noise_shape).astype(np.float32)
    policy.reset()
    acted = [policy.act(o, z) for o in obs]
    assert len(calls) == 2 and calls[1][0].tolist() == obs[3].tolist()  # steps 0 and 3
    for t, action in enumerate(acted):
        assert action.shape == (ACT_DIM,)
        np.testing.assert_allclose(action, policy(obs[t - t % K], z)[t % K], atol=1e-6)
    calls.clear()
    policy.reset()
    policy.act(obs[4], z)
    assert len(calls) == 1  # reset mid-chunk: a new chunk


def test_stablehlo_export_returns_the_chunk(fql_chunked, tmp_path):
    from gfp.export import export_policy

    agent, params = fql_chunked
    meta = export_policy(agent, params, "actor", "stablehlo", tmp_path / "p.stablehlo", batch=2)
    assert meta["outputs"][0]["shape"] == [2, K, ACT_DIM] and meta["chunk"]["length"] == K
    policy = load_policy(tmp_path / "p.stablehlo")
    obs = np.ones((2, OBS_DIM), np.float32)
    z = np.zeros((2, *policy.noise_shape), np.float32)
    want = np.asarray(agent.action(params, obs, z, "actor")).reshape(2, K, ACT_DIM)
    np.testing.assert_allclose(policy(obs, z), want, atol=1e-5)


def test_k1_export_keeps_its_shapes_and_says_chunk_1(tmp_path):
    from gfp.export import export_policy

    agent = make_agent(
        "flow_bc", AGENTS["flow_bc"].Config(actor_hidden_dims=(8,)), obs_dim=4, action_dim=2
    )
    params = jax.device_get(agent.init(jax.random.PRNGKey(0)).params)
    meta = export_policy(agent, params, "actor", "onnx", tmp_path / "p.onnx", batch=1)
    assert meta["outputs"][0]["shape"] == [1, 2] and meta["inputs"][1]["shape"] == [1, 2]
    assert meta["chunk"]["length"] == 1 and meta["action_dim"] == 2
    assert meta["noise"].startswith("z ~ N(0, I), float32 (batch, action_dim), drawn by the caller")
    policy = load_policy(tmp_path / "p.onnx")
    assert policy.chunk_len == 1 and policy.act_chunk(np.zeros(4, np.float32)).shape == (1, 2)
    obs = np.ones(4, np.float32)
    z = np.full(2, 0.3, np.float32)
    np.testing.assert_array_equal(policy.act(obs, z), policy(obs, z))  # every step, as before


def qc_agent():
    """A small QC agent (best-of-N over chunks: its noise is (batch, N, k * A))."""
    config = AGENTS["qc"].Config(
        actor_hidden_dims=(16, 16),
        value_hidden_dims=(16, 16),
        horizon=K,
        num_samples=4,
        flow_steps=2,
    )
    agent = make_agent("qc", config, obs_dim=OBS_DIM, action_dim=ACT_DIM)
    return agent, jax.device_get(agent.init(jax.random.PRNGKey(0)).params)


def check_qc_export(tmp_path, fmt: str) -> None:
    from gfp.export import export_policy

    agent, params = qc_agent()
    meta = export_policy(agent, params, "actor", fmt, tmp_path / f"qc.{fmt}")
    assert meta["inputs"][1]["shape"] == ["batch", 4, K * ACT_DIM]
    assert meta["outputs"][0]["shape"] == ["batch", K, ACT_DIM] and meta["chunk"]["length"] == K
    policy = load_policy(tmp_path / f"qc.{fmt}", seed=0)
    assert policy.noise_shape == (4, K * ACT_DIM)
    obs = np.random.default_rng(5).standard_normal((2, OBS_DIM)).astype(np.float32)
    z = np.random.default_rng(6).standard_normal((2, 4, K * ACT_DIM)).astype(np.float32)
    want = np.asarray(agent.action(params, obs, z, "actor")).reshape(2, K, ACT_DIM)
    np.testing.assert_allclose(policy(obs, z), want, atol=1e-5)
    np.testing.assert_allclose(policy.act_chunk(obs[1], z[1]), want[1], atol=1e-5)
    assert policy.act(obs[0]).shape == (ACT_DIM,)  # its own noise, of the recorded shape


def test_qc_stablehlo_export_takes_n_noises_per_state(tmp_path):
    check_qc_export(tmp_path, "stablehlo")


@pytest.mark.slow  # the ONNX conversion of N flows and the argmax: about 30 s on a loaded 2-core
def test_qc_onnx_export_takes_n_noises_per_state(tmp_path):
    check_qc_export(tmp_path, "onnx")
