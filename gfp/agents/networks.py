"""Networks shared by every agent: MLPs, the critic ensemble, flow velocity fields, one-step actors.

All follow the FQL reference architecture: GELU MLPs, Xavier-uniform init, LayerNorm after the
activation of each hidden layer where enabled (the critic only, by default).

Every network takes raw observations and starts with its own `encoder` (the observation seam):
`FlattenObs` for state vectors (no parameters: flatten and cast to float32, so uint8 data is cast
inside the jitted update, never copied to float32 on the host), or an image encoder registered in
`ENCODERS` for pixel observations; a camera and a state vector together ({'pixels', 'state'})
get the image encoder with the state concatenated to its features (`WithState`). Networks
whose observation is fed many times (the flow's M Euler steps) encode it once (`encode`, then
`is_encoded=True`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

default_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")


class FlattenObs(nn.Module):
    """The 'none' encoder: flatten the `obs_ndim` observation axes and cast to float32."""

    obs_ndim: int = 1

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        batch = obs.shape[: obs.ndim - self.obs_ndim]
        return obs.reshape(*batch, -1).astype(jnp.float32)


class WithState(nn.Module):
    """A combined observation {'pixels', 'state'} (gfp.agents.base.combined_obs): the image's
    features, then the state vector as it is, [image(pixels), state]. The state enters unscaled,
    exactly as a state-only run's FlattenObs passes it, so a combined run is the state run plus
    the image's features (their scale is the encoder's last GELU layer's); each network's MLP
    (LayerNorm'd in the critic) mixes the two from its first layer."""

    image: nn.Module

    @nn.compact
    def __call__(self, obs: Any) -> jax.Array:
        feats = self.image(obs["pixels"])
        return jnp.concatenate([feats, obs["state"].astype(jnp.float32)], axis=-1)


# Encoder name (BaseConfig.encoder) -> factory(obs_spec) -> flax module mapping raw observations of
# shape (*batch, *obs_spec.shape) to features (*batch, n). The pixel encoders register here.
ENCODERS: dict[str, Callable[[Any], nn.Module]] = {
    "none": lambda spec: FlattenObs(len(spec.shape)),
}


def make_encoder(name: str, obs_spec: Any) -> nn.Module:
    """The encoder `name` for observations `obs_spec`; a combined observation's (`state_dim` >
    0) is that encoder on the image with the state concatenated (`WithState`)."""
    if getattr(obs_spec, "state_dim", 0):
        return WithState(ENCODERS[name](obs_spec.image()))
    return ENCODERS[name](obs_spec)


def _encode(encoder: nn.Module | None, obs: Any) -> jax.Array:
    return encoder(obs) if encoder is not None else obs.astype(jnp.float32)


class MLP(nn.Module):
    """GELU MLP; `out_init_scale` scales the output layer's Xavier init (FQL's Gaussian and
    deterministic actors use 0.01, so their first actions sit near 0)."""

    hidden_dims: Sequence[int]
    out_dim: int
    layer_norm: bool = False
    out_init_scale: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for size in self.hidden_dims:
            x = nn.gelu(nn.Dense(size, kernel_init=default_init)(x))
            if self.layer_norm:
                x = nn.LayerNorm()(x)
        out_init = nn.initializers.variance_scaling(self.out_init_scale, "fan_avg", "uniform")
        return nn.Dense(self.out_dim, kernel_init=out_init)(x)


def mlp_ensemble(num: int) -> type[nn.Module]:
    """`num` independent MLPs with stacked parameters, all applied to the same input."""
    return nn.vmap(
        MLP,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        in_axes=None,
        out_axes=0,
        axis_size=num,
    )


class Critic(nn.Module):
    """Q(s, a) ensemble: `num` independent MLPs; returns shape (num, *batch)."""

    hidden_dims: Sequence[int]
    layer_norm: bool = True
    num: int = 2
    encoder: nn.Module | None = None  # shared by the ensemble members

    @nn.compact
    def __call__(self, obs: jax.Array, actions: jax.Array) -> jax.Array:
        q = mlp_ensemble(self.num)(self.hidden_dims, 1, self.layer_norm)
        return q(jnp.concatenate([_encode(self.encoder, obs), actions], -1))[..., 0]


class Value(nn.Module):
    """V(s) ensemble (used by IQL); returns shape (num, *batch)."""

    hidden_dims: Sequence[int]
    layer_norm: bool = True
    num: int = 1
    encoder: nn.Module | None = None

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        feats = _encode(self.encoder, obs)
        return mlp_ensemble(self.num)(self.hidden_dims, 1, self.layer_norm)(feats)[..., 0]


def sinusoidal_embedding(t: jax.Array, dim: int = 64, max_period: float = 10000.0) -> jax.Array:
    """GFP's time embedding: dim/2 frequencies exp(-k ln(max_period) / (dim/2 - 1)), k = 0..dim/2-1,
    then [sin(t f), cos(t f)], 64 dims (paper Tab. 4). t in [0, 1] is not rescaled
    (docs/paper-vs-code.md #12)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half) / (half - 1))
    args = t[..., None] * freqs
    return jnp.concatenate([jnp.sin(args), jnp.cos(args)], -1)


class VelocityField(nn.Module):
    """Flow-matching velocity v(t, s, x). `time_embedding`: 'sinusoidal' (GFP, 64-d) or 'scalar'
    (FQL: the raw t as one input feature)."""

    hidden_dims: Sequence[int]
    action_dim: int
    time_embedding: str = "sinusoidal"
    encoder: nn.Module | None = None

    def encode(self, obs: jax.Array) -> jax.Array:
        return _encode(self.encoder, obs)

    @nn.compact
    def __call__(
        self, obs: jax.Array, x: jax.Array, t: jax.Array, is_encoded: bool = False
    ) -> jax.Array:
        feats = obs if is_encoded else self.encode(obs)
        emb = sinusoidal_embedding(t) if self.time_embedding == "sinusoidal" else t[..., None]
        return MLP(self.hidden_dims, self.action_dim)(jnp.concatenate([feats, x, emb], -1))


class OneStepActor(nn.Module):
    """mu_theta(s, z): a plain MLP on concat(s, z); no tanh, no clipping (callers clip)."""

    hidden_dims: Sequence[int]
    action_dim: int
    encoder: nn.Module | None = None

    @nn.compact
    def __call__(self, obs: jax.Array, z: jax.Array) -> jax.Array:
        feats = _encode(self.encoder, obs)
        return MLP(self.hidden_dims, self.action_dim)(jnp.concatenate([feats, z], -1))


class DeterministicActor(nn.Module):
    """a = tanh(MLP(s)) (ReBRAC) or the raw MLP mean (when tanh_squash is False). The output layer
    starts at 0.01 x Xavier, as FQL's actors (`actor_fc_scale`)."""

    hidden_dims: Sequence[int]
    action_dim: int
    tanh_squash: bool = True
    final_init_scale: float = 1e-2
    encoder: nn.Module | None = None

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        feats = _encode(self.encoder, obs)
        a = MLP(self.hidden_dims, self.action_dim, out_init_scale=self.final_init_scale)(feats)
        return jnp.tanh(a) if self.tanh_squash else a


class GaussianActor(nn.Module):
    """Diagonal Gaussian policy head (IQL, Gaussian BC); returns (mean, log_std). The log-std is
    state-independent: a learned vector, or fixed at 0 (std 1, FQL's `const_std`, the default of
    its IQL). Output layer init 0.01 x Xavier as FQL's actors."""

    hidden_dims: Sequence[int]
    action_dim: int
    tanh_mean: bool = False
    const_std: bool = False
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    final_init_scale: float = 1e-2
    encoder: nn.Module | None = None

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        feats = _encode(self.encoder, obs)
        mean = MLP(self.hidden_dims, self.action_dim, out_init_scale=self.final_init_scale)(feats)
        if self.tanh_mean:
            mean = jnp.tanh(mean)
        if self.const_std:
            log_std = jnp.zeros((self.action_dim,))
        else:
            log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
        log_std = jnp.clip(log_std, self.log_std_min, self.log_std_max)
        return mean, jnp.broadcast_to(log_std, mean.shape)


def gaussian_log_prob(mean: jax.Array, log_std: jax.Array, x: jax.Array) -> jax.Array:
    """log N(x; mean, diag(exp(log_std)^2)), summed over the last (action) axis."""
    z = (x - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi), axis=-1)


