"""FLOPs of one update: counted analytically, from the jaxpr's dot_generals and by XLA's cost
analysis; and the rate of the same matmuls timed alone."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def _mlp(in_dim: int, hidden: Sequence[int], out_dim: int) -> list[tuple[int, int]]:
    dims = [in_dim, *hidden, out_dim]
    return list(zip(dims[:-1], dims[1:], strict=True))


def _fwd(layers: list[tuple[int, int]], batch: int) -> int:
    """Matmul FLOPs of one forward pass: 2 * batch * in * out per layer."""
    return sum(2 * batch * i * o for i, o in layers)


def _bwd_params(layers: list[tuple[int, int]], batch: int) -> int:
    """Backward of a trained network whose input carries no gradient: dW of every layer and dx
    of every layer but the first (about 2x the forward)."""
    return _fwd(layers, batch) + _fwd(layers[1:], batch)


def analytic_flops(agent) -> dict[str, int]:
    """Matmul FLOPs of one update of a GFP or FQL agent, pass by pass (the passes of the paper's
    Algorithm 1 as gfp.agents.gfp and gfp.agents.fql run them).

    Forward passes count 2*m*n*k per layer; the backward of a trained network counts dW for every
    layer and dx for every layer after the first; the critic inside the actor loss is frozen, so
    its backward is dx only (through every layer, down to the action). The ensemble's 2 members
    count twice. Elementwise work (GELU, LayerNorm, Adam, ...) is not counted.
    """
    c, name = agent.config, agent.name
    if name not in ("gfp", "fql"):
        raise ValueError(f"analytic FLOPs are written for gfp and fql, not {name!r}")
    b, o, d, m = c.batch_size, agent.obs_dim, agent.action_dim, c.flow_steps
    n = 2  # critic ensemble members (networks.Critic)
    emb = 64 if c.time_embedding == "sinusoidal" else 1
    critic = _mlp(o + d, c.value_hidden_dims, 1)
    actor = _mlp(o + d, c.actor_hidden_dims, d)
    flow = _mlp(o + d + emb, c.actor_hidden_dims, d)
    out = {
        "target: actor forward at s'": _fwd(actor, b),
        "target: target critic forward at (s', a'), 2 members": n * _fwd(critic, b),
    }
    if name == "gfp" and c.target_agg != "actor":
        out["target: flow, M Euler forwards (y_VaBC action)"] = m * _fwd(flow, b)
        out["target: target critic forward at (s', a_vabc), 2 members"] = n * _fwd(critic, b)
    out |= {
        "critic loss: forward, 2 members": n * _fwd(critic, b),
        "critic loss: backward (dW, dx), 2 members": n * _bwd_params(critic, b),
        "actor loss: flow, M Euler forwards (distillation target)": m * _fwd(flow, b),
        "actor loss: actor forward": _fwd(actor, b),
        "actor loss: actor backward (dW, dx)": _bwd_params(actor, b),
        "actor loss: critic forward at (s, a_theta), 2 members": n * _fwd(critic, b),
        "actor loss: critic backward to the action (dx only), 2 members": n * _fwd(critic, b),
        "flow matching: forward": _fwd(flow, b),
        "flow matching: backward (dW, dx)": _bwd_params(flow, b),
    }
    if name == "gfp":
        refs = 3 if c.guidance_agg == "min" else 2
        out[f"guidance: target critic at (s, a) and {refs - 1} reference action(s), 2 members"] = (
            refs * n * _fwd(critic, b)
        )
    return out


def _subjaxprs(value: Any):
    import jax.extend.core as jex

    if isinstance(value, jex.ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, jex.Jaxpr):
        yield value
    elif isinstance(value, tuple | list):
        for v in value:
            yield from _subjaxprs(v)


def _collect_dots(jaxpr, mult: int, out: dict) -> None:
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            lhs, rhs = (v.aval for v in eqn.invars)
            key = (tuple(lhs.shape), tuple(rhs.shape), eqn.params["dimension_numbers"])
            out[key] = out.get(key, 0) + mult
        inner = mult * (eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1)
        if eqn.primitive.name == "cond":  # count the costliest branch
            best: dict = {}
            for branch in eqn.params["branches"]:
                trial: dict = {}
                _collect_dots(branch.jaxpr, inner, trial)
                if sum(dot_flops(k) * v for k, v in trial.items()) > sum(
                    dot_flops(k) * v for k, v in best.items()
                ):
                    best = trial
            for k, v in best.items():
                out[k] = out.get(k, 0) + v
            continue
        for param in eqn.params.values():
            for sub in _subjaxprs(param):
                _collect_dots(sub, inner, out)


def dot_ops(fn: Callable, *args: Any) -> dict[tuple, int]:
    """Every dot_general of fn's jaxpr -> how many times one call runs it (scan lengths
    multiply; a while loop's body counts once, as its trip count is not known)."""
    import jax

    out: dict[tuple, int] = {}
    _collect_dots(jax.make_jaxpr(fn)(*args).jaxpr, 1, out)
    return out


