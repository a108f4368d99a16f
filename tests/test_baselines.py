"""Baselines (FQL, ReBRAC, IQL, BC, flow BC): each loss against a hand-written numpy reference,
stop-gradients checked through gradients, ReBRAC's delayed updates, the next-action data, and a
short training run per agent."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gfp.agents import AGENTS, make_agent
from gfp.engine.chunk import unstack
from gfp.engine.driver import train
from gfp.engine.placement import make_sampler
from gfp.engine.samplers import next_actions
from tests import reference as ref

OBS, ACT, B = 3, 2, 6
TINY = {"actor_hidden_dims": (8, 8), "value_hidden_dims": (8, 8)}
TOL = {"rtol": 2e-4, "atol": 1e-6}


def tiny(name, **kw):
    return make_agent(name, AGENTS[name].Config(**TINY, **kw), obs_dim=OBS, action_dim=ACT)


def params_and_targets(agent, seed=1):
    """Fixed parameters and target copies that differ from them (so a wrong network is caught)."""
    params = jax.device_get(agent.init(jax.random.PRNGKey(seed)).params)
    other = jax.device_get(agent.init(jax.random.PRNGKey(seed + 100)).params)
    return params, {name: other[name] for name in agent.targets}


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return {
        "observations": rng.normal(size=(B, OBS)).astype(np.float32),
        "actions": rng.uniform(-0.9, 0.9, size=(B, ACT)).astype(np.float32),
        "rewards": rng.normal(size=B).astype(np.float32),
        "masks": np.array([1, 1, 0, 1, 1, 0], np.float32),
        "next_observations": rng.normal(size=(B, OBS)).astype(np.float32),
        "next_actions": rng.uniform(-0.9, 0.9, size=(B, ACT)).astype(np.float32),
    }


@pytest.fixture(scope="module")
def noise():
    rng = np.random.default_rng(1)
    return {
        "z_next": rng.normal(size=(B, ACT)).astype(np.float32),
        "z": 2.0 * rng.normal(size=(B, ACT)).astype(np.float32),  # large: exercises clipping
        "eps": 2.0 * rng.normal(size=(B, ACT)).astype(np.float32),  # ReBRAC: exceeds noise clip
        "t": rng.uniform(size=B).astype(np.float32),
    }


def unpack(batch):
    return (batch[k] for k in ("observations", "actions", "rewards", "masks", "next_observations"))


def assert_terms(terms, expected):
    assert set(terms) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(float(terms[name]), value, err_msg=name, **TOL)


def grad_norms(agent, params, target, batch, noise):
    """term -> module -> norm of d term / d module's parameters (all terms in one jitted pass)."""
    jac = jax.jit(jax.jacrev(lambda p: agent.loss_terms(p, target, batch, noise)[0]))(params)
    norm = lambda g: float(jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(g))))
    return {term: {k: norm(g) for k, g in grads.items()} for term, grads in jac.items()}


# ---- FQL ----------------------------------------------------------------------------------------
def fql_reference(c, params, target, batch, noise):
    s, a, r, m, s2 = unpack(batch)
    emb = c.time_embedding
    # critic: target critics aggregated by q_agg at the current actor's clipped next action
    a2 = np.clip(ref.actor(params["actor"], s2, noise["z_next"]), -1, 1)
    y = r + c.gamma * m * ref.agg(ref.critic(target["critic"], s2, a2), c.q_agg)
    critic_loss = np.mean((ref.critic(params["critic"], s, a) - y) ** 2)
    # actor: the MEAN of the two online critics, whatever q_agg
    a_flow = ref.euler(params["flow"], s, noise["z"], c.flow_steps, emb)
    a_raw = ref.actor(params["actor"], s, noise["z"])
    q = ref.critic(params["critic"], s, np.clip(a_raw, -1, 1)).mean(0)
    lam = 1.0 / np.mean(np.abs(q)) if c.normalize_q_loss else 1.0
    actor_loss = -lam * np.mean(q) + c.alpha * np.mean((a_raw - a_flow) ** 2)
    # flow BC: unweighted
    flow = ref.flow_matching_error(params["flow"], s, a, noise["eps"], noise["t"], emb).mean()
    return {"critic": critic_loss, "actor": actor_loss, "flow": flow}


