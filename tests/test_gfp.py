"""GFP agent: each loss against a hand-written numpy reference, the guidance weight's properties,
stop-gradients checked through gradients, and a contextual-bandit learning check."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gfp.agents import AGENTS, make_agent
from gfp.engine.chunk import init_states, unstack
from gfp.engine.driver import train
from gfp.engine.samplers import ArraySampler
from tests import reference as ref

GFPConfig = AGENTS["gfp"].Config
OBS, ACT, B = 3, 2, 6


def tiny_agent(**kw):
    cfg = GFPConfig(actor_hidden_dims=(8, 8), value_hidden_dims=(8, 8), flow_steps=3, **kw)
    return make_agent("gfp", cfg, obs_dim=OBS, action_dim=ACT)


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    agent = tiny_agent()
    state = agent.init(jax.random.PRNGKey(1))
    # A target critic that differs from the online one, so using the wrong critic is detectable.
    target = {"critic": agent.init(jax.random.PRNGKey(2)).params["critic"]}
    batch = {
        "observations": rng.normal(size=(B, OBS)).astype(np.float32),
        "actions": rng.uniform(-0.9, 0.9, size=(B, ACT)).astype(np.float32),
        "rewards": rng.normal(size=B).astype(np.float32),
        "masks": np.array([1, 1, 0, 1, 1, 0], np.float32),
        "next_observations": rng.normal(size=(B, OBS)).astype(np.float32),
    }
    noise = {
        "z_next": rng.normal(size=(B, ACT)).astype(np.float32),
        "z": 2.0 * rng.normal(size=(B, ACT)).astype(np.float32),  # large: exercises clipping
        "eps": rng.normal(size=(B, ACT)).astype(np.float32),
        "t": rng.uniform(size=B).astype(np.float32),
    }
    params = jax.device_get(state.params)
    return params, jax.device_get(target), batch, noise


def reference_losses(c, params, target, batch, noise):
    """One GFP update as the authors' code computes it (the paper's Algorithm 1, one joint step:
    docs/paper-vs-code.md #8), written out in numpy."""
    s, a, r, m, s2 = (
        batch[k] for k in ("observations", "actions", "rewards", "masks", "next_observations")
    )
    M = c.flow_steps
    Qt = lambda ss, aa: ref.agg(ref.critic(target["critic"], ss, aa), c.q_agg)
    Qo = lambda ss, aa: ref.agg(ref.critic(params["critic"], ss, aa), c.q_agg)
    # critic
    a2 = np.clip(ref.actor(params["actor"], s2, noise["z_next"]), -1, 1)
    q_next = Qt(s2, a2)
    if c.target_agg == "mean":
        s_v = s2 if c.target_use_next else s
        q_next = 0.5 * (q_next + Qt(s2, ref.euler(params["vabc"], s_v, noise["z_next"], M)))
    y = r + c.gamma * m * q_next
    critic_loss = np.mean((ref.critic(params["critic"], s, a) - y) ** 2)
    # actor
    a_om = ref.euler(params["vabc"], s, noise["z"], M)
    a_th_raw = ref.actor(params["actor"], s, noise["z"])
    a_th = np.clip(a_th_raw, -1, 1)
    q_pi = Qo(s, a_th)
    lam = 1.0 / np.mean(np.abs(q_pi))
    actor_loss = -lam * np.mean(q_pi) + c.alpha * np.mean((a_th_raw - a_om) ** 2)
    # vabc
    eps, t = noise["eps"], noise["t"]
    a_t = (1 - t[:, None]) * eps + t[:, None] * a
    err = np.mean((ref.velocity(params["vabc"], s, a_t, t) - (a - eps)) ** 2, -1)
    Qg = Qt if c.guidance_critic == "target" else Qo
    q_ref = Qg(s, a_th)
    if c.guidance_agg == "min":
        q_ref = np.minimum(q_ref, Qg(s, a_om))
    x = lam / c.eta * (Qg(s, a) - q_ref) if c.eta else 0.0
    if c.eta == 0:
        g = np.ones(B)
    elif c.guidance_fn == "softmax":
        g = 1 / (1 + np.exp(-x))
    else:
        g = np.exp(x)
    return {"critic": critic_loss, "actor": actor_loss, "vabc": np.mean(g * err)}


VARIANTS = [
    {},
    {"target_agg": "mean"},
    {"target_agg": "mean", "target_use_next": True},
    {"guidance_agg": "min"},
    {"guidance_critic": "online"},
    {"guidance_fn": "advantage", "eta": 1.0},
    {"q_agg": "min", "eta": 0.3, "alpha": 3.0},
    {"eta": 0.0},
]


@pytest.mark.parametrize(
    "variant", VARIANTS, ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) or "default"
)
def test_losses_match_reference(setup, variant):
    params, target, batch, noise = setup
    agent = tiny_agent(**{"eta": 0.5, **variant})
    terms, metrics = agent.loss_terms(params, target, batch, noise)
    expected = reference_losses(agent.config, params, target, batch, noise)
    for name in ("critic", "actor", "vabc"):
        np.testing.assert_allclose(float(terms[name]), expected[name], rtol=2e-4, atol=1e-6)
    assert 0.0 <= float(metrics["vabc/g_frac_above_half"]) <= 1.0


