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
    return _ensemble(p, np.concatenate([s, a], -1), layer_norm_on)


def value(p, s, layer_norm_on=True):
    """Ensemble V(s) (IQL's value net): returns (num, batch)."""
    return _ensemble(p, s, layer_norm_on)


def _ensemble(p, x, layer_norm_on):
    (inner,) = p.values()
    num = next(iter(inner.values()))["kernel"].shape[0]
    member = lambda k: {name: {kk: v[k] for kk, v in lay.items()} for name, lay in inner.items()}
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


def flow_matching_error(p, s, a, eps, t, embedding="sinusoidal"):
    """Per-sample mean_j (v(t, s, a_t) - (a - eps))_j^2 on the linear path a_t = (1-t) eps + t a."""
    a_t = (1 - t[:, None]) * eps + t[:, None] * a
    return np.mean((velocity(p, s, a_t, t, embedding) - (a - eps)) ** 2, -1)


def deterministic_actor(p, s, tanh=True):
    x = mlp(p["MLP_0"], s)
    return np.tanh(x) if tanh else x


def gaussian_actor(p, s, const_std=False, log_std_min=-5.0, log_std_max=2.0):
    """(mean, log_std) of the diagonal Gaussian policy; log_std = 0 when const_std."""
    mean = mlp(p["MLP_0"], s)
    log_std = np.zeros(mean.shape[-1]) if const_std else np.asarray(p["log_std"], np.float64)
    return mean, np.broadcast_to(np.clip(log_std, log_std_min, log_std_max), mean.shape)


def gaussian_log_prob(mean, log_std, x):
    """log of prod_j N(x_j; mean_j, sigma_j^2), sigma = exp(log_std)."""
    var = np.exp(2 * log_std)
    return np.sum(-((x - mean) ** 2) / (2 * var) - 0.5 * np.log(2 * np.pi * var), -1)
