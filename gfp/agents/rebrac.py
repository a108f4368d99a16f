"""ReBRAC (Tarasov et al., NeurIPS 2023), as implemented in FQL's code (seohongpark/fql,
agents/rebrac.py): TD3+BC with LayerNorm critics and separate actor and critic BC penalties.

A deterministic actor pi(s) = tanh(MLP(s)) with a target copy pi_bar, and a 2-critic ensemble with a
target copy Q_phibar:
  a'       = clip(pi_bar(s') + clip(sigma * eps, -c, c), -1, 1)          (target policy smoothing)
  y        = r + gamma * mask * (Qagg_phibar(s', a') - alpha_critic * sum_j (a' - a'_data)_j^2)
  L_critic = mean_k,batch (Q_phi^k(s, a) - y)^2
  L_actor  = -lambda * mean_batch Qagg_phi(s, pi(s))
             + alpha_actor * mean_batch sum_j (pi(s) - a)_j^2
             lambda = sg(1 / mean_batch |Qagg_phi(s, pi(s))|)             (the critic frozen)
a'_data is the dataset's next action (batch key next_actions, see gfp.engine.samplers.next_actions).

Delayed updates (TD3): the critic learns every step; the actor and BOTH target copies change only
on every `actor_freq`-th update (FQL's `full_update`, i.e. updates actor_freq, 2 actor_freq, ...).
On the other steps the actor keeps its parameters and its Adam moments (`schedule`), as with the
separate actor optimizer of the original ReBRAC. (FQL's code instead takes a joint Adam step with
a zero actor loss there, which still moves the actor through Adam momentum.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gfp.agents.base import BATCH_KEYS, Agent, Batch, Params, aggregate, critic_metrics
from gfp.agents.configs import ReBRACConfig as Config
from gfp.agents.networks import DeterministicActor

sg = jax.lax.stop_gradient


class ReBRAC(Agent):
    name = "rebrac"
    Config = Config
    policies = ("actor",)
    targets = ("critic", "actor")
    base_batch_keys = (*BATCH_KEYS, "next_actions")
    config: Config

    def networks(self):
        c, d = self.config, self.action_dim
        obs, act, _ = self.example_inputs()
        actor = DeterministicActor(c.actor_hidden_dims, d, c.tanh_squash, encoder=self.encoder())
        return {
            "critic": (self.critic_network(), (obs, act)),
            "actor": (actor, (obs,)),
        }

    def pi(self, actor_params: Params, obs: jax.Array) -> jax.Array:
        """pi(s): tanh(MLP(s)), or the raw MLP output without tanh_squash (FQL's `dist.mode()`)."""
        return self.nets["actor"][0].apply({"params": actor_params}, obs)

    def q(self, critic_params: Params, obs: jax.Array, actions: jax.Array) -> jax.Array:
        q_all = self.nets["critic"][0].apply({"params": critic_params}, obs, actions)
        return aggregate(q_all, self.config.q_agg)

    def action(
        self, params: Params, obs: jax.Array, z: jax.Array, policy: str = "actor"
    ) -> jax.Array:
        """Deterministic pi(s) (FQL evaluates with temperature 0: no exploration noise)."""
        return jnp.clip(self.pi(params["actor"], obs), -1.0, 1.0)

    def explore_action(
        self, params: Params, obs: jax.Array, z: jax.Array, policy: str = "actor"
    ) -> jax.Array:
        """Online collection: pi(s) + clip(actor_noise * z, -actor_noise_clip, actor_noise_clip),
        clipped to [-1, 1] (the reference's `sample_actions` at temperature 1)."""
        c = self.config
        noise = jnp.clip(c.actor_noise * z, -c.actor_noise_clip, c.actor_noise_clip)
        return jnp.clip(self.pi(params["actor"], obs) + noise, -1.0, 1.0)

    def schedule(self, step: jax.Array) -> dict[str, jax.Array]:
        full = (step + 1) % self.config.actor_freq == 0  # FQL: update i = step + 1 is 'full'
        return {"actor": full, "target/actor": full, "target/critic": full}

    def sample_noise(self, rng: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        """eps ~ N(0, I) of the target policy smoothing (scaled and clipped in the loss)."""
        return {"eps": jax.random.normal(rng, batch["actions"].shape)}

    def loss_terms(self, params: Params, target_params: Params, batch: Batch, noise: dict):
        c = self.config
        s, a, s_next = batch["observations"], batch["actions"], batch["next_observations"]

        # Critic: target actor with clipped smoothing noise; critic BC penalty inside the target.
        smoothing = jnp.clip(c.actor_noise * noise["eps"], -c.actor_noise_clip, c.actor_noise_clip)
        a_next = jnp.clip(self.pi(target_params["actor"], s_next) + smoothing, -1.0, 1.0)
        penalty_next = jnp.sum((a_next - batch["next_actions"]) ** 2, axis=-1)
        q_next = self.q(target_params["critic"], s_next, a_next) - c.alpha_critic * penalty_next
        y = sg(batch["rewards"] + c.gamma * batch["masks"] * q_next)
        q_all = self.nets["critic"][0].apply({"params": params["critic"]}, s, a)
        critic_loss = jnp.mean((q_all - y) ** 2)

        # Actor: normalised Q (critic frozen) plus the actor BC penalty.
        a_pi = self.pi(params["actor"], s)
        q_pi = self.q(sg(params["critic"]), s, a_pi)
        lam = sg(1.0 / jnp.mean(jnp.abs(q_pi)))
        q_loss = -lam * jnp.mean(q_pi)
        bc = jnp.mean(jnp.sum((a_pi - a) ** 2, axis=-1))
        actor_loss = q_loss + c.alpha_actor * bc

        metrics = {
            **critic_metrics(critic_loss, q_all, y),
            "critic/bc_penalty": penalty_next.mean(),
            "actor/loss": actor_loss,
            "actor/q_loss": q_loss,
            "actor/q_mean": q_pi.mean(),
            "actor/lambda": lam,
            "actor/bc_mse": bc,
        }
        return {"critic": critic_loss, "actor": actor_loss}, metrics
