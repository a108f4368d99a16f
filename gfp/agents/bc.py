"""Behaviour cloning, no critic: the floor of every comparison.

'bc'      : Gaussian policy pi(a | s) = N(mu(s), diag sigma^2) by maximum likelihood,
            L = -mean_batch log pi(a | s); acts with the mean mu(s), clipped to [-1, 1].
'flow_bc' : a flow policy by plain flow matching on the dataset actions (GFP's VaBC with the
            guidance weight g = 1, FQL's BC flow on its own),
            L = mean_batch,j (v(t, s, a_t) - (a - eps))_j^2,   a_t = (1 - t) eps + t a;
            acts with M Euler steps from z ~ N(0, I), clipped to [-1, 1].
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp

from gfp.agents.base import Agent, BaseConfig, Batch, Params, option
from gfp.agents.networks import (
    GaussianActor,
    VelocityField,
    euler_flow,
    flow_matching_error,
    gaussian_log_prob,
)


@dataclasses.dataclass(frozen=True)
class BCConfig(BaseConfig):
    const_std: bool = option(
        True,
        "Fix the std at 1 (FQL's/OGBench's const_std; the loss is then a squared error) instead "
        "of learning a state-independent log-std vector.",
    )


@dataclasses.dataclass(frozen=True)
class FlowBCConfig(BaseConfig):
    flow_steps: int = option(10, "Euler steps M used to sample an action.")
    time_embedding: Literal["sinusoidal", "scalar"] = option(
        "sinusoidal",
        "Flow time input: GFP's 64-d sinusoidal embedding (the VaBC network) or the raw scalar t "
        "(FQL's BC flow).",
    )


class BC(Agent):
    name = "bc"
    Config = BCConfig
    policies = ("actor",)
    targets = ()
    config: BCConfig

    def networks(self):
        c, d = self.config, self.action_dim
        actor = GaussianActor(c.actor_hidden_dims, d, const_std=c.const_std)
        return {"actor": (actor, (jnp.zeros((1, self.obs_dim)),))}

    def act(
        self, params: Params, obs: jax.Array, rng: jax.Array, policy: str = "actor"
    ) -> jax.Array:
        mean, _ = self.apply("actor", params, obs)
        return jnp.clip(mean, -1.0, 1.0)

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
        obs, act, t = jnp.zeros((1, self.obs_dim)), jnp.zeros((1, d)), jnp.zeros((1,))
        return {"flow": (VelocityField(c.actor_hidden_dims, d, c.time_embedding), (obs, act, t))}

    def act(
        self, params: Params, obs: jax.Array, rng: jax.Array, policy: str = "actor"
    ) -> jax.Array:
        z = jax.random.normal(rng, (*obs.shape[:-1], self.action_dim))
        flow = self.nets["flow"][0]
        return euler_flow(flow, {"params": params["flow"]}, obs, z, self.config.flow_steps)

    def sample_noise(self, rng: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        """The flow-matching source sample eps ~ N(0, I) and time t ~ U[0, 1)."""
        k_eps, k_t = jax.random.split(rng)
        shape = batch["actions"].shape
        return {"eps": jax.random.normal(k_eps, shape), "t": jax.random.uniform(k_t, shape[:1])}

    def loss_terms(self, params: Params, target_params: Params, batch: Batch, noise: dict):
        flow = self.nets["flow"][0]
        s, a = batch["observations"], batch["actions"]
        err = flow_matching_error(flow, {"params": params["flow"]}, s, a, noise["eps"], noise["t"])
        loss = err.mean()
        return {"flow": loss}, {"flow/loss": loss}
