"""Action chunking (Q-chunking, QC; Li, Zhou, Levine 2025) in the agents: horizon 1 is today's
code, bit for bit; horizon h > 1 trains on h-step windows with QC's losses.

The window batch is what gfp.engine's sequence sampler hands the agents (built by hand here):
observations (B, *obs) at t, actions (B, h, A), rewards (B,) = sum_i gamma^i r_(t+i), masks (B,) =
min_i masks_(t+i), next_observations (B, *obs) after step t+h-1, valid (B, h).
"""

from __future__ import annotations

import dataclasses
import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gfp.agents import CONFIGS, make_agent
from gfp.agents.configs import config_from_dict
from gfp.errors import ConfigError
from tests.test_data_errors import cli_error
from tests.test_golden import platform_key

TINY = dict(actor_hidden_dims=(8,), value_hidden_dims=(8,), batch_size=8)
FLOW = {"gfp": {"flow_steps": 1}, "fql": {"flow_steps": 1}, "qc": {"flow_steps": 2}}  # fast
OBS, ACT, B, STEPS = 5, 3, 8, 100
SINGLE = ("gfp", "fql", "rebrac", "iql", "bc", "flow_bc")

# ---- horizon 1 is today's code ------------------------------------------------------------------
# (digest of the parameter bytes, sum of |params|) after `trained_params(name)`, recorded with this
# file's `trained_params` and `digest` run on a `git worktree` of the commit before action chunking
# (55a9da0) on the platform below: PYTHONPATH=<worktree> python <these functions>.
RECORDED_ON = {
    "machine": "x86_64",
    "isa": "avx2,fma,avx512f",
    "jax": "0.10.2",
    "jaxlib": "0.10.2",
    "numpy": "2.4.6",
}
DIGESTS = {
    "gfp": ("2801177794109a12", 175.1269461113261),
    "fql": ("af5b1efb4584b34a", 115.72742945922073),
    "rebrac": ("10fa3bfab1109135", 73.91838220701902),
    "iql": ("6fe07656942a2986", 101.40526137386041),
    "bc": ("7c443d88e322b347", 13.355976712628035),
    "flow_bc": ("4812812efc9c9fdb", 86.39048473062576),
}


def batches(steps: int = STEPS) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    f = np.float32
    return {
        "observations": rng.normal(size=(steps, B, OBS)).astype(f),
        "actions": rng.uniform(-1, 1, (steps, B, ACT)).astype(f),
        "rewards": rng.normal(size=(steps, B)).astype(f),
        "masks": (rng.uniform(size=(steps, B)) > 0.2).astype(f),
        "next_observations": rng.normal(size=(steps, B, OBS)).astype(f),
        "next_actions": rng.uniform(-1, 1, (steps, B, ACT)).astype(f),
    }


def trained_params(name: str):
    agent = make_agent(
        name, CONFIGS[name](**TINY, **FLOW.get(name, {})), obs_dim=OBS, action_dim=ACT
    )
    state = agent.init(jax.random.PRNGKey(0))
    data = {k: jnp.asarray(v) for k, v in batches().items() if k in agent.batch_keys}

    def body(s, b):
        return agent.update(s, b)[0], None

    state, _ = jax.jit(lambda s, d: jax.lax.scan(body, s, d))(state, data)
    return state.params


def digest(params) -> str:
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(params):
        h.update(np.asarray(leaf).tobytes())
    return h.hexdigest()[:16]


def abs_sum(params) -> float:
    return float(sum(np.abs(np.asarray(x, np.float64)).sum() for x in jax.tree.leaves(params)))


@pytest.mark.parametrize("name", SINGLE)
def test_horizon_one_is_bit_identical(name):
    params = trained_params(name)
    want_digest, want_sum = DIGESTS[name]
    if platform_key() == RECORDED_ON:
        assert digest(params) == want_digest
    else:  # XLA's CPU code differs between instruction sets and versions
        assert abs_sum(params) == pytest.approx(want_sum, rel=1e-3)