def test_y_vabc_variants_differ(setup):
    """The published (VaBC action at s) and corrected (at s') targets are really different."""
    params, target, batch, noise = setup
    published = tiny_agent(target_agg="mean").loss_terms(params, target, batch, noise)[0]
    corrected = tiny_agent(target_agg="mean", target_use_next=True).loss_terms(
        params, target, batch, noise
    )[0]
    assert abs(float(published["critic"]) - float(corrected["critic"])) > 1e-6


def test_guidance_properties():
    agent = tiny_agent(eta=1e-2)
    q_ref = jnp.zeros(5)
    q_data = jnp.array([-2.0, -0.1, 0.0, 0.1, 2.0])
    g = np.asarray(agent.guidance(q_data, q_ref, jnp.asarray(1.0)))
    assert np.all((g >= 0) & (g <= 1))
    assert g[2] == pytest.approx(0.5)
    assert np.all(np.diff(g) > 0)  # monotone in the gap
    # eta -> 0: a hard filter by the sign of the gap
    for eta in (1e-3, 1e-5):
        g = np.asarray(tiny_agent(eta=eta).guidance(q_data, q_ref, jnp.asarray(1.0)))
        np.testing.assert_allclose(g, [0, 0, 0.5, 1, 1], atol=1e-3)
    # interior values strictly inside (0, 1) for a moderate temperature
    g = np.asarray(tiny_agent(eta=1.0).guidance(q_data, q_ref, jnp.asarray(1.0)))
    assert np.all((g > 0) & (g < 1))
    # eta = 0 turns weighting off
    np.testing.assert_array_equal(tiny_agent(eta=0.0).guidance(q_data, q_ref, 1.0), np.ones(5))


def _grad_norms(agent, params, target, batch, noise, term):
    grads = jax.grad(lambda p: agent.loss_terms(p, target, batch, noise)[0][term])(params)
    return {k: float(optax_norm(g)) for k, g in grads.items()}


def optax_norm(tree):
    return jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(tree)))


@pytest.mark.parametrize(
    "variant", [{}, {"target_agg": "mean", "guidance_agg": "min"}, {"guidance_critic": "online"}]
)
def test_stop_gradients(setup, variant):
    params, target, batch, noise = setup
    agent = tiny_agent(eta=0.5, **variant)
    n = lambda term: _grad_norms(agent, params, target, batch, noise, term)
    vabc, actor, critic = n("vabc"), n("actor"), n("critic")
    assert vabc["critic"] == 0 and vabc["actor"] == 0 and vabc["vabc"] > 0
    assert actor["vabc"] == 0 and actor["critic"] == 0 and actor["actor"] > 0
    assert critic["actor"] == 0 and critic["vabc"] == 0 and critic["critic"] > 0


@pytest.mark.parametrize("target_update", ["pre_step", "post_step"])
def test_target_critic_gets_no_gradient_and_polyak(setup, target_update):
    """target <- tau * online + (1 - tau) * target, with the online parameters from before the
    gradient step (pre_step, the reference code) or after it (post_step)."""
    params, target, batch, _ = setup
    agent = tiny_agent(target_update=target_update)
    state = agent.init(jax.random.PRNGKey(0))
    new, _ = jax.jit(agent.update)(state, jax.tree.map(jnp.asarray, batch))
    tau = agent.config.tau
    online = state.params if target_update == "pre_step" else new.params
    expected = jax.tree.map(
        lambda o, t: tau * o + (1 - tau) * t, online["critic"], state.target_params["critic"]
    )
    for e, got in zip(
        jax.tree.leaves(expected), jax.tree.leaves(new.target_params["critic"]), strict=True
    ):
        np.testing.assert_allclose(got, e, rtol=1e-6, atol=1e-7)
    assert int(new.step) == 1


