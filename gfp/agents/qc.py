"""Q-chunking with a best-of-N policy (QC; Li, Zhou, Levine, NeurIPS 2025, Sec. 4, its
`actor_type='best-of-n'`): a BC flow over action chunks and a chunk critic, no actor network.

Two networks, one Adam step on the sum of their losses; a chunk is h actions flattened to h*A:
  pi(s)    = argmax_{a^n, n=1..N} Qagg_phi(s, a^n),  a^n = mu_omega(s, z^n),  z^n ~ N(0, I)
             (N = num_samples chunks from M Euler steps of the flow; the ONLINE critic scores them,
             as QC's sample_actions does, without gradient)
  y        = R_t^h + gamma^h * mask * Qagg_phibar(s_(t+h), pi(s_(t+h))),
             R_t^h = sum_i gamma^i r_(t+i)
  L_critic = mean_k,batch (Q_phi^k(s, a_chunk) - y)^2 * valid_(h-1)
  L_flow   = mean_batch,(i,j) valid_i * (v_omega(t, s, a_t) - (a_chunk - eps))_(i,j)^2,
             a_t = (1 - t) eps + t a_chunk
valid_i = 0 for the window's steps after its first terminal (gfp.agents.base: `step_mask`,
`td_weight`). With action_chunking False every network sees one action (QC's "BFN-n": best-of-N
with the h-step return) and the flow loss is unmasked. horizon 1: best-of-N flow Q-learning with
one-step returns.

Policies: 'actor' (best-of-N) and 'flow' (the BC flow alone, from the first of the N noises).
Both take z of shape noise_shape(batch) = (*batch, N, chunk_len * A).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from gfp.agents.base import Agent, Batch, Params, aggregate, critic_metrics
from gfp.agents.configs import QCConfig as Config
from gfp.agents.networks import VelocityField, euler_flow, flow_matching_error

sg = jax.lax.stop_gradient


class QC(Agent):
    name = "qc"
    Config = Config
    policies = ("actor", "flow")
    targets = ("critic",)
    config: Config

    def networks(self):
        c, d = self.config, self.action_dim
        obs, act, t = self.example_inputs()
        flow = VelocityField(c.actor_hidden_dims, d, c.time_embedding, encoder=self.encoder())
        return {"critic": (self.critic_network(), (obs, act)), "flow": (flow, (obs, act, t))}

    def noise_shape(self, batch_shape: tuple[int, ...]) -> tuple[int, ...]:
        """N noises per state, one per candidate chunk."""
        return (*batch_shape, self.config.num_samples, self.action_dim)

    # ---- the networks as functions ------------------------------------------------------------
    def q_all(self, critic_params: Params, obs: jax.Array, actions: jax.Array) -> jax.Array:
        """The ensemble's values Q^k(s, a), shape (2, *batch)."""
        return self.nets["critic"][0].apply({"params": critic_params}, obs, actions)

    def q(self, critic_params: Params, obs: jax.Array, actions: jax.Array) -> jax.Array:
        """Qagg(s, a), the ensemble aggregated by q_agg."""
        return aggregate(self.q_all(critic_params, obs, actions), self.config.q_agg)

    def flow_action(self, params: Params, obs: jax.Array, z: jax.Array) -> jax.Array:
        """mu_omega(s, z): M Euler steps of the BC flow from z, clipped to [-1, 1]."""
        flow = self.nets["flow"][0]
        return euler_flow(flow, {"params": params["flow"]}, obs, z, self.config.flow_steps)

    def candidates(self, params: Params, obs: jax.Array, z: jax.Array) -> jax.Array:
        """The N flow chunks a^n = mu_omega(s, z^n), shape (*batch, N, D), for z (*batch, N, D),
        and the observations they were drawn at: repeated N times (QC's jnp.repeat) and flattened
        to one batch axis (batch * N, *obs) so that any encoder sees a plain batch."""
        batch = self.batch_shape(obs)
        n, d = z.shape[-2:]
        rows = math.prod(batch)
        flat_obs = self.repeat_obs(obs, n)
        a = self.flow_action(params, flat_obs, z.reshape(rows * n, d))
        return a.reshape(*batch, n, d), flat_obs

    def best_of_n(
        self, params: Params, obs: jax.Array, z: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """The candidate with the highest Qagg_phi (the ONLINE critic, QC's sample_actions) and
        that value: (*batch, D), (*batch,). No gradient reaches the flow or the critic."""
        a, flat_obs = self.candidates(params, obs, z)
        batch, (n, d) = a.shape[:-2], a.shape[-2:]
        q = self.q(sg(params["critic"]), flat_obs, a.reshape(-1, d)).reshape(*batch, n)
        best = jnp.argmax(q, axis=-1)
        pick = jnp.take_along_axis(a, best[..., None, None], axis=-2)[..., 0, :]
        return sg(pick), sg(jnp.max(q, axis=-1))

    def action(
        self, params: Params, obs: jax.Array, z: jax.Array, policy: str = "actor"
    ) -> jax.Array:
        if policy == "flow":
            return self.flow_action(params, obs, z[..., 0, :])
        return self.best_of_n(params, obs, z)[0]

    # ---- losses ---------------------------------------------------------------------------------
    def sample_noise(self, rng: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        """z' (B, N, D) for the target's best-of-N chunk at s'; the flow matching eps and t."""
        b, d = self.batch_actions(batch).shape
        k_next, k_eps, k_t = jax.random.split(rng, 3)
        return {
            "z_next": jax.random.normal(k_next, (b, self.config.num_samples, d)),
            "eps": jax.random.normal(k_eps, (b, d)),
            "t": jax.random.uniform(k_t, (b,)),
        }

    def loss_terms(self, params: Params, target_params: Params, batch: Batch, noise: dict):
        s, a = batch["observations"], self.batch_actions(batch)
        s_next = batch["next_observations"]

        # Critic: the next chunk is best-of-N under the online critic, valued by the target one.
        a_next, _ = self.best_of_n(params, s_next, noise["z_next"])
        q_next = self.q(target_params["critic"], s_next, a_next)
        y = sg(batch["rewards"] + self.discount() * batch["masks"] * q_next)
        q_all = self.q_all(params["critic"], s, a)
        w = self.td_weight(batch)
        critic_loss = jnp.mean((q_all - y) ** 2 if w is None else (q_all - y) ** 2 * w)

        # BC flow: flow matching on the dataset chunks, their steps after a terminal masked out.
        flow = self.nets["flow"][0]
        p = {"params": params["flow"]}
        mask = self.step_mask(batch)
        if mask is None:
            err = flow_matching_error(flow, p, s, a, noise["eps"], noise["t"])
        else:
            err = flow_matching_error(flow, p, s, a, noise["eps"], noise["t"], mask)
        flow_loss = err.mean()

        metrics = {
            **critic_metrics(critic_loss, q_all, y),
            "critic/q_next_mean": q_next.mean(),
            "flow/loss": flow_loss,
        }
        return {"critic": critic_loss, "flow": flow_loss}, metrics