# ---- the interface ----------------------------------------------------------------------------
def chunk_agent(name: str, h: int = 3, **kw):
    config = CONFIGS[name](**TINY, **{**FLOW.get(name, {}), "horizon": h, **kw})
    return make_agent(name, config, obs_dim=OBS, action_dim=ACT)


def window(h: int = 3, b: int = 4, seed: int = 1) -> dict[str, jax.Array]:
    rng = np.random.default_rng(seed)
    f = np.float32
    valid = np.ones((b, h), f)
    valid[1, 2:] = 0.0  # sample 1: a terminal at step 1, the last step invalid
    valid[2, 1:] = 0.0  # sample 2: a terminal at step 0
    return {
        "observations": jnp.asarray(rng.normal(size=(b, OBS)).astype(f)),
        "actions": jnp.asarray(rng.uniform(-1, 1, (b, h, ACT)).astype(f)),
        "rewards": jnp.asarray(rng.normal(size=(b,)).astype(f)),
        "masks": jnp.asarray(np.array([1, 0, 0, 1], f)[:b]),
        "next_observations": jnp.asarray(rng.normal(size=(b, OBS)).astype(f)),
        "valid": jnp.asarray(valid),
    }


@pytest.mark.parametrize("name", ("gfp", "fql", "flow_bc", "qc"))
def test_chunk_shapes_and_keys(name):
    agent = chunk_agent(name, h=4)
    assert (agent.env_action_dim, agent.chunk_len, agent.action_dim) == (ACT, 4, 4 * ACT)
    assert "valid" in agent.batch_keys
    state = agent.init(jax.random.PRNGKey(0))
    obs = jnp.zeros((2, OBS))
    z_shape = agent.noise_shape((2,))
    assert z_shape[0] == 2 and z_shape[-1] == 4 * ACT
    for policy in agent.policies:
        out = agent.act(state.params, obs, jax.random.PRNGKey(1), policy)
        assert out.shape == (2, 4 * ACT)
    _, metrics = jax.jit(agent.update)(state, window(h=4))
    assert all(bool(jnp.isfinite(v)) for v in metrics.values())
    flat = chunk_agent(name, h=4, action_chunking=False)
    assert (flat.chunk_len, flat.action_dim, flat.noise_shape((2,))[-1]) == (1, ACT, ACT)
    assert "valid" in flat.batch_keys
    # horizon 1: today's batch keys, no `valid`
    assert (
        "valid"
        not in make_agent(
            name, CONFIGS[name](**TINY, horizon=1), obs_dim=OBS, action_dim=ACT
        ).batch_keys
    )


def noise_for(agent, batch, seed=2):
    return agent.sample_noise(jax.random.PRNGKey(seed), batch)


@pytest.mark.parametrize("chunking", (True, False))
def test_fql_h_step_target_by_hand(chunking):
    h = 3
    agent = chunk_agent("fql", h=h, action_chunking=chunking)
    params = agent.init(jax.random.PRNGKey(0)).params
    target = jax.tree.map(lambda x: x + 0.01, params)  # a target critic unlike the online one
    batch = window(h=h)
    noise = noise_for(agent, batch)
    terms, metrics = agent.loss_terms(params, target, batch, noise)

    # By hand: a' = clip(mu_theta(s', z')), Q mean of the target ensemble, y = R + gamma^h m Q.
    critic = agent.nets["critic"][0]
    actor = agent.nets["actor"][0]
    s_next = batch["next_observations"]
    a_next = jnp.clip(actor.apply({"params": params["actor"]}, s_next, noise["z_next"]), -1, 1)
    q_next = critic.apply({"params": target["critic"]}, s_next, a_next).mean(0)
    y = np.asarray(batch["rewards"]) + 0.99**h * np.asarray(batch["masks"]) * np.asarray(q_next)
    a = batch["actions"].reshape(4, -1) if chunking else batch["actions"][:, 0]
    q = np.asarray(critic.apply({"params": params["critic"]}, batch["observations"], a))
    w = np.asarray(batch["valid"])[:, -1]
    want = np.mean((q - y) ** 2 * w)
    assert float(terms["critic"]) == pytest.approx(want, rel=1e-5)
    assert float(metrics["critic/target_mean"]) == pytest.approx(y.mean(), rel=1e-5, abs=1e-6)


