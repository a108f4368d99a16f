"""Behaviour cloning, no critic: the floor of every comparison.

'bc'      : Gaussian policy pi(a | s) = N(mu(s), diag sigma^2) by maximum likelihood,
            L = -mean_batch log pi(a | s); acts with the mean mu(s), clipped to [-1, 1].
'flow_bc' : a flow policy by plain flow matching on the dataset actions (GFP's VaBC with the
            guidance weight g = 1, FQL's BC flow on its own),
            L = mean_batch,j (v(t, s, a_t) - (a - eps))_j^2,   a_t = (1 - t) eps + t a;
            acts with M Euler steps from z ~ N(0, I), clipped to [-1, 1].
            With horizon h > 1 it clones action chunks (QC's BC flow on its own, Li, Zhou,
            Levine 2025): the flow outputs h*A, its loss masked per step by the window's valid.
'bc' refuses horizon > 1 (configs.SINGLE_STEP_CONFIGS).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gfp.agents.base import Agent, Batch, GaussianMeanPolicy, Params
from gfp.agents.configs import BCConfig, FlowBCConfig
from gfp.agents.networks import (
    GaussianActor,
    VelocityField,
    euler_flow,
    flow_matching_error,
    gaussian_log_prob,
)


class BC(GaussianMeanPolicy, Agent):
    name = "bc"
    Config = BCConfig
    policies = ("actor",)
    targets = ()
    config: BCConfig

    def networks(self):
        c, d = self.config, self.action_dim
        actor = GaussianActor(c.actor_hidden_dims, d, const_std=c.const_std, encoder=self.encoder())
        return {"actor": (actor, self.example_inputs()[:1])}

    def loss_terms(self, params: Params, target_params: Params, batch: Batch, noise: dict):
        a = batch["actions"]
        mean, log_std = self.apply("actor", params, batch["observations"])
        log_prob = gaussian_log_prob(mean, log_std, a)
        loss = -jnp.mean(log_prob)
        metrics = {
            "actor/loss": loss,
            "actor/log_prob": log_prob.mean(),
            "actor/mse": jnp.mean((mean - a) ** 2),
            "actor/std": jnp.exp(log_std).mean(),
        }
        return {"actor": loss}, metrics


class FlowBC(Agent):
    name = "flow_bc"
    Config = FlowBCConfig
    policies = ("actor",)  # the flow policy
    targets = ()
    config: FlowBCConfig

    def networks(self):
        c, d = self.config, self.action_dim
        flow = VelocityField(c.actor_hidden_dims, d, c.time_embedding, encoder=self.encoder())
        return {"flow": (flow, self.example_inputs())}

    def action(
        self, params: Params, obs: jax.Array, z: jax.Array, policy: str = "actor"
    ) -> jax.Array:
        flow = self.nets["flow"][0]
        return euler_flow(flow, {"params": params["flow"]}, obs, z, self.config.flow_steps)

    def sample_noise(self, rng: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        """The flow-matching source sample eps ~ N(0, I) and time t ~ U[0, 1)."""
        k_eps, k_t = jax.random.split(rng)
        shape = batch["actions"].shape if self.horizon == 1 else self.batch_actions(batch).shape
        return {"eps": jax.random.normal(k_eps, shape), "t": jax.random.uniform(k_t, shape[:1])}

    def loss_terms(self, params: Params, target_params: Params, batch: Batch, noise: dict):
        flow = self.nets["flow"][0]
        s, a = batch["observations"], self.batch_actions(batch)
        p = {"params": params["flow"]}
        mask = self.step_mask(batch)  # a chunk's steps after a terminal (None: nothing masked)
        if mask is None:
            err = flow_matching_error(flow, p, s, a, noise["eps"], noise["t"])
        else:
            err = flow_matching_error(flow, p, s, a, noise["eps"], noise["t"], mask)
        loss = err.mean()
        return {"flow": loss}, {"flow/loss": loss}
