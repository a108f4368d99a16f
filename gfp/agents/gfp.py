"""Guided Flow Policy (GFP; Nguimatsia Tiofack, Le Hellard, Schramm et al., ICLR 2026).

Three networks trained jointly with one Adam step on the sum of their losses (the paper's
Algorithm 1 as the authors' code runs it, docs/paper-vs-code.md #8):
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
Where the paper and the authors' code disagree (docs/paper-vs-code.md) both are options; the
defaults reproduce the published numbers (the code's behaviour).

Action chunking (horizon h > 1; Q-chunking, QC: Li, Zhou, Levine, NeurIPS 2025, Sec. 4): GFP on
chunks of h actions and h-step windows, built as QC builds QC-FQL from FQL (gfp.agents.onestep):
  (6)  y = R_t^h + gamma^h * mask * Qagg_phibar(s_(t+h), a'), a' the actor's next chunk (and for
       y_VaBC, Eq. 7, the VaBC chunk, at s_(t+h) or s_t as target_use_next says); the TD error
       weighted by valid_(h-1) (QC's critic loss);
  (8)  the actor's Q and distillation terms over the whole chunk, unmasked (QC does not mask its
       distillation loss; we follow its code, not the issue's "valid steps only");
  (9)  each sample's flow error is the valid-masked mean over the chunk's (step, dim) coordinates
       (QC's BC flow loss), weighted by
  (10) g = sigmoid((lambda / eta) (Q(s, a_chunk) - Q(s, a_theta_chunk))), the chunk critic.
Choices GFP has and QC has no counterpart for: g scores the dataset's WHOLE chunk, its steps after
a terminal included (the critic only knows whole chunks, and those samples' flow error is masked
there anyway, so g only reweights their valid steps); lambda (Eq. 8) is taken over chunk values
as they are; the VaBC next chunk of y_VaBC is drawn with the same z' as the actor's. With
action_chunking False (QC's "FQL-n"): every network sees the window's first action, the flow loss
is unmasked, and the critic keeps the h-step target and the valid_(h-1) weight.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gfp.agents.base import Batch, Metrics, Params, critic_metrics
from gfp.agents.configs import GFPConfig as Config
from gfp.agents.onestep import OneStepFlow

sg = jax.lax.stop_gradient


class GFP(OneStepFlow):
    name = "gfp"
    Config = Config
    flow_module = "vabc"
    policies = ("actor", "vabc")
    targets = ("critic",)
    config: Config

    # ---- losses -------------------------------------------------------------------------------
    def critic_target(self, params: Params, target_params: Params, batch: Batch, z: jax.Array):
        """y = r + gamma * mask * q_next (Eq. 6 / Eq. 7), gamma^h for an h-step window; no
        gradient flows through it."""
        c = self.config
        s_next = batch["next_observations"]
        q_actor = self.next_value(params, target_params, batch, z)
        if c.target_agg == "actor":
            q_next = q_actor
        else:
            # The paper's runs computed the VaBC action at s (target_use_next=False), see Config.
            s_vabc = s_next if c.target_use_next else batch["observations"]
            q_vabc = self.q(target_params["critic"], s_next, self.flow_action(params, s_vabc, z))
            q_next = {
                "mean": 0.5 * (q_actor + q_vabc),
                "vabc": q_vabc,
                "min": jnp.minimum(q_actor, q_vabc),
                "max": jnp.maximum(q_actor, q_vabc),
            }[c.target_agg]
        return self.bellman_target(batch, q_next)  # h-step windows: R + gamma^h * mask * q_next

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
        s, a = batch["observations"], self.batch_actions(batch)  # a: the chunk for horizon > 1
        metrics: Metrics = {}

        # Critic (Eq. 6/7). Actor and VaBC appear only inside the stop-gradient target.
        y = self.critic_target(params, target_params, batch, noise["z_next"])
        critic_loss, q_all = self.td_loss(params, batch, y)

        # Actor (Eq. 8): one z shared by the actor action, the distillation target and guidance;
        # the critics aggregated by q_agg (FQL: always their mean).
        actor_loss, p = self.actor_loss(params, s, noise["z"], c.q_agg)
        a_theta, a_omega, lam = p["a_theta"], p["a_flow"], p["lam"]

        # VaBC (Eq. 9/10): flow matching on the linear path, each sample weighted by g.
        flow_err = self.flow_error(params, s, a, noise["eps"], noise["t"], self.step_mask(batch))
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