def test_gfp_h_step_target_by_hand():
    h = 3
    agent = chunk_agent("gfp", h=h, target_agg="mean")
    params = agent.init(jax.random.PRNGKey(0)).params
    target = jax.tree.map(lambda x: x + 0.01, params)
    batch = window(h=h)
    noise = noise_for(agent, batch)
    y = agent.critic_target(params, target, batch, noise["z_next"])
    s_next, s = batch["next_observations"], batch["observations"]
    a_actor = jnp.clip(agent.actor_action(params, s_next, noise["z_next"]), -1, 1)
    a_vabc = agent.flow_action(params, s, noise["z_next"])  # target_use_next False: at s
    q = 0.5 * (
        agent.q(target["critic"], s_next, a_actor) + agent.q(target["critic"], s_next, a_vabc)
    )
    want = batch["rewards"] + 0.99**h * batch["masks"] * q
    np.testing.assert_allclose(np.asarray(y), np.asarray(want), rtol=1e-6)


def perturb_invalid_targets(batch, noise, mask):
    """Change the flow-matching target (a - eps) at the masked-out coordinates while keeping the
    network's input a_t = (1 - t) eps + t a: a += d, eps -= t d / (1 - t)."""
    t = noise["t"][:, None]
    d = (1.0 - mask) * 0.7
    a = batch["actions"].reshape(mask.shape) + d
    eps = noise["eps"] - t * d / (1.0 - t)
    return {**batch, "actions": a.reshape(batch["actions"].shape)}, {**noise, "eps": eps}


@pytest.mark.parametrize(
    "name,key", (("fql", "flow"), ("flow_bc", "flow"), ("qc", "flow"), ("gfp", None))
)
def test_flow_loss_ignores_invalid_steps(name, key):
    agent = chunk_agent(name, h=3)
    params = agent.init(jax.random.PRNGKey(0)).params
    batch = window(h=3)
    noise = noise_for(agent, batch)
    mask = agent.step_mask(batch)
    assert mask.shape == (4, 3 * ACT) and float(mask.min()) == 0.0

    def flow_loss(b, n):
        terms, metrics = agent.loss_terms(params, params, b, n)
        return float(terms[key]) if key else float(metrics["vabc/flow_error"])

    before = flow_loss(batch, noise)
    b2, n2 = perturb_invalid_targets(batch, noise, mask)
    assert flow_loss(b2, n2) == pytest.approx(before, rel=1e-6)
    # the same change at every coordinate does change it (the check can see a change)
    b3, n3 = perturb_invalid_targets(batch, noise, jnp.zeros_like(mask))
    assert abs(flow_loss(b3, n3) - before) > 1e-3


@pytest.mark.parametrize("name", ("gfp", "fql", "qc"))
def test_window_invalid_at_its_end_adds_nothing_to_critic(name):
    agent = chunk_agent(name, h=3)
    params = agent.init(jax.random.PRNGKey(0)).params
    batch = window(h=3)
    assert float(batch["valid"][1, -1]) == 0.0
    noise = noise_for(agent, batch)

    def critic_loss(p, b):
        return agent.loss_terms(p, params, b, noise)[0]["critic"]

    changed = {
        **batch,
        "rewards": batch["rewards"].at[1].add(100.0),
        "actions": batch["actions"].at[1].add(0.5),
        "next_observations": batch["next_observations"].at[1].add(3.0),
    }
    assert float(critic_loss(params, changed)) == pytest.approx(float(critic_loss(params, batch)))
    g1 = jax.grad(critic_loss)(params, batch)["critic"]
    g2 = jax.grad(critic_loss)(params, changed)["critic"]
    for x, y in zip(jax.tree.leaves(g1), jax.tree.leaves(g2), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-7)