FQL_VARIANTS = [
    {},
    {"normalize_q_loss": True},
    {"q_agg": "min", "alpha": 3.0},
    {"time_embedding": "sinusoidal", "flow_steps": 2},
]


@pytest.mark.parametrize("variant", FQL_VARIANTS, ids=lambda v: ",".join(v) or "default")
def test_fql_losses_match_reference(batch, noise, variant):
    agent = tiny("fql", **{"flow_steps": 3, **variant})
    params, target = params_and_targets(agent)
    terms, _ = agent.loss_terms(params, target, batch, noise)
    assert_terms(terms, fql_reference(agent.config, params, target, batch, noise))


def test_fql_normalisation_is_exactly_lambda(batch, noise):
    plain, normalised = tiny("fql", flow_steps=3), tiny("fql", flow_steps=3, normalize_q_loss=True)
    params, target = params_and_targets(plain)
    t0, m0 = plain.loss_terms(params, target, batch, noise)
    t1, m1 = normalised.loss_terms(params, target, batch, noise)
    lam = float(m0["actor/lambda"])
    np.testing.assert_allclose(float(m1["actor/q_loss"]), lam * float(m0["actor/q_loss"]), **TOL)
    # only the Q term of the actor changes
    np.testing.assert_allclose(
        float(t1["actor"] - t0["actor"]), float((lam - 1) * m0["actor/q_loss"]), **TOL
    )
    for name in ("critic", "flow"):
        assert float(t0[name]) == float(t1[name])


def test_fql_is_gfp_without_guidance(batch, noise):
    """GFP with eta = 0, mean aggregation, normalised Q and the scalar time input is FQL with
    normalize_q_loss (the paper: 'removing value-aware guidance yields FQL')."""
    fql = tiny("fql", flow_steps=3, normalize_q_loss=True, alpha=2.0)
    gfp = tiny("gfp", flow_steps=3, eta=0.0, q_agg="mean", time_embedding="scalar", alpha=2.0)
    params, target = params_and_targets(fql)
    gfp_params = {"critic": params["critic"], "actor": params["actor"], "vabc": params["flow"]}
    t_fql, _ = fql.loss_terms(params, target, batch, noise)
    t_gfp, _ = gfp.loss_terms(gfp_params, target, batch, noise)
    for a, b in (("critic", "critic"), ("actor", "actor"), ("flow", "vabc")):
        np.testing.assert_allclose(float(t_fql[a]), float(t_gfp[b]), rtol=1e-6)


def test_fql_stop_gradients(batch, noise):
    agent = tiny("fql", flow_steps=3)
    params, target = params_and_targets(agent)
    g = grad_norms(agent, params, target, batch, noise)
    actor, critic, flow = g["actor"], g["critic"], g["flow"]
    assert actor["flow"] == 0 and actor["critic"] == 0 and actor["actor"] > 0
    assert critic["actor"] == 0 and critic["flow"] == 0 and critic["critic"] > 0
    assert flow["actor"] == 0 and flow["critic"] == 0 and flow["flow"] > 0


# ---- ReBRAC -------------------------------------------------------------------------------------
def rebrac_reference(c, params, target, batch, noise):
    s, a, r, m, s2 = unpack(batch)
    smooth = np.clip(c.actor_noise * noise["eps"], -c.actor_noise_clip, c.actor_noise_clip)
    pi_bar = ref.deterministic_actor(target["actor"], s2, c.tanh_squash)
    a2 = np.clip(pi_bar + smooth, -1, 1)
    q_next = ref.agg(ref.critic(target["critic"], s2, a2), c.q_agg)
    q_next = q_next - c.alpha_critic * np.sum((a2 - batch["next_actions"]) ** 2, -1)
    y = r + c.gamma * m * q_next
    critic_loss = np.mean((ref.critic(params["critic"], s, a) - y) ** 2)
    a_pi = ref.deterministic_actor(params["actor"], s, c.tanh_squash)
    q = ref.agg(ref.critic(params["critic"], s, a_pi), c.q_agg)
    bc = np.mean(np.sum((a_pi - a) ** 2, -1))
    actor_loss = -np.mean(q) / np.mean(np.abs(q)) + c.alpha_actor * bc
    return {"critic": critic_loss, "actor": actor_loss}


