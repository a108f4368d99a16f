"""The one-step flow agents' common core, `OneStepFlow`: what GFP keeps from FQL (Flow Q-Learning;
Park, Li, Levine, ICML 2025), whose code GFP's authors forked. gfp.agents.gfp (GFP) and
gfp.agents.fql (FQL) subclass it and write their own `loss_terms` from its pieces.

Action chunking (horizon h > 1; Q-chunking, QC: Li, Zhou, Levine, NeurIPS 2025, Sec. 4, its
"QC-FQL"): the actor, the flow and the critic act on chunks of h actions flattened to h*A; the
batch is an h-step window (gfp.agents.base: `batch_actions`, `step_mask`, `td_weight`):
  y        = R_t^h + gamma^h * mask * Qagg_phibar(s_(t+h), a'),  R_t^h = sum_i gamma^i r_(t+i)
  L_critic = mean_k,batch (Q_phi^k(s, a_chunk) - y)^2 * valid_(h-1)
  L_flow   = mean_batch,(i,j) valid_i * (v_omega(t, s, a_t) - (a_chunk - eps))_(i,j)^2
and the actor's distillation and Q terms cover the whole chunk, unmasked: QC's code does not mask
its distillation loss (the issue asked for "valid steps only"; we follow QC's code). With
action_chunking False the networks see the window's first action only (QC's "FQL-n": the h-step
return with one action), the flow loss is unmasked and the critic still weighted by valid_(h-1).
horizon 1 runs exactly the single-step code.
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp

from gfp.agents.base import Agent, Batch, Metrics, Params, aggregate
from gfp.agents.networks import (
    OneStepActor,
    VelocityField,
    euler_flow,
    flow_matching_error,
)

sg = jax.lax.stop_gradient


class OneStepFlow(Agent):
    """What GFP keeps from FQL (the same networks and optimiser, paper Tab. 4 and App. A), shared
    by both agents (gfp.agents.gfp, gfp.agents.fql):
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
        matching eps and t, which are independent of z (docs/paper-vs-code.md #10)."""
        shape = batch["actions"].shape if self.horizon == 1 else self.batch_actions(batch).shape
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
        """mean over both critics and the batch of (Q_phi^k(s, a) - y)^2; returns (loss, Q^k).
        An h-step window: a = the chunk (or its first action), each error weighted by
        valid_(h-1) (QC's critic loss)."""
        if self.horizon == 1:
            q_all = self.nets["critic"][0].apply(
                {"params": params["critic"]}, batch["observations"], batch["actions"]
            )
            return jnp.mean((q_all - y) ** 2), q_all
        q_all = self.nets["critic"][0].apply(
            {"params": params["critic"]}, batch["observations"], self.batch_actions(batch)
        )
        return jnp.mean((q_all - y) ** 2 * self.td_weight(batch)), q_all

    def bellman_target(self, batch: Batch, q_next: jax.Array) -> jax.Array:
        """y = r + gamma * mask * q_next (horizon 1), or the h-step R + gamma^h * mask * q_next of
        a window (QC; its rewards and masks come summed and min-ed over the window); no
        gradient."""
        if self.horizon == 1:
            return sg(batch["rewards"] + self.config.gamma * batch["masks"] * q_next)
        return sg(batch["rewards"] + self.discount() * batch["masks"] * q_next)

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

    def flow_error(self, params: Params, obs, actions, eps, t, mask=None) -> jax.Array:
        """Per-sample flow-matching error of the BC flow, mean over action dims, shape (batch,);
        `mask`: an action chunk's valid coordinates (`step_mask`)."""
        flow = self.nets[self.flow_module][0]
        p = {"params": params[self.flow_module]}
        if mask is None:
            return flow_matching_error(flow, p, obs, actions, eps, t)
        return flow_matching_error(flow, p, obs, actions, eps, t, mask)
