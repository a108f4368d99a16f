"""Implicit Q-Learning (IQL; Kostrikov, Nair, Levine, ICLR 2022), as implemented in FQL's code
(seohongpark/fql, agents/iql.py, actor_loss='awr').

A value V_psi(s), a 2-critic ensemble Q_phi with a target copy Q_phibar, and a Gaussian actor
pi(a | s), trained jointly with one Adam step; no term is differentiated through another network:
  L_V  = mean_batch |tau - 1(u < 0)| u^2,   u = min_k Q_phibar^k(s, a) - V_psi(s)   (expectile tau)
  L_Q  = sum_k mean_batch (Q_phi^k(s, a) - y)^2,   y = r + gamma * mask * V_psi(s')
  L_pi = -mean_batch w(s, a) log pi(a | s),   w = min(exp(alpha * A(s, a)), 100),
         A(s, a) = min_k Q_phi^k(s, a) - V_psi(s)
alpha is the inverse temperature of advantage-weighted regression (AWR). The critic loss SUMS the
two critics' errors, as FQL's code does (the other agents average; with Adam the factor 2 hardly
matters). The policy acts with its mean (FQL evaluates at temperature 0).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gfp.agents.base import Agent, Batch, GaussianMeanPolicy, Params
from gfp.agents.configs import IQLConfig as Config
from gfp.agents.networks import GaussianActor, Value, gaussian_log_prob

sg = jax.lax.stop_gradient


def expectile_loss(u: jax.Array, expectile: float) -> jax.Array:
    """|tau - 1(u < 0)| u^2, elementwise: u > 0 (V below its target) weighs tau."""
    return jnp.where(u >= 0, expectile, 1.0 - expectile) * u**2


class IQL(GaussianMeanPolicy, Agent):
    name = "iql"
    Config = Config
    policies = ("actor",)
    targets = ("critic",)
    config: Config

    def networks(self):
        c, d = self.config, self.action_dim
        obs, act, _ = self.example_inputs()
        actor = GaussianActor(c.actor_hidden_dims, d, const_std=c.const_std, encoder=self.encoder())
        return {
            "value": (Value(c.value_hidden_dims, c.layer_norm, encoder=self.encoder()), (obs,)),
            "critic": (self.critic_network(), (obs, act)),
            "actor": (actor, (obs,)),
        }

    def v(self, value_params: Params, obs: jax.Array) -> jax.Array:
        return self.nets["value"][0].apply({"params": value_params}, obs)[0]  # one member

    def q_min(self, critic_params: Params, obs: jax.Array, actions: jax.Array) -> jax.Array:
        return self.nets["critic"][0].apply({"params": critic_params}, obs, actions).min(axis=0)

    def loss_terms(self, params: Params, target_params: Params, batch: Batch, noise: dict):
        c = self.config
        s, a = batch["observations"], batch["actions"]

        # Value: expectile regression of V(s) onto the target critics' min at the dataset action.
        v = self.v(params["value"], s)
        u = sg(self.q_min(target_params["critic"], s, a)) - v
        value_loss = jnp.mean(expectile_loss(u, c.expectile))

        # Critic: regress on r + gamma * mask * V(s'), V frozen.
        v_next = self.v(params["value"], batch["next_observations"])
        y = sg(batch["rewards"] + c.gamma * batch["masks"] * v_next)
        q_all = self.nets["critic"][0].apply({"params": params["critic"]}, s, a)
        critic_loss = jnp.sum(jnp.mean((q_all - y) ** 2, axis=1))

        # Actor: advantage-weighted regression; the weights carry no gradient.
        adv = sg(self.q_min(params["critic"], s, a) - self.v(params["value"], s))
        w = jnp.minimum(jnp.exp(c.alpha * adv), 100.0)
        mean, log_std = self.apply("actor", params, s)
        log_prob = gaussian_log_prob(mean, log_std, a)
        actor_loss = -jnp.mean(w * log_prob)

        metrics = {
            "value/loss": value_loss,
            "value/v_mean": v.mean(),
            "critic/loss": critic_loss,
            "critic/q_mean": q_all.mean(),
            "critic/target_mean": y.mean(),
            "actor/loss": actor_loss,
            "actor/adv_mean": adv.mean(),
            "actor/weight_mean": w.mean(),
            "actor/log_prob": log_prob.mean(),
            "actor/mse": jnp.mean((mean - a) ** 2),
            "actor/std": jnp.exp(log_std).mean(),
        }
        return {"value": value_loss, "critic": critic_loss, "actor": actor_loss}, metrics