REBRAC_VARIANTS = [
    {},
    {"q_agg": "mean"},
    {"tanh_squash": False, "alpha_critic": 0.0},
    {"actor_noise": 1.0, "actor_noise_clip": 2.0, "alpha_actor": 0.5, "alpha_critic": 0.3},
]


@pytest.mark.parametrize("variant", REBRAC_VARIANTS, ids=lambda v: ",".join(v) or "default")
def test_rebrac_losses_match_reference(batch, noise, variant):
    agent = tiny("rebrac", **variant)
    params, target = params_and_targets(agent)
    terms, _ = agent.loss_terms(params, target, batch, {"eps": noise["eps"]})
    assert_terms(terms, rebrac_reference(agent.config, params, target, batch, noise))


def test_rebrac_stop_gradients(batch, noise):
    agent = tiny("rebrac")
    params, target = params_and_targets(agent)
    g = grad_norms(agent, params, target, batch, {"eps": noise["eps"]})
    actor, critic = g["actor"], g["critic"]
    assert actor["critic"] == 0 and actor["actor"] > 0
    assert critic["actor"] == 0 and critic["critic"] > 0


def tree_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb, strict=True))


def test_rebrac_delayed_actor_updates(batch):
    """Update 1 (step 0) trains the critic only: the actor, its Adam state and both target copies
    stay exactly as they were; update 2 (actor_freq = 2) changes all of them."""
    agent = tiny("rebrac")
    update = jax.jit(agent.update)
    s0 = agent.init(jax.random.PRNGKey(0))
    s1, _ = update(s0, batch)
    assert not tree_equal(s1.params["critic"], s0.params["critic"])
    assert not tree_equal(s1.opt_state["critic"], s0.opt_state["critic"])
    assert tree_equal(s1.params["actor"], s0.params["actor"])
    assert tree_equal(s1.opt_state["actor"], s0.opt_state["actor"])  # moments and count
    assert tree_equal(s1.target_params, s0.target_params)

    s2, _ = update(s1, batch)
    assert not tree_equal(s2.params["actor"], s1.params["actor"])
    assert not tree_equal(s2.opt_state["actor"], s1.opt_state["actor"])
    tau = agent.config.tau
    for name in ("critic", "actor"):  # the reference code averages the pre-step parameters in
        expected = jax.tree.map(
            lambda o, t: tau * o + (1 - tau) * t, s1.params[name], s1.target_params[name]
        )
        for e, got in zip(
            jax.tree.leaves(expected), jax.tree.leaves(s2.target_params[name]), strict=True
        ):
            np.testing.assert_allclose(got, e, rtol=1e-6, atol=1e-7)
    # the actor's first real step is Adam's first step (count 1), as with its own optimizer
    assert int(s2.opt_state["actor"][0].count) == 1 and int(s2.opt_state["critic"][0].count) == 2


# ---- IQL ----------------------------------------------------------------------------------------
def iql_reference(c, params, target, batch):
    s, a, r, m, s2 = unpack(batch)
    v = ref.value(params["value"], s)[0]
    u = ref.critic(target["critic"], s, a).min(0) - v
    value_loss = np.mean(np.where(u >= 0, c.expectile, 1 - c.expectile) * u**2)
    y = r + c.gamma * m * ref.value(params["value"], s2)[0]
    critic_loss = np.sum(np.mean((ref.critic(params["critic"], s, a) - y) ** 2, 1))
    adv = ref.critic(params["critic"], s, a).min(0) - v
    with np.errstate(over="ignore"):  # exp overflows to inf for large alpha; the clip catches it
        w = np.minimum(np.exp(c.alpha * adv), 100.0)
    mean, log_std = ref.gaussian_actor(params["actor"], s, c.const_std)
    actor_loss = -np.mean(w * ref.gaussian_log_prob(mean, log_std, a))
    return {"value": value_loss, "critic": critic_loss, "actor": actor_loss}


