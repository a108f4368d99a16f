"""Guided Flow Policy (GFP; Nguimatsia Tiofack, Le Hellard, Schramm et al., ICLR 2026).

Three networks trained jointly with one Adam step on the sum of their losses (GFP.md section 2):
  * critic Q_phi: 2-member ensemble (LayerNorm), target copy Q_phibar (Polyak, tau);
  * VaBC flow policy pi_omega: velocity field v_omega(t, s, x), sampled by M Euler steps (mu_omega);
  * one-step actor pi_theta: mu_theta(s, z), distilled from VaBC while maximising Q.

Losses (equation numbers are the paper's):
  (6)  L_C = mean_k,batch (Q_phi^k(s, a) - y)^2,   y = r + gamma * mask * Qagg_phibar(s', a'),
       a' = clip(mu_theta(s', z'));  (7) y_VaBC also averages in the VaBC action mu_omega(., z')
  (8)  L_A = -lambda * Qagg_phi(s, clip(mu_theta(s, z)))
             + alpha * mean_j (mu_theta(s, z) - sg mu_omega(s, z))^2,
       lambda = sg(1 / mean_batch |Qagg_phi(s, clip(mu_theta(s, z)))|)
  (9)  L_VaBC = mean_batch g(s, a) * mean_j (v_omega(t, s, a_t) - (a - eps))^2,
       a_t = (1 - t) eps + t a
  (10) g = sigmoid((lambda / eta) (Q(s, a) - Q(s, a_theta)))
Where the paper and the authors' code disagree (GFP.md section 7) both are options; the defaults
reproduce the published numbers (the code's behaviour).
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp

from gfp.agents.base import Agent, Batch, Metrics, Params, aggregate, critic_metrics
from gfp.agents.configs import GFPConfig as Config
from gfp.agents.networks import (
    OneStepActor,
    VelocityField,
    euler_flow,
    flow_matching_error,
)

sg = jax.lax.stop_gradient


class OneStepFlow(Agent):
    """What GFP keeps from FQL (GFP.md 1.7), shared by both agents (gfp.agents.fql):
    a 2-critic ensemble with a target copy, a one-step actor mu_theta(s, z), a BC flow v(t, s, x)
    named `flow_module`, one z shared by the actor and its distillation target, and the pieces of
    the losses that are the same in both. Subclasses write their loss_terms from these pieces.

    The config must provide alpha, flow_steps, q_agg, normalize_q_loss and time_embedding.
    """

    flow_module: ClassVar[str]  # name of the BC flow network, and of its evaluation policy
    targets = ("critic",)

    def networks(self):
        c, d = self.config, self.action_dim
        obs, act, t = self.example_inputs()
        flow = VelocityField(c.actor_hidden_dims, d, c.time_embedding, encoder=self.encoder())
        return {
            "critic": (self.critic_network(), (obs, act)),
            "actor": (OneStepActor(c.actor_hidden_dims, d, encoder=self.encoder()), (obs, act)),
            self.flow_module: (flow, (obs, act, t)),
        }

    # ---- the two policies' actions and the critic ----------------------------------------------
    def actor_action(self, params: Params, obs: jax.Array, z: jax.Array) -> jax.Array:
        """mu_theta(s, z), unclipped (the distillation loss uses it unclipped)."""
        return self.apply("actor", params, obs, z)

    def flow_action(self, params: Params, obs: jax.Array, z: jax.Array) -> jax.Array:
        """mu_omega(s, z): M Euler steps of the BC flow from z, clipped to [-1, 1]."""
        flow = self.nets[self.flow_module][0]
        return euler_flow(
            flow, {"params": params[self.flow_module]}, obs, z, self.config.flow_steps
        )

    def q(self, critic_params: Params, obs: jax.Array, actions: jax.Array, how: str | None = None):
        """Aggregated ensemble value Qagg(s, a) with the given critic parameters; `how` defaults to
        the config's q_agg."""
        q_all = self.nets["critic"][0].apply({"params": critic_params}, obs, actions)
        return aggregate(q_all, how or self.config.q_agg)

    def action(
        self, params: Params, obs: jax.Array, z: jax.Array, policy: str = "actor"
    ) -> jax.Array:
        if policy == self.flow_module:
            return self.flow_action(params, obs, z)
        return jnp.clip(self.actor_action(params, obs, z), -1.0, 1.0)

    # ---- shared loss pieces ---------------------------------------------------------------------
    def sample_noise(self, rng: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        """All randomness of one update: z' (target), z (actor/distillation/guidance), and the flow
        matching eps and t, which are independent of z (GFP.md ambiguity 10)."""
        shape = batch["actions"].shape
        k_next, k_z, k_eps, k_t = jax.random.split(rng, 4)
        return {
            "z_next": jax.random.normal(k_next, shape),
            "z": jax.random.normal(k_z, shape),
            "eps": jax.random.normal(k_eps, shape),
            "t": jax.random.uniform(k_t, shape[:1]),
        }

    def next_value(self, params: Params, target_params: Params, batch: Batch, z: jax.Array):
        """Qagg_phibar(s', a'), a' = clip(mu_theta(s', z')): the current actor (no target actor)."""
        s_next = batch["next_observations"]
        a_next = jnp.clip(self.actor_action(params, s_next, z), -1.0, 1.0)
        return self.q(target_params["critic"], s_next, a_next)

    def td_loss(self, params: Params, batch: Batch, y: jax.Array) -> tuple[jax.Array, jax.Array]:
        """mean over both critics and the batch of (Q_phi^k(s, a) - y)^2; returns (loss, Q^k)."""
        q_all = self.nets["critic"][0].apply(
            {"params": params["critic"]}, batch["observations"], batch["actions"]
        )
        return jnp.mean((q_all - y) ** 2), q_all

    def actor_loss(self, params: Params, obs: jax.Array, z: jax.Array, q_agg: str):
        """The one-step actor's loss (GFP Eq. 8 and FQL's), with one z for both actions:

            -lambda Qagg_phi(s, clip(mu_theta(s, z))) + alpha mean_j (mu_theta - sg mu_omega)_j^2

        lambda = sg(1 / mean|Qagg|) if normalize_q_loss else 1; Qagg aggregates the critics by
        `q_agg`. The critic is frozen (gradient reaches theta through the action only) and the flow
        target is under stop-gradient. Returns (loss, parts); parts holds the clipped actor action
        and the flow action, which GFP's guidance reuses."""
        c = self.config
        a_flow = sg(self.flow_action(params, obs, z))  # current omega, no gradient
        a_theta_raw = self.actor_action(params, obs, z)
        distill = jnp.mean((a_theta_raw - a_flow) ** 2)  # mean over dims and batch, unclipped
        a_theta = jnp.clip(a_theta_raw, -1.0, 1.0)
        q_pi = self.q(sg(params["critic"]), obs, a_theta, q_agg)  # online critic, params frozen
        lam = sg(1.0 / jnp.mean(jnp.abs(q_pi)))
        q_loss = -(lam if c.normalize_q_loss else 1.0) * jnp.mean(q_pi)
        parts = {
            "a_theta": a_theta,
            "a_flow": a_flow,
            "q_pi": q_pi,
            "lam": lam,
            "distill": distill,
            "q_loss": q_loss,
        }
        return q_loss + c.alpha * distill, parts

    @staticmethod
    def actor_metrics(actor_loss: jax.Array, parts: dict) -> Metrics:
        """What both agents log about the one-step actor (parts: from `actor_loss`)."""
        return {
            "actor/loss": actor_loss,
            "actor/q_loss": parts["q_loss"],
            "actor/q_mean": parts["q_pi"].mean(),
            "actor/distill": parts["distill"],
            "actor/lambda": parts["lam"],
        }

    def flow_error(self, params: Params, obs, actions, eps, t) -> jax.Array:
        """Per-sample flow-matching error of the BC flow, mean over action dims, shape (batch,)."""
        flow = self.nets[self.flow_module][0]
        return flow_matching_error(flow, {"params": params[self.flow_module]}, obs, actions, eps, t)


class GFP(OneStepFlow):
    name = "gfp"
    Config = Config
    flow_module = "vabc"
    policies = ("actor", "vabc")
    targets = ("critic",)
    config: Config

    def vabc_action(self, params: Params, obs: jax.Array, z: jax.Array) -> jax.Array:
        """mu_omega(s, z): M Euler steps of the VaBC flow from z, clipped to [-1, 1]."""
        return self.flow_action(params, obs, z)

    # ---- losses -------------------------------------------------------------------------------
    def critic_target(self, params: Params, target_params: Params, batch: Batch, z: jax.Array):
        """y = r + gamma * mask * q_next (Eq. 6 / Eq. 7); no gradient flows through it."""
        c = self.config
        s_next = batch["next_observations"]
        q_actor = self.next_value(params, target_params, batch, z)
        if c.target_agg == "actor":
            q_next = q_actor
        else:
            # The paper's runs computed the VaBC action at s (target_use_next=False), see Config.
            s_vabc = s_next if c.target_use_next else batch["observations"]
            q_vabc = self.q(target_params["critic"], s_next, self.vabc_action(params, s_vabc, z))
            q_next = {
                "mean": 0.5 * (q_actor + q_vabc),
                "vabc": q_vabc,
                "min": jnp.minimum(q_actor, q_vabc),
                "max": jnp.maximum(q_actor, q_vabc),
            }[c.target_agg]
        return sg(batch["rewards"] + c.gamma * batch["masks"] * q_next)

    def guidance(self, q_data: jax.Array, q_ref: jax.Array, lam: jax.Array) -> jax.Array:
        """g(s, a) from Eq. 10 (softmax) or Eq. 11 (advantage); eta = 0 gives g = 1 (no
        weighting)."""
        c = self.config
        if c.eta == 0:
            return jnp.ones_like(q_data)
        x = (lam / c.eta) * (q_data - q_ref)
        return jax.nn.sigmoid(x) if c.guidance_fn == "softmax" else jnp.exp(x)

    def loss_terms(self, params: Params, target_params: Params, batch: Batch, noise: dict):
        c = self.config
        s, a = batch["observations"], batch["actions"]
        metrics: Metrics = {}

        # Critic (Eq. 6/7). Actor and VaBC appear only inside the stop-gradient target.
        y = self.critic_target(params, target_params, batch, noise["z_next"])
        critic_loss, q_all = self.td_loss(params, batch, y)

        # Actor (Eq. 8): one z shared by the actor action, the distillation target and guidance;
        # the critics aggregated by q_agg (FQL: always their mean).
        actor_loss, p = self.actor_loss(params, s, noise["z"], c.q_agg)
        a_theta, a_omega, lam = p["a_theta"], p["a_flow"], p["lam"]

        # VaBC (Eq. 9/10): flow matching on the linear path, each sample weighted by g.
        flow_err = self.flow_error(params, s, a, noise["eps"], noise["t"])
        g_critic = target_params["critic"] if c.guidance_critic == "target" else params["critic"]
        g_critic = sg(g_critic)
        q_data = self.q(g_critic, s, a)
        q_ref = self.q(g_critic, s, sg(a_theta))
        if c.guidance_agg == "min":  # g_min (Eq. 13)
            q_ref = jnp.minimum(q_ref, self.q(g_critic, s, a_omega))
        g = sg(self.guidance(q_data, q_ref, lam))
        vabc_loss = jnp.mean(g * flow_err)

        metrics |= {
            **critic_metrics(critic_loss, q_all, y),
            **self.actor_metrics(actor_loss, p),
            "vabc/loss": vabc_loss,
            "vabc/flow_error": flow_err.mean(),
            "vabc/g_mean": g.mean(),
            "vabc/g_frac_above_half": jnp.mean(g > 0.5),
            "vabc/q_gap_mean": jnp.mean(q_data - q_ref),
        }
        terms = {"critic": critic_loss, "actor": actor_loss, "vabc": vabc_loss}
        return terms, metrics
