"""Hand-written numpy forward passes of the shared networks, used as references in the loss tests.

They read flax parameter dicts but share no code with gfp.agents.networks.
"""

from __future__ import annotations

import numpy as np


def gelu(x):
    # flax.linen.gelu defaults to the tanh approximation.
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def layer_norm(x, scale, bias, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * scale + bias


def mlp(p, x, layer_norm_on=False):
    """p: {'Dense_0': {...}, ..., 'LayerNorm_i': {...}} of one MLP."""
    n = sum(k.startswith("Dense_") for k in p)
    x = np.asarray(x, np.float64)
    for i in range(n):
        d = p[f"Dense_{i}"]
        x = x @ np.asarray(d["kernel"], np.float64) + np.asarray(d["bias"], np.float64)
        if i < n - 1:
            x = gelu(x)
            if layer_norm_on:
                ln = p[f"LayerNorm_{i}"]
                x = layer_norm(x, np.asarray(ln["scale"]), np.asarray(ln["bias"]))
    return x


def critic(p, s, a, layer_norm_on=True):
    """Ensemble Q: returns (num, batch). p is the critic's params (vmapped MLP under one key)."""
    (inner,) = p.values()
    num = next(iter(inner.values()))["kernel"].shape[0]
    x = np.concatenate([s, a], -1)
    member = lambda k: {name: {kk: v[k] for kk, v in layer.items()} for name, layer in inner.items()}
    return np.stack([mlp(member(k), x, layer_norm_on)[:, 0] for k in range(num)])


def actor(p, s, z):
    return mlp(p["MLP_0"], np.concatenate([s, z], -1))


def time_embedding(t, dim=64):
    half = dim // 2
    freqs = np.exp(-np.log(10000.0) * np.arange(half) / (half - 1))
    args = np.asarray(t, np.float64)[:, None] * freqs
    return np.concatenate([np.sin(args), np.cos(args)], -1)


def velocity(p, s, x, t, embedding="sinusoidal"):
    emb = time_embedding(t) if embedding == "sinusoidal" else np.asarray(t, np.float64)[:, None]
    return mlp(p["MLP_0"], np.concatenate([s, x, emb], -1))


def euler(p, s, z, steps, embedding="sinusoidal"):
    x = np.asarray(z, np.float64)
    for i in range(steps):
        x = x + velocity(p, s, x, np.full(len(x), i / steps), embedding) / steps
    return np.clip(x, -1, 1)


def agg(q, how):
    return q.min(0) if how == "min" else q.mean(0)