def with_log_std(params, log_std=(-0.3, 0.4)):
    """Move a learned log-std away from its zero init, so it is really used."""
    if "log_std" not in params["actor"]:
        return params
    return {**params, "actor": {**params["actor"], "log_std": np.asarray(log_std, np.float32)}}


IQL_VARIANTS = [{}, {"const_std": False, "expectile": 0.7, "alpha": 3.0}, {"alpha": 300.0}]


@pytest.mark.parametrize("variant", IQL_VARIANTS, ids=lambda v: ",".join(v) or "default")
def test_iql_losses_match_reference(batch, variant):
    agent = tiny("iql", **variant)
    params, target = params_and_targets(agent)
    params = with_log_std(params)
    terms, _ = agent.loss_terms(params, target, batch, {})
    assert_terms(terms, iql_reference(agent.config, params, target, batch))


def test_iql_stop_gradients(batch):
    agent = tiny("iql")
    params, target = params_and_targets(agent)
    g = grad_norms(agent, params, target, batch, {})
    value, critic, actor = g["value"], g["critic"], g["actor"]
    assert actor["critic"] == 0 and actor["value"] == 0 and actor["actor"] > 0
    assert critic["value"] == 0 and critic["actor"] == 0 and critic["critic"] > 0
    assert value["critic"] == 0 and value["actor"] == 0 and value["value"] > 0


def test_expectile_loss_is_asymmetric():
    from gfp.agents.iql import expectile_loss

    u = jnp.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    np.testing.assert_allclose(expectile_loss(u, 0.9), [0.4, 0.1, 0.0, 0.9, 3.6], rtol=1e-6)


# ---- BC -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("const_std", [True, False])
def test_bc_loss_matches_reference(batch, const_std):
    agent = tiny("bc", const_std=const_std)
    params = with_log_std(params_and_targets(agent)[0])
    terms, _ = agent.loss_terms(params, {}, batch, {})
    mean, log_std = ref.gaussian_actor(params["actor"], batch["observations"], const_std)
    expected = -np.mean(ref.gaussian_log_prob(mean, log_std, batch["actions"]))
    assert_terms(terms, {"actor": expected})


@pytest.mark.parametrize("embedding", ["sinusoidal", "scalar"])
def test_flow_bc_loss_matches_reference(batch, noise, embedding):
    agent = tiny("flow_bc", time_embedding=embedding)
    params = params_and_targets(agent)[0]
    terms, _ = agent.loss_terms(params, {}, batch, noise)
    s, a = batch["observations"], batch["actions"]
    err = ref.flow_matching_error(params["flow"], s, a, noise["eps"], noise["t"], embedding)
    assert_terms(terms, {"flow": err.mean()})
    # acting: M Euler steps from z, clipped
    z = jax.random.normal(jax.random.PRNGKey(3), (B, ACT))
    got = agent.act(params, s, jax.random.PRNGKey(3), "actor")
    expected = ref.euler(params["flow"], s, np.asarray(z), agent.config.flow_steps, embedding)
    np.testing.assert_allclose(np.asarray(got), expected, **TOL)


# ---- data: next actions -------------------------------------------------------------------------
def test_next_actions_stay_within_episodes():
    actions = np.arange(10, dtype=np.float32).reshape(5, 2)  # rows 0..4: a_i = (2i, 2i + 1)
    terminals = np.array([0, 1, 0, 0, 0], np.float32)  # episodes: rows 0-1, rows 2-4
    got = next_actions({"actions": actions, "terminals": terminals})
    np.testing.assert_array_equal(got, actions[[1, 1, 3, 4, 4]])
    # without episode ends: one stream shifted by one (FQL's implementation), last row repeated
    np.testing.assert_array_equal(next_actions({"actions": actions}), actions[[1, 2, 3, 4, 4]])
    transitions = {**synthetic_transitions(5), "actions": actions, "terminals": terminals}
    data = make_sampler(transitions).data
    np.testing.assert_array_equal(data["next_actions"], actions[[1, 1, 3, 4, 4]])
    assert "next_actions" not in make_sampler(transitions, AGENTS["gfp"].batch_keys).data


