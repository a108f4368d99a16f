"""The shared agent core: config base, train state, and the generic jitted update.

An agent is one small file: a frozen `Config` (its hyperparameters, each documented) and a class
that builds its networks, returns its loss *terms* and samples actions. The core sums the terms,
takes ONE Adam step over all modules (as the FQL and GFP reference code do) and Polyak-averages the
target networks. Returning terms (not just their sum) lets tests differentiate each term on its
own, which is how the stop-gradients are checked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

Params = dict[str, Any]
Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


def option(default: Any, help: str) -> Any:
    """A config field with its documentation, shown by `gfp train --help` and `gfp presets`."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class BaseConfig:
    """Hyperparameters every agent has. Defaults are the paper's (GFP Tab. 4, App. A)."""

    lr: float = option(3e-4, "Adam learning rate, one optimizer over all networks (Tab. 4).")
    batch_size: int = option(256, "Minibatch size, sampled uniformly with replacement.")
    gamma: float = option(0.99, "Discount factor (per-task values in the presets table).")
    tau: float = option(0.005, "Polyak rate of the target networks: target <- tau*online + (1-tau)*target.")
    actor_hidden_dims: tuple[int, ...] = option(
        (512, 512, 512, 512), "Hidden layer sizes of the policy networks (actor and flow)."
    )
    value_hidden_dims: tuple[int, ...] = option(
        (512, 512, 512, 512), "Hidden layer sizes of the critic / value networks."
    )
    layer_norm: bool = option(True, "LayerNorm after each hidden activation of the critic.")

    @classmethod
    def field_help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


@struct.dataclass
class TrainState:
    """Everything a training run carries between steps; a pytree, so it can be scanned and vmapped."""

    params: Params  # trainable networks, e.g. {"critic": ..., "actor": ..., "vabc": ...}
    target_params: Params  # Polyak copies of the modules named in Agent.targets
    opt_state: optax.OptState
    rng: jax.Array
    step: jax.Array


def polyak(online: Any, target: Any, tau: float) -> Any:
    return jax.tree.map(lambda o, t: tau * o + (1.0 - tau) * t, online, target)


def aggregate(q: jax.Array, how: str) -> jax.Array:
    """Aggregate a critic ensemble along axis 0: 'mean' or 'min' (q_agg in the paper's code)."""
    return q.min(axis=0) if how == "min" else q.mean(axis=0)


class Agent:
    """Base class. Subclasses set `name`, `Config`, and implement networks/losses/act."""

    name: ClassVar[str]
    Config: ClassVar[type[BaseConfig]] = BaseConfig
    policies: ClassVar[tuple[str, ...]] = ("actor",)  # policies that evaluation reports
    targets: ClassVar[tuple[str, ...]] = ("critic",)  # modules with a Polyak target copy

    def __init__(self, config: BaseConfig, obs_dim: int, action_dim: int):
        self.config = config
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.nets = self.networks()

    # ---- to implement -------------------------------------------------------------------------
    def networks(self) -> dict[str, tuple[nn.Module, tuple[jax.Array, ...]]]:
        """Map module name -> (flax module, example call arguments for initialisation)."""
        raise NotImplementedError

    def losses(
        self, params: Params, target_params: Params, batch: Batch, rng: jax.Array
    ) -> tuple[dict[str, jax.Array], Metrics]:
        """Return the loss terms (summed into one objective) and diagnostics."""
        raise NotImplementedError

    def act(self, params: Params, obs: jax.Array, rng: jax.Array, policy: str = "actor") -> jax.Array:
        raise NotImplementedError

    # ---- shared machinery ---------------------------------------------------------------------
    def apply(self, name: str, params: Params, *args: jax.Array) -> jax.Array:
        return self.nets[name][0].apply({"params": params[name]}, *args)

    def optimizer(self) -> optax.GradientTransformation:
        return optax.adam(self.config.lr)

    def init(self, rng: jax.Array) -> TrainState:
        rng, *keys = jax.random.split(rng, len(self.nets) + 1)
        params = {
            name: module.init(key, *args)["params"]
            for key, (name, (module, args)) in zip(keys, self.nets.items(), strict=True)
        }
        target_params = {name: params[name] for name in self.targets}
        return TrainState(
            params=params,
            target_params=target_params,
            opt_state=self.optimizer().init(params),
            rng=rng,
            step=jnp.zeros((), jnp.int32),
        )

    def total_loss(
        self, params: Params, target_params: Params, batch: Batch, rng: jax.Array
    ) -> tuple[jax.Array, Metrics]:
        terms, metrics = self.losses(params, target_params, batch, rng)
        total = sum(terms.values())
        return total, {**metrics, "loss/total": total}

    def update(self, state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        """One gradient step on the joint loss, then the Polyak update of the targets."""
        rng, loss_rng = jax.random.split(state.rng)
        grad_fn = jax.grad(self.total_loss, has_aux=True)
        grads, metrics = grad_fn(state.params, state.target_params, batch, loss_rng)
        updates, opt_state = self.optimizer().update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        target_params = {
            name: polyak(params[name], state.target_params[name], self.config.tau)
            for name in self.targets
        }
        metrics |= {f"grad_norm/{name}": optax.tree.norm(g) for name, g in grads.items()}
        new_state = state.replace(
            params=params,
            target_params=target_params,
            opt_state=opt_state,
            rng=rng,
            step=state.step + 1,
        )
        return new_state, metrics

    def policy_fn(self, policy: str = "actor") -> Callable[[Params, jax.Array, jax.Array], jax.Array]:
        return jax.jit(lambda params, obs, rng: self.act(params, obs, rng, policy))
