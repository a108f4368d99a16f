"""Image encoders for pixel observations: the IMPALA residual CNN of the FQL and GFP reference code.

`ImpalaEncoder` maps uint8 images (*batch, H, W, C) (C = 3 x frame_stack, the stacked frames along
channels) to features (*batch, mlp_dims[-1]). Registered in `gfp.agents.networks.ENCODERS`:

* 'impala_small' (the paper's pixel setting, from the authors' code, docs/paper-vs-code.md #14):
  stages of 16, 32, 32 channels, ONE residual block per stage, then a 512-unit layer. The
  reference code's `functools.partial(ImpalaEncoder, num_blocks=1)`.
* 'impala_cpu' (the `cpu` preset's smoke scale, NOT the paper's): stages of 4 and 8 channels,
  one block each, then a 64-unit layer; about 10x fewer multiply-adds per 64x64x9 image than
  'impala_small' (2.3M against 24M), for runs that must finish on a CPU.

Each stage: a 3x3 convolution to the stage's width, a 3x3 max-pool with stride 2 ('SAME'
padding, so 64 -> 32 -> 16 -> 8), then `blocks` residual blocks x + conv(relu(conv(relu(x)))).
After the last stage: ReLU, flatten, then Dense + GELU layers (the reference MLP with
`activate_final=True`; no LayerNorm). Pixels are scaled to [0, 1] inside the encoder, so the
update receives uint8 minibatches and the cast happens on the device. Convolutions and dense
layers use Xavier-uniform initialisation, as every network of the reference code.

Every network that has an encoder slot gets its own instance (critic, actor and flow policy each
train theirs with their own loss), built by `Agent.encoder()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gfp.agents.networks import ENCODERS, default_init
from gfp.errors import ConfigError


class ResidualStage(nn.Module):
    """conv 3x3 -> max-pool 3x3 / 2 -> `blocks` residual blocks (two 3x3 convs each)."""

    features: int
    blocks: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = dict(kernel_size=(3, 3), strides=1, padding="SAME", kernel_init=default_init)
        x = nn.Conv(self.features, **conv)(x)
        x = nn.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding="SAME")
        for _ in range(self.blocks):
            y = nn.Conv(self.features, **conv)(nn.relu(x))
            x = x + nn.Conv(self.features, **conv)(nn.relu(y))
        return x


class ImpalaEncoder(nn.Module):
    """IMPALA CNN: residual stages of `stages` channels, then Dense+GELU layers of `mlp_dims`."""

    stages: Sequence[int] = (16, 32, 32)
    blocks: int = 1
    mlp_dims: Sequence[int] = (512,)

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        batch = obs.shape[:-3]
        x = obs.reshape(-1, *obs.shape[-3:]).astype(jnp.float32) / 255.0
        for features in self.stages:
            x = ResidualStage(features, self.blocks)(x)
        x = nn.relu(x).reshape(*batch, -1)
        for size in self.mlp_dims:
            x = nn.gelu(nn.Dense(size, kernel_init=default_init)(x))
        return x


# name -> (stages, blocks per stage, dense layers)
IMPALA_VARIANTS: dict[str, tuple[tuple[int, ...], int, tuple[int, ...]]] = {
    "impala_small": ((16, 32, 32), 1, (512,)),
    "impala_cpu": ((4, 8), 1, (64,)),
}


def _factory(name: str):
    stages, blocks, mlp_dims = IMPALA_VARIANTS[name]

    def make(spec: Any) -> ImpalaEncoder:
        shape = tuple(spec.shape)
        if len(shape) != 3:
            raise ConfigError(
                f"encoder = {name!r} needs image observations (height, width, channels); this "
                f"data's observations have shape {shape} (use encoder 'none' for state vectors)"
            )
        return ImpalaEncoder(stages, blocks, mlp_dims)

    return make


for _name in IMPALA_VARIANTS:
    ENCODERS[_name] = _factory(_name)