def test_train_reports_missing_batch_keys():
    agent = tiny("rebrac", batch_size=4)
    data = make_sampler(synthetic_transitions(8), AGENTS["gfp"].batch_keys)
    with pytest.raises(ValueError, match="next_actions"):
        train(agent, data, None, steps=1, progress=False)  # type: ignore[arg-type]  # fails first


# ---- registry, configs, training smoke runs -----------------------------------------------------
def test_registry_and_configs():
    assert set(AGENTS) == {"gfp", "fql", "rebrac", "iql", "bc", "flow_bc", "qc"}
    for name, cls in AGENTS.items():
        helps = cls.Config.field_help()
        assert all(helps[f.name] for f in dataclasses.fields(cls.Config)), name
        with pytest.raises(dataclasses.FrozenInstanceError):
            cls.Config().lr = 1.0  # type: ignore[misc]
        assert "actor" in cls.policies
    fql, rebrac, iql = (AGENTS[n].Config() for n in ("fql", "rebrac", "iql"))
    assert (fql.alpha, fql.normalize_q_loss, fql.q_agg, fql.time_embedding) == (
        10.0, False, "mean", "scalar")  # fmt: skip
    assert (rebrac.actor_freq, rebrac.actor_noise, rebrac.actor_noise_clip) == (2, 0.2, 0.5)
    assert (rebrac.q_agg, rebrac.tanh_squash) == ("min", True)
    assert (iql.alpha, iql.expectile, iql.const_std) == (10.0, 0.9, True)
    assert AGENTS["bc"].targets == AGENTS["flow_bc"].targets == ()


def synthetic_transitions(n, seed=0):
    """Episodes of 20 steps: a reward for actions near a state-dependent target."""
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n, OBS)).astype(np.float32)
    a = np.clip(0.5 * s[:, :ACT] + 0.3 * rng.normal(size=(n, ACT)), -1, 1).astype(np.float32)
    return {
        "observations": s,
        "actions": a,
        "rewards": -np.sum((a - 0.5 * s[:, :ACT]) ** 2, -1).astype(np.float32),
        "masks": np.ones(n, np.float32),
        "next_observations": np.roll(s, -1, axis=0),
        "terminals": (np.arange(n) % 20 == 19).astype(np.float32),
    }


@pytest.mark.parametrize("name", ["fql", "rebrac", "iql", "bc", "flow_bc"])
def test_training_smoke(name):
    agent = tiny(name, batch_size=16)
    # = init_states(agent, [0]), without compiling the vmapped init (the eager one is warm here)
    states = jax.tree.map(lambda x: x[None], agent.init(jax.random.PRNGKey(0)))
    before = jax.device_get(unstack(states, 0))
    rows = []
    after = train(
        agent,
        make_sampler(synthetic_transitions(200), agent.batch_keys),
        states,
        steps=50,
        log_every=50,
        progress=False,
        on_log=lambda step, r: rows.extend(r),
    )
    after = jax.device_get(unstack(after, 0))
    assert int(after.step) == 50 and len(rows) == 1
    assert all(np.isfinite(v) for v in rows[0].values()), rows[0]
    for module in before.params:
        assert not tree_equal(after.params[module], before.params[module]), module
    for module in agent.targets:
        assert not tree_equal(after.target_params[module], before.target_params[module]), module
    obs = jnp.asarray(synthetic_transitions(8, seed=1)["observations"])
    for policy in agent.policies:
        actions = np.asarray(agent.policy_fn(policy)(after.params, obs, jax.random.PRNGKey(0)))
        assert actions.shape == (8, ACT) and np.all(np.abs(actions) <= 1.0)
