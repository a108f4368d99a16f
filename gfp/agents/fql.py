"""Flow Q-Learning (FQL; Park, Li, Levine, ICML 2025), as in its reference code (seohongpark/fql,
agents/fql.py). GFP is a fork of it, so both build on `OneStepFlow` (gfp.agents.onestep): the same
critic ensemble, one-step actor, BC flow network, noise and loss pieces.

Three networks, one Adam step on the sum of their losses:
  L_critic = mean_k,batch (Q_phi^k(s, a) - y)^2,   y = r + gamma * mask * Qagg_phibar(s', a'),
             a' = clip(mu_theta(s', z'))                      (Qagg: q_agg, 'mean' by default)
  L_actor  = -lambda * mean_k Q_phi^k(s, clip(mu_theta(s, z)))
             + alpha * mean_j (mu_theta(s, z) - sg mu_omega(s, z))_j^2     (the same z in both)
             lambda = sg(1 / mean_batch |Q|) if normalize_q_loss, else 1 (FQL's default)
  L_flow   = mean_batch,j (v_omega(t, s, a_t) - (a - eps))_j^2,   a_t = (1 - t) eps + t a

What makes this FQL rather than GFP with eta = 0 (docs/paper-vs-code.md #5, #9, #12): the actor
loss always averages the two critics (q_agg only sets the Bellman target), the Q term is
unnormalised by default (so alpha is on FQL's scale, 1 to 30000, not GFP's), the flow takes the
raw scalar t, and the flow-matching loss is unweighted.

With horizon h > 1 this is QC's "QC-FQL" (Li, Zhou, Levine 2025; its acfql.py, actor_type
'distill-ddpg'): the same three losses on action chunks and h-step windows (gfp.agents.onestep):
y = R_t^h + gamma^h * mask * Qagg_phibar(s_(t+h), clip(mu_theta(s_(t+h), z'))), the TD error
weighted by valid_(h-1), the flow loss masked per step by valid, the actor's terms over the whole
chunk (unmasked, as QC). action_chunking False: QC's "FQL-n".
"""

from __future__ import annotations

from gfp.agents.base import Batch, Params, critic_metrics
from gfp.agents.configs import FQLConfig as Config
from gfp.agents.onestep import OneStepFlow


class FQL(OneStepFlow):
    name = "fql"
    Config = Config
    flow_module = "flow"
    policies = ("actor", "flow")  # the one-step policy, and the BC flow as a by-product
    targets = ("critic",)
    config: Config

    def loss_terms(self, params: Params, target_params: Params, batch: Batch, noise: dict):
        s, a = batch["observations"], self.batch_actions(batch)  # a: the chunk for horizon > 1

        # Critic: y = r + gamma * mask * Qagg_phibar(s', clip(mu_theta(s', z'))), no gradient in y
        # (h-step windows: R + gamma^h * mask * Q, onestep.bellman_target).
        q_next = self.next_value(params, target_params, batch, noise["z_next"])
        y = self.bellman_target(batch, q_next)
        critic_loss, q_all = self.td_loss(params, batch, y)

        # Actor: -lambda Q + alpha * distillation, Q the MEAN of the two critics whatever q_agg.
        actor_loss, p = self.actor_loss(params, s, noise["z"], q_agg="mean")

        # BC flow: plain (unweighted) flow matching on the dataset actions (a chunk: its steps
        # after a terminal masked out, as QC).
        flow_err = self.flow_error(params, s, a, noise["eps"], noise["t"], self.step_mask(batch))
        flow_loss = flow_err.mean()

        metrics = {
            **critic_metrics(critic_loss, q_all, y),
            **self.actor_metrics(actor_loss, p),
            "flow/loss": flow_loss,
        }
        return {"critic": critic_loss, "actor": actor_loss, "flow": flow_loss}, metrics
