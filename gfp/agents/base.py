"""The shared agent core: config base, train state, and the generic jitted update.

An agent is one small file: a frozen `Config` (its hyperparameters, each documented) and a class
that builds its networks, returns its loss *terms* and samples actions. The core sums the terms,
takes ONE Adam step over all modules (as the FQL and GFP reference code do) and Polyak-averages the
target networks. Returning terms (not just their sum) lets tests differentiate each term on its
own, which is how the stop-gradients are checked.

Adam acts elementwise, so the state is kept per module: one Adam over all modules equals one Adam
per module advanced together. That lets an agent with delayed updates (ReBRAC's actor) leave a
module, its Adam moments and its target copy untouched on some steps (`Agent.schedule`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from gfp.agents import encoders  # noqa: F401 (registers the image encoders in ENCODERS)
from gfp.agents.configs import BaseConfig
from gfp.agents.networks import Critic, make_encoder
from gfp.data.frame_layout import STATE_KEYS, has_state
from gfp.errors import ConfigError

Params = dict[str, Any]
Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


# A combined observation (a camera and a state vector, e.g. a LeRobot robot's) is the pytree
# {PIXELS: uint8 (*batch, H, W, C * frame_stack), STATE: float32 (*batch, d)}; the frame stack is
# the last frames', the state the current step's only.
PIXELS, STATE = "pixels", "state"


def combined_obs(pixels: Any, state: Any) -> dict[str, Any]:
    """The network input of a combined observation: a frame stack (*batch, H, W, C*K) uint8 and
    the current state vector (*batch, d), cast to float32."""
    return {PIXELS: pixels, STATE: jnp.asarray(state, jnp.float32)}


@dataclasses.dataclass(frozen=True)
class ObsSpec:
    """What an agent is told about observations: the shape of one observation and its dtype.

    State vectors are float32 (d,); pixel observations are uint8 (H, W, C) and stay uint8 on the
    device (a quarter of float32's memory): the cast happens inside the networks' encoders.
    `state_dim` > 0: a combined observation, `shape`/`dtype` its image's and a float32
    (state_dim,) state beside it (the pytree `combined_obs` builds)."""

    shape: tuple[int, ...]
    dtype: str = "float32"
    state_dim: int = 0

    @classmethod
    def of(cls, obs: Any) -> ObsSpec:
        """The spec of an observation array (or combined observation) with a leading batch axis."""
        if isinstance(obs, dict):
            image = cls.of(obs[PIXELS])
            return cls(image.shape, image.dtype, int(obs[STATE].shape[-1]))
        return cls(tuple(int(n) for n in obs.shape[1:]), str(obs.dtype))

    @classmethod
    def of_data(cls, transitions: Any) -> ObsSpec:
        """The spec of a dataset's transitions: their observations, and the state beside the
        frames of combined ones (gfp.data.frame_layout.STATE_KEYS)."""
        spec = cls.of(transitions["observations"])
        if not has_state(transitions):
            return spec
        return dataclasses.replace(spec, state_dim=int(transitions[STATE_KEYS[0]].shape[1]))

    @property
    def combined(self) -> bool:
        return self.state_dim > 0

    @property
    def flat_dim(self) -> int:
        return int(math.prod(self.shape)) + self.state_dim

    def stacked(self, k: int) -> ObsSpec:
        """The spec of `k` observations stacked along the last axis (frame stacking; a combined
        observation stacks its image only)."""
        if k <= 1:
            return self
        return dataclasses.replace(self, shape=(*self.shape[:-1], self.shape[-1] * k))

    def image(self) -> ObsSpec:
        """The image part alone (a plain spec for the image encoder)."""
        return ObsSpec(self.shape, self.dtype)

    def zeros(self, batch: tuple[int, ...] = (1,)) -> Any:
        """Observations of zeros with leading axes `batch` (networks' initialisation)."""
        obs = jnp.zeros((*batch, *self.shape), self.dtype)
        return combined_obs(obs, jnp.zeros((*batch, self.state_dim))) if self.combined else obs

    def batch_shape(self, obs: Any) -> tuple[int, ...]:
        """The leading (batch) axes of an observation (its image's for a combined one)."""
        x = obs[PIXELS] if self.combined else obs
        return x.shape[: x.ndim - len(self.shape)]


@struct.dataclass
class TrainState:
    """Everything a training run carries between steps; a pytree (scanned, vmapped over seeds)."""

    params: Params  # trainable networks, e.g. {"critic": ..., "actor": ..., "vabc": ...}
    target_params: Params  # Polyak copies of the modules named in Agent.targets
    opt_state: dict[str, optax.OptState]  # one optimizer state per module, keyed like params
    rng: jax.Array
    step: jax.Array


def polyak(online: Any, target: Any, tau: float) -> Any:
    return jax.tree.map(lambda o, t: tau * o + (1.0 - tau) * t, online, target)


def aggregate(q: jax.Array, how: str) -> jax.Array:
    """Aggregate a critic ensemble along axis 0: 'mean' or 'min' (q_agg in the paper's code)."""
    return q.min(axis=0) if how == "min" else q.mean(axis=0)


def critic_metrics(loss: jax.Array, q_all: jax.Array, y: jax.Array) -> Metrics:
    """What every critic-based agent logs about its critic: the TD loss, the ensemble's Q
    statistics on the batch, and the mean Bellman target."""
    return {
        "critic/loss": loss,
        "critic/q_mean": q_all.mean(),
        "critic/q_max": q_all.max(),
        "critic/q_min": q_all.min(),
        "critic/target_mean": y.mean(),
    }


def where_tree(on: jax.Array | None, new: Any, old: Any) -> Any:
    """`new` where the (traced) switch `on` is true, else `old`, leaf by leaf; None means `new`."""
    if on is None:
        return new
    return jax.tree.map(lambda n, o: jnp.where(on, n, o), new, old)


# What every agent reads from the dataset; an agent that needs more (ReBRAC: next_actions) says
# so in its `batch_keys` and the training loop provides them (gfp.engine.placement.make_sampler).
BATCH_KEYS: tuple[str, ...] = ("observations", "actions", "rewards", "masks", "next_observations")


class _BatchKeys:
    """`Agent.batch_keys`: the dataset arrays its batches carry. On the class, the agent's
    `base_batch_keys`; on an agent, h-step windows (horizon > 1) also carry `valid` (B, h): 1 for
    the window's steps up to and including its first terminal, 0 after."""

    def __get__(self, agent: Agent | None, cls: type[Agent]) -> tuple[str, ...]:
        keys = cls.base_batch_keys
        return (*keys, "valid") if agent is not None and agent.horizon > 1 else keys


class Agent:
    """Base class. Subclasses set `name`, `Config`, and implement networks/losses/act."""

    name: ClassVar[str]
    Config: ClassVar[type[BaseConfig]] = BaseConfig
    policies: ClassVar[tuple[str, ...]] = ("actor",)  # policies that evaluation reports
    targets: ClassVar[tuple[str, ...]] = ("critic",)  # modules with a Polyak target copy
    base_batch_keys: ClassVar[tuple[str, ...]] = BATCH_KEYS  # dataset arrays its batches carry

    def __init__(self, config: BaseConfig, obs_spec: ObsSpec | int, action_dim: int):
        self.config = config
        spec = ObsSpec((obs_spec,)) if isinstance(obs_spec, int) else obs_spec
        # What the networks see: the last `frame_stack` observations along channels (pixel tasks;
        # gfp.engine.frames stacks them in training, gfp.evaluate at evaluation).
        self.obs_spec = spec.stacked(config.frame_stack)
        if spec.combined and config.horizon > 1:  # the windows' next states are not gathered
            raise ConfigError(
                f"horizon = {config.horizon} with a camera and a state together: action chunks "
                "take one kind of observation for now (use horizon = 1, or --obs-keys one kind)"
            )
        # Action chunking (QC, Li et al. 2025): `action_dim` is the ENVIRONMENT's A; the policies
        # and networks act on a chunk of chunk_len actions flattened to chunk_len * A (step i in
        # out[..., i*A:(i+1)*A]). horizon 1, or action_chunking off: one action, chunk_len 1.
        self.env_action_dim = action_dim
        self.horizon = config.horizon
        self.chunk_len = config.horizon if config.action_chunking else 1
        self.action_dim = self.chunk_len * action_dim
        self.nets = self.networks()

    batch_keys = _BatchKeys()

    # ---- action chunks (horizon > 1; the batch format is gfp.engine's window sampler's) -------
    def noise_shape(self, batch_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of the noise z that `action` takes for observations of batch shape
        `batch_shape`: one z per action (chunk)."""
        return (*batch_shape, self.action_dim)

    def discount(self) -> float:
        """The discount of the bootstrap: gamma, or gamma^h for an h-step window (QC's
        discount ** horizon_length; the window's rewards are already discounted and summed)."""
        c = self.config
        return c.gamma if self.horizon == 1 else c.gamma**self.horizon

    def batch_actions(self, batch: Batch) -> jax.Array:
        """The dataset action the networks see: the batch's (B, A) for horizon 1; for a window
        (B, h, A) the chunk flattened to (B, h*A) with chunking, else its first action (QC)."""
        a = batch["actions"]
        if self.horizon == 1:
            return a
        if self.chunk_len > 1:
            return a.reshape(a.shape[0], -1)
        return a[:, 0]

    def step_mask(self, batch: Batch) -> jax.Array | None:
        """Per action coordinate, whether its step of the chunk is valid (B, h*A), for the flow
        matching of chunks (QC masks its BC flow loss by `valid`); None where nothing is masked
        (horizon 1, or one action per window)."""
        if self.chunk_len == 1:
            return None
        return jnp.repeat(batch["valid"], self.env_action_dim, axis=-1)

    def td_weight(self, batch: Batch) -> jax.Array | None:
        """Weight of each sample's TD error: valid[:, -1] for h-step windows (QC: a window that
        crosses a terminal before its last step contributes nothing); None for horizon 1."""
        return None if self.horizon == 1 else batch["valid"][:, -1]

    @property
    def obs_dim(self) -> int:
        """Size of a flattened observation."""
        return self.obs_spec.flat_dim

    def example_inputs(self) -> tuple[jax.Array, jax.Array, jax.Array]:
        """A batch of one (observation, action, flow time) for initialising networks."""
        return self.obs_spec.zeros((1,)), jnp.zeros((1, self.action_dim)), jnp.zeros((1,))

    def encoder(self) -> Any:
        """A fresh observation encoder for one network (each module gets its own, trained by that
        module's loss, as in the reference code); None-like for state vectors."""
        return make_encoder(self.config.encoder, self.obs_spec)

    def critic_network(self) -> Critic:
        """The Q ensemble every critic-based agent uses (2 members, LayerNorm, own encoder)."""
        c = self.config
        return Critic(c.value_hidden_dims, c.layer_norm, encoder=self.encoder())

    def batch_shape(self, obs: Any) -> tuple[int, ...]:
        """The leading (batch) axes of an observation (array or combined pytree)."""
        return self.obs_spec.batch_shape(obs)

    def repeat_obs(self, obs: Any, n: int) -> Any:
        """Observations of any batch shape flattened to one batch axis, each repeated `n` times
        in a row (rows * n, *obs): every part of a combined observation alike."""
        batch = self.batch_shape(obs)
        rows, axes = math.prod(batch), len(batch)
        return jax.tree.map(lambda x: jnp.repeat(x.reshape(rows, *x.shape[axes:]), n, 0), obs)

    # ---- to implement -------------------------------------------------------------------------
    def networks(self) -> dict[str, tuple[nn.Module, tuple[jax.Array, ...]]]:
        """Map module name -> (flax module, example call arguments for initialisation)."""
        raise NotImplementedError

    def loss_terms(
        self, params: Params, target_params: Params, batch: Batch, noise: dict[str, jax.Array]
    ) -> tuple[dict[str, jax.Array], Metrics]:
        """Return the loss terms (summed into one objective) and diagnostics, given all the
        update's randomness in `noise` (so tests can pass it explicitly)."""
        raise NotImplementedError

    def sample_noise(self, rng: jax.Array, batch: Batch) -> dict[str, jax.Array]:
        """All random draws of one update, for `loss_terms` (none by default)."""
        return {}

    def losses(
        self, params: Params, target_params: Params, batch: Batch, rng: jax.Array
    ) -> tuple[dict[str, jax.Array], Metrics]:
        """The loss terms and diagnostics for a fresh draw of the update's noise."""
        return self.loss_terms(params, target_params, batch, self.sample_noise(rng, batch))

    def action(
        self, params: Params, obs: jax.Array, z: jax.Array, policy: str = "actor"
    ) -> jax.Array:
        """The action of `policy` at `obs` for the noise `z` ~ N(0, I) of shape
        `noise_shape(batch)` (by default (*batch, action_dim)), clipped to [-1, 1]; deterministic
        policies ignore `z`. A pure function, so that exported policies (gfp.export) take the
        noise as an input. With action chunking the action is a chunk (*batch, chunk_len * A)."""
        raise NotImplementedError

    def explore_action(
        self, params: Params, obs: jax.Array, z: jax.Array, policy: str = "actor"
    ) -> jax.Array:
        """The action the online phase collects with, for the noise z ~ N(0, I): the reference
        code's `sample_actions(temperature=1)` (main.py's online loop), where evaluation uses
        temperature 0. For the flow agents both draw z, so this is `action`; agents whose
        evaluation policy is deterministic add their exploration noise here."""
        return self.action(params, obs, z, policy)

    def act(
        self,
        params: Params,
        obs: jax.Array,
        rng: jax.Array,
        policy: str = "actor",
        explore: bool = False,
    ) -> jax.Array:
        """The stochastic policy used at evaluation: a fresh z ~ N(0, I) from `rng`; with
        `explore`, the online phase's collection policy (`explore_action`)."""
        z = jax.random.normal(rng, self.noise_shape(self.batch_shape(obs)))
        return (self.explore_action if explore else self.action)(params, obs, z, policy)

    def schedule(self, step: jax.Array) -> dict[str, jax.Array]:
        """Delayed updates. Map a module name, or 'target/<module>' for its target copy, to a traced
        bool: whether it changes at update number `step` (0-based). A module that sits a step out
        keeps its parameters AND its optimizer state; its loss term is still computed (a traced
        step cannot skip code) but its gradient is discarded. Names left out change every step,
        which is every module for most agents."""
        return {}

    # ---- shared machinery ---------------------------------------------------------------------
    def apply(self, name: str, params: Params, *args: jax.Array) -> jax.Array:
        return self.nets[name][0].apply({"params": params[name]}, *args)

    def optimizer(self) -> optax.GradientTransformation:
        """The optimizer of each module (the same transformation, a state per module)."""
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
            opt_state={name: self.optimizer().init(p) for name, p in params.items()},
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
        """One gradient step on the joint loss, then the Polyak update of the targets (both only
        for the modules that `schedule` lets change at this step). The targets average the online
        parameters from before the step (`target_update='pre_step'`, as the reference code does:
        target <- tau * online_before + (1 - tau) * target) or after it ('post_step')."""
        rng, loss_rng = jax.random.split(state.rng)
        grad_fn = jax.grad(self.total_loss, has_aux=True)
        grads, metrics = grad_fn(state.params, state.target_params, batch, loss_rng)
        on = self.schedule(state.step)
        tx = self.optimizer()
        params, opt_state = {}, {}
        for name, p in state.params.items():
            updates, new_opt = tx.update(grads[name], state.opt_state[name], p)
            params[name], opt_state[name] = where_tree(
                on.get(name), (optax.apply_updates(p, updates), new_opt), (p, state.opt_state[name])
            )
        source = state.params if self.config.target_update == "pre_step" else params
        target_params = {
            name: where_tree(
                on.get(f"target/{name}"),
                polyak(source[name], state.target_params[name], self.config.tau),
                state.target_params[name],
            )
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

    def policy_fn(
        self, policy: str = "actor"
    ) -> Callable[[Params, jax.Array, jax.Array], jax.Array]:
        return jax.jit(lambda params, obs, rng: self.act(params, obs, rng, policy))


class GaussianMeanPolicy:
    """Mixin for agents with a Gaussian actor (IQL, BC): they act with its mean, clipped to
    [-1, 1] (FQL evaluates them at temperature 0), so the noise z is ignored; online they explore
    with a sample of the Gaussian, mean + std * z, clipped (temperature 1, the reference's
    `sample_actions`)."""

    def action(self, params: Params, obs: jax.Array, z: jax.Array, policy: str = "actor"):
        mean, _ = self.apply("actor", params, obs)
        return jnp.clip(mean, -1.0, 1.0)

    def explore_action(self, params: Params, obs: jax.Array, z: jax.Array, policy: str = "actor"):
        mean, log_std = self.apply("actor", params, obs)
        return jnp.clip(mean + jnp.exp(log_std) * z, -1.0, 1.0)