@pytest.mark.parametrize("agent_name", ["gfp", "fql", "rebrac", "iql"])
def test_pre_step_target_is_unchanged_when_it_equals_the_critic(agent_name):
    """Issue 9: from a state whose target equals the critic, one update with the reference
    (pre-step) target update leaves the target exactly as it was, while the critic moves."""
    from gfp.agents import make_agent
    from gfp.agents.configs import CONFIGS

    config = CONFIGS[agent_name](actor_hidden_dims=(16,), value_hidden_dims=(16,), batch_size=8)
    agent = make_agent(agent_name, config, obs_dim=3, action_dim=2)
    state = agent.init(jax.random.PRNGKey(0))
    assert state.target_params["critic"] is not None
    rng = np.random.default_rng(0)
    batch = {
        "observations": rng.normal(size=(8, 3)).astype(np.float32),
        "actions": rng.uniform(-1, 1, (8, 2)).astype(np.float32),
        "rewards": rng.normal(size=8).astype(np.float32),
        "masks": np.ones(8, np.float32),
        "next_observations": rng.normal(size=(8, 3)).astype(np.float32),
        "next_actions": rng.uniform(-1, 1, (8, 2)).astype(np.float32),
    }
    batch = {k: jnp.asarray(batch[k]) for k in agent.batch_keys}
    if agent_name == "rebrac":  # its targets move on full updates only: start on one (step 1)
        state = state.replace(step=jnp.ones((), jnp.int32))
    new, _ = jax.jit(agent.update)(state, batch)
    leaves = lambda tree: [np.asarray(x) for x in jax.tree.leaves(tree)]
    before, after = leaves(state.target_params["critic"]), leaves(new.target_params["critic"])
    critic0, critic1 = leaves(state.params["critic"]), leaves(new.params["critic"])
    # tau * x + (1 - tau) * x equals x up to float32 rounding (~1e-8 here) ...
    drift = max(np.abs(a - b).max() for a, b in zip(after, before, strict=True))
    assert drift < 1e-7
    # ... while averaging the post-step critic would have moved it by tau * (its step), far more.
    tau = agent.config.tau
    post = max(tau * np.abs(c1 - c0).max() for c0, c1 in zip(critic0, critic1, strict=True))
    assert post > 10 * max(drift, 1e-9)


def bandit_dataset(n=4096, seed=0):
    """One-step contextual bandit: 80% of the dataset actions sit in a low-value mode (-0.6),
    20% in a high-value mode (+0.6); reward is 1 near +0.6, 0 near -0.6. masks = 0."""
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n, 2)).astype(np.float32)
    high = rng.uniform(size=n) < 0.2
    a = np.where(high, 0.6, -0.6) + 0.05 * rng.normal(size=n)
    a = np.clip(a, -1, 1).astype(np.float32)[:, None]
    r = (np.abs(a[:, 0] - 0.6) < 0.3).astype(np.float32)
    return {
        "observations": s,
        "actions": a,
        "rewards": r,
        "masks": np.zeros(n, np.float32),
        "next_observations": s,
    }


def high_mode_fraction(agent, params, policy, n=512):
    obs = jax.random.normal(jax.random.PRNGKey(7), (n, 2))
    actions = np.asarray(agent.act(params, obs, jax.random.PRNGKey(8), policy))
    return float(np.mean(actions[:, 0] > 0))


@pytest.fixture(scope="module")
def bandit_runs():
    data = ArraySampler(jax.tree.map(jnp.asarray, bandit_dataset()))
    out = {}
    for name, eta in (("gfp", 0.05), ("unweighted", 0.0)):
        cfg = GFPConfig(
            actor_hidden_dims=(64, 64),
            value_hidden_dims=(64, 64),
            alpha=1.0,
            eta=eta,
            batch_size=256,
            gamma=0.0,
        )
        agent = make_agent("gfp", cfg, obs_dim=2, action_dim=1)
        states = train(
            agent, data, init_states(agent, [0]), steps=3000, log_every=1000, progress=False
        )
        out[name] = (agent, jax.device_get(unstack(states, 0).params))
    return out


def test_bandit_gfp_picks_high_value_mode(bandit_runs):
    agent, params = bandit_runs["gfp"]
    assert high_mode_fraction(agent, params, "actor") > 0.9
    assert high_mode_fraction(agent, params, "vabc") > 0.7


def test_bandit_unweighted_flow_bc_follows_the_data(bandit_runs):
    agent, params = bandit_runs["unweighted"]
    # Unweighted flow BC reproduces the dataset's 20% share of the high-value mode.
    assert high_mode_fraction(agent, params, "vabc") < 0.4


def test_same_seed_same_result():
    data = ArraySampler(jax.tree.map(jnp.asarray, bandit_dataset(n=512)))
    cfg = GFPConfig(actor_hidden_dims=(16,), value_hidden_dims=(16,), batch_size=32)
    agent = make_agent("gfp", cfg, obs_dim=2, action_dim=1)
    runs = [
        train(agent, data, init_states(agent, [3, 4]), steps=50, log_every=25, progress=False)
        for _ in range(2)
    ]
    for a, b in zip(jax.tree.leaves(runs[0].params), jax.tree.leaves(runs[1].params), strict=True):
        np.testing.assert_array_equal(a, b)
    # different seeds in the same vmapped run really differ
    p = runs[0].params["actor"]["MLP_0"]["Dense_0"]["kernel"]
    assert not np.allclose(p[0], p[1])


def test_config_is_frozen_and_documented():
    cfg = GFPConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.alpha = 2.0  # type: ignore[misc]
    helps = GFPConfig.field_help()
    assert all(helps[f.name] for f in dataclasses.fields(GFPConfig))
    # paper defaults (Tab. 4, App. A)
    assert (cfg.lr, cfg.batch_size, cfg.gamma, cfg.tau, cfg.flow_steps) == (
        3e-4,
        256,
        0.99,
        0.005,
        10,
    )
    assert cfg.actor_hidden_dims == cfg.value_hidden_dims == (512, 512, 512, 512)
    assert (cfg.target_agg, cfg.target_use_next, cfg.guidance_critic) == ("actor", False, "target")