# ---- qc -----------------------------------------------------------------------------------------
def test_qc_best_of_n_takes_the_argmax_q_sample():
    agent = chunk_agent("qc", h=2, num_samples=7)
    params = agent.init(jax.random.PRNGKey(0)).params
    obs = jax.random.normal(jax.random.PRNGKey(3), (5, OBS))
    z = jax.random.normal(jax.random.PRNGKey(4), agent.noise_shape((5,)))
    assert z.shape == (5, 7, 2 * ACT)
    goal = jnp.linspace(-0.5, 0.5, 2 * ACT)
    # A hand-built critic: Q(s, a) = -|a - goal|^2, so the best chunk is the one nearest `goal`.
    agent.q = lambda critic_params, o, a: -jnp.sum((a - goal) ** 2, -1)
    cands, _ = agent.candidates(params, obs, z)
    dist = np.asarray(jnp.sum((cands - goal) ** 2, -1))
    assert len({tuple(r) for r in np.argmin(dist, 1)[:, None]}) > 1  # not always the same index
    want = np.asarray(cands)[np.arange(5), np.argmin(dist, 1)]
    np.testing.assert_array_equal(np.asarray(agent.action(params, obs, z, "actor")), want)
    # each candidate is the flow's own chunk from its noise
    np.testing.assert_allclose(
        np.asarray(cands[:, 3]), np.asarray(agent.flow_action(params, obs, z[:, 3])), rtol=1e-6
    )
    np.testing.assert_array_equal(
        np.asarray(agent.action(params, obs, z, "flow")), np.asarray(cands[:, 0])
    )


def test_qc_target_uses_best_of_n_under_online_critic():
    agent = chunk_agent("qc", h=3, num_samples=4)
    params = agent.init(jax.random.PRNGKey(0)).params
    target = jax.tree.map(lambda x: x * 1.1, params)
    batch = window(h=3)
    noise = noise_for(agent, batch)
    _, metrics = agent.loss_terms(params, target, batch, noise)
    s_next = batch["next_observations"]
    cands, _ = agent.candidates(params, s_next, noise["z_next"])
    q_online = np.stack(
        [np.asarray(agent.q(params["critic"], s_next, cands[:, n])) for n in range(4)]
    )
    best = np.asarray(cands)[np.arange(4), q_online.argmax(0)]
    q_next = agent.q(target["critic"], s_next, jnp.asarray(best))
    y = batch["rewards"] + 0.99**3 * batch["masks"] * q_next
    assert float(metrics["critic/target_mean"]) == pytest.approx(float(y.mean()), rel=1e-5)


# ---- configs and records ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ("rebrac", "iql", "bc"))
def test_single_step_agents_refuse_a_horizon(name, capsys, tmp_path):
    with pytest.raises(ConfigError) as e:
        CONFIGS[name](horizon=5)
    msg = str(e.value)
    assert "\n" not in msg and name in msg and "gfp, fql, flow_bc, qc" in msg
    err = cli_error(capsys, "train", "--agent", name, "--horizon", "5", "--out", str(tmp_path))
    assert name in err and "horizon" in err


def test_old_records_read_back_and_keep_their_hash():
    from gfp.job import config_hash

    for name, cls in CONFIGS.items():
        values = dataclasses.asdict(cls())
        values.pop("horizon")
        values.pop("action_chunking")
        assert config_from_dict(name, dict(values)) == cls()
        values.pop("lr")
        with pytest.raises(ConfigError, match="missing"):
            config_from_dict(name, values)
    new = {
        "task": "t",
        "agent": "fql",
        "seeds": [0],
        "agent_config": dataclasses.asdict(CONFIGS["fql"]()),
    }
    old = {
        **new,
        "agent_config": {
            k: v for k, v in new["agent_config"].items() if k not in ("horizon", "action_chunking")
        },
    }
    assert config_hash(new) == config_hash(old)
    five = {**new, "agent_config": {**new["agent_config"], "horizon": 5}}
    assert config_hash(five) != config_hash(new)