def dot_flops(key: tuple) -> int:
    """2 * (output elements) * (contracted size) of a dot_general (lhs, rhs, dimension numbers)."""
    lhs, rhs, ((lc, rc), (lb, rb)) = key
    contracted = math.prod(lhs[i] for i in lc)
    batch = math.prod(lhs[i] for i in lb)
    lhs_free = math.prod(s for i, s in enumerate(lhs) if i not in lc and i not in lb)
    rhs_free = math.prod(s for i, s in enumerate(rhs) if i not in rc and i not in rb)
    return 2 * batch * lhs_free * rhs_free * contracted


def xla_flops(compiled) -> float | None:
    """XLA's cost-analysis FLOPs of a compiled function (all ops, not only matmuls)."""
    try:
        ca = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - not every backend provides it
        return None
    if isinstance(ca, list | tuple):
        ca = ca[0] if ca else {}
    return float(ca["flops"]) if ca and "flops" in ca else None


def update_args(agent, batch_size: int) -> tuple[Any, dict]:
    """Abstract (shape-only) arguments of `agent.update`: tracing and lowering need no values."""
    import jax

    state = jax.eval_shape(agent.init, jax.random.PRNGKey(0))
    shapes = {"actions": (agent.action_dim,), "next_actions": (agent.action_dim,)}
    batch = {
        k: jax.ShapeDtypeStruct((batch_size, *shapes.get(k, (agent.obs_dim,))), np.float32)
        for k in agent.batch_keys
    }
    for k in ("rewards", "masks"):
        if k in batch:
            batch[k] = jax.ShapeDtypeStruct((batch_size,), np.float32)
    return state, batch


def flop_check(agent, compiled_update=None, **compile_options: Any) -> dict[str, Any]:
    """The analytic count, the jaxpr's dot FLOPs and XLA's FLOPs of one update of `agent`
    (XLA's from `compiled_update`, or from a compilation with `compile_options`)."""
    import jax

    state, batch = update_args(agent, agent.config.batch_size)
    ops = dot_ops(agent.update, state, batch)
    if compiled_update is None:
        lowered = jax.jit(agent.update).lower(state, batch)
        compiled_update = lowered.compile(compiler_options=compile_options or None)
    parts = analytic_flops(agent)
    return {
        "analytic": sum(parts.values()),
        "breakdown": parts,
        "jaxpr_dots": sum(dot_flops(k) * v for k, v in ops.items()),
        "xla": xla_flops(compiled_update),
        "ops": ops,
    }


class MatmulRate:
    """Times every dot_general of the update alone (same shapes, same dimension numbers), each
    in a jitted fori_loop whose steps depend on each other, so nothing is hoisted or skipped."""

    def __init__(self, ops: dict[tuple, int], seconds: float, assumed_rate: float = 40e9):
        import jax
        import jax.numpy as jnp

        self.ops = ops
        self.loops: dict[tuple, tuple[Callable, int, tuple]] = {}
        for key in ops:
            lhs_shape, rhs_shape, dn = key
            reps = max(3, int(seconds * assumed_rate / dot_flops(key)))

            def loop(lhs, rhs, dn=dn, reps=reps):
                def body(_, c):
                    out = jax.lax.dot_general(lhs + c, rhs, dn)
                    return jnp.sum(out) * 1e-30

                return jax.lax.fori_loop(0, reps, body, jnp.zeros((), lhs.dtype))

            args = (jnp.ones(lhs_shape, jnp.float32), jnp.ones(rhs_shape, jnp.float32) * 0.01)
            fn = jax.jit(loop).lower(*args).compile()
            fn(*args).block_until_ready()
            self.loops[key] = (fn, reps, args)
        self.times: dict[tuple, list[float]] = {k: [] for k in ops}

    def __call__(self) -> None:
        for key, (fn, reps, args) in self.loops.items():
            t0 = time.perf_counter()
            fn(*args).block_until_ready()
            self.times[key].append((time.perf_counter() - t0) / reps)

    def ideal_seconds(self) -> float:
        """Seconds the update's matmuls take at their measured rates (median over calls)."""
        return sum(statistics.median(self.times[k]) * n for k, n in self.ops.items())

    def table(self) -> list[dict[str, Any]]:
        rows = []
        for key, n in sorted(self.ops.items(), key=lambda kv: -dot_flops(kv[0]) * kv[1]):
            t = statistics.median(self.times[key])
            lhs, rhs, ((lc, rc), (lb, rb)) = key
            rows.append(
                {
                    "lhs": list(lhs),
                    "rhs": list(rhs),
                    "contract": [list(lc), list(rc)],
                    "batch": [list(lb), list(rb)],
                    "count": n,
                    "gflop": dot_flops(key) * n / 1e9,
                    "gflops": dot_flops(key) / t / 1e9,
                }
            )
        return rows