def euler_flow(velocity: nn.Module, params, obs: jax.Array, z: jax.Array, steps: int) -> jax.Array:
    """mu(s, z): integrate dx/dt = v(t, s, x) from x0 = z with `steps` Euler steps, then clip to
    [-1, 1] (docs/paper-vs-code.md #7). The loop is unrolled: XLA then schedules the M passes as
    straight-line code (about 7% faster per GFP update at paper size on CPU, and XLA's cost
    analysis counts every step; a rolled loop counts its body once). BENCHMARKS.md, "Training"."""
    dt = 1.0 / steps
    feats = velocity.apply(params, obs, method="encode")  # once, not once per Euler step

    def step(i, x):
        t = jnp.full(x.shape[:-1], i * dt, x.dtype)
        return x + dt * velocity.apply(params, feats, x, t, True)

    return jnp.clip(jax.lax.fori_loop(0, steps, step, z, unroll=True), -1.0, 1.0)


def flow_matching_error(
    velocity: nn.Module,
    params,
    obs: jax.Array,
    actions: jax.Array,
    eps: jax.Array,
    t: jax.Array,
    mask: jax.Array | None = None,
) -> jax.Array:
    """Per-sample flow-matching error on the linear path a_t = (1 - t) eps + t a, whose velocity is
    a - eps: mean_j (v(t, s, a_t)_j - (a - eps)_j)^2, shape (batch,): paper Eq. 9 before its
    weight g, and FQL's BC flow; a mean over action dims, not the sum (docs/paper-vs-code.md #4).
    `mask` (batch, dims): the coordinates of an action chunk's invalid steps (after a terminal)
    weigh 0, still counted in the mean's denominator, as QC's BC flow loss (mean over (B, h, A) of
    err * valid)."""
    a_t = (1.0 - t[:, None]) * eps + t[:, None] * actions
    v = velocity.apply(params, obs, a_t, t)
    if mask is None:
        return jnp.mean((v - (actions - eps)) ** 2, axis=-1)
    return jnp.mean((v - (actions - eps)) ** 2 * mask, axis=-1)
