"""`gfp bench`: the speed benchmark suite (training, evaluation, data generation, memory).

Every ratio is measured side by side in one run: the cases are interleaved A, B, B, A, A, B, ...
(which cancels a linear drift of the machine's load) and the median of each case is compared.
Every timed window records its wall time, this process's CPU time and the CPU time that OTHER
processes used meanwhile (from /proc/stat, in cores), so a result taken on a busy machine can be
recognised. What is measured, target by target (issue 5; BENCHMARKS.md has the latest results):

1. `gfp_over_fql_time`: time of one GFP update (standard target) over one FQL update, at paper
   size (obs 28, action 5, 4x512 networks, batch 256, M = 10), both on the fused path below.
   GFP with y_VaBC (target_agg='mean') is reported beside it (`gfp_mean_over_fql_time`).
2. `flop_efficiency`: achieved FLOP rate of the GFP update (matmul FLOPs counted analytically,
   `analytic_flops`, cross-checked with the update's jaxpr and XLA's cost analysis) over the
   rate of the same matmuls timed alone (every dot_general of the update's jaxpr, same shapes
   and dimension numbers, each in a jitted loop).
3. `fused_over_perstep_*`: the fused path (`gfp.train.make_train_chunk`: K updates per lax.scan
   call, batches sampled on the device) against the common per-step path (one jitted update per
   Python call, batch sampled with numpy on the host and passed in); per-step time / fused time.
4. `vmap4_over_1`: 4 seeds vmapped in one fused call (what `gfp train --seeds 0,1,2,3` runs)
   over 1 seed, same number of updates per seed.
5. `eval_vectorized_speedup`: `gfp.evaluate.evaluate` with its default pool (10 environments,
   stepped by worker processes, one batched policy call per step) against one environment at a
   time (num_envs=1, in this process), 50 episodes of cube-single, with the environments kept
   from a previous call (warm: every evaluation during `gfp train` after the first). The cold
   figure (environments built inside the timed call, what a one-off `gfp eval` pays once) is
   reported beside it as `eval_vectorized_speedup_cold`.
6. `datagen_transitions_per_s`: `gfp data generate` end to end with one worker per core.
7. `peak_rss_gib`: peak RSS of a separate process that builds a 1M-transition dataset and
   trains GFP at paper size on it through `gfp.run.fit` (the `gfp train` path).

`run_bench(quick)` returns one JSON-able dict; `format_report` renders it. `--quick` keeps every
measurement but with fewer repetitions, fewer fused updates and 20 evaluation episodes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

GIB = 1024**3

# The required fields of the JSON object, and the target of each (issue 5).
TARGETS: dict[str, tuple[str, float]] = {
    "gfp_over_fql_time": ("<=", 1.15),
    "flop_efficiency": (">=", 0.80),
    "fused_over_perstep_tiny": (">=", 1.5),
    "fused_over_perstep_min": (">=", 1.0),
    "vmap4_over_1": ("<=", 4.2),
    "eval_vectorized_speedup": (">=", 2.0),
    "datagen_transitions_per_s": (">=", 400.0),
    "peak_rss_gib": ("<", 4.0),
}
REQUIRED_FIELDS = (
    "gfp_over_fql_time",
    "flop_efficiency",
    "fused_over_perstep_tiny",
    "vmap4_over_1",
    "eval_vectorized_speedup",
    "datagen_transitions_per_s",
    "peak_rss_gib",
)


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Sizes and repetitions of one benchmark run (`QUICK`, `FULL`, or a toy one in tests)."""

    obs_dim: int = 28  # cube-single
    action_dim: int = 5
    batch_size: int = 256
    flow_steps: int = 10
    dataset_size: int = 1_000_000  # synthetic transitions, for the update timings
    paper_hidden: tuple[int, ...] = (512, 512, 512, 512)
    reps: int = 5  # interleaved repetitions of each timed case
    update_k: int = 8  # fused updates per timed call at paper size (GFP vs FQL, FLOPs)
    gfp_mean: bool = True  # also time GFP with the y_VaBC target
    matmul_seconds: float = 0.05  # rough length of each matmul timing loop
    # fused vs per-step: name -> (hidden dims, updates per timed window)
    fused_sizes: tuple[tuple[str, tuple[int, ...], int], ...] = (
        ("tiny", (64, 64), 400),
        ("cpu", (256, 256), 60),
        ("4x256", (256, 256, 256, 256), 20),
        ("paper", (512, 512, 512, 512), 8),
    )
    # vmapped seeds: name -> (hidden dims, updates per seed per timed window)
    vmap_sizes: tuple[tuple[str, tuple[int, ...], int], ...] = (
        ("paper", (512, 512, 512, 512), 8),
        ("cpu", (256, 256), 60),
    )
    vmap_seeds: tuple[int, ...] = (4,)  # seed counts timed against 1 seed
    scan_only_sizes: tuple[str, ...] = ("tiny", "paper")  # also time ScanOnly (a reference)
    eval_env: str = "cube-single-noisy-singletask-task1-v0"
    eval_episodes: int = 50
    eval_num_envs: int = 10
    eval_reps: int = 1
    datagen_name: str = "cube-single-noisy-v0"
    datagen_episodes: int = 8
    datagen_length: int = 1001
    datagen_workers: int | None = None  # None: one per core
    memory_dataset_size: int = 1_000_000
    memory_hidden: tuple[int, ...] = (512, 512, 512, 512)
    memory_steps: int = 8


FULL = BenchConfig()
QUICK = dataclasses.replace(
    FULL,
    reps=3,
    update_k=4,
    gfp_mean=False,
    fused_sizes=(("tiny", (64, 64), 200), ("paper", (512, 512, 512, 512), 4)),
    vmap_sizes=(("paper", (512, 512, 512, 512), 4),),
    scan_only_sizes=("tiny",),
    eval_episodes=20,
    datagen_episodes=2,
    memory_steps=4,
)


def log(msg: str) -> None:
    """Progress goes to stderr, so `gfp bench --json` prints only the JSON object on stdout."""
    print(f"[gfp bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Timed windows with the machine's load.

_TICK = os.sysconf("SC_CLK_TCK")


def _system_busy_seconds() -> float:
    """CPU-seconds all processes have used since boot (/proc/stat: everything but idle/iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / _TICK


def _own_cpu_seconds() -> float:
    """CPU-seconds of this process, its reaped children and its live descendants (workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = time.process_time() + children.ru_utime + children.ru_stime
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry)
        parent[pid] = int(rest[1])
        cpu[pid] = (int(rest[11]) + int(rest[12])) / _TICK
    me = os.getpid()
    for pid in cpu:
        p, seen = parent.get(pid), 0
        while p and p != me and seen < 64:
            p, seen = parent.get(p), seen + 1
        if p == me:
            own += cpu[pid]
    return own


@dataclasses.dataclass
class Window:
    """One timed window: wall seconds, our CPU-seconds, other processes' load (cores) and the
    1-minute load average at its end."""

    wall: float
    cpu: float
    foreign: float
    load1: float


def timed(fn: Callable[[], Any]) -> tuple[Any, Window]:
    """Run fn() (which must block until its work is done) in a measured window."""
    busy0, own0 = _system_busy_seconds(), _own_cpu_seconds()
    t0 = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    own = _own_cpu_seconds() - own0
    foreign = max(0.0, (_system_busy_seconds() - busy0 - own) / wall)
    return out, Window(wall, own, foreign, os.getloadavg()[0])


def interleave(cases: dict[str, Callable[[], Any]], reps: int) -> dict[str, list[Window]]:
    """Run every case `reps` times, interleaved A B B A A B ... so a drift of the machine's load
    hits every case alike; returns the windows of each case."""
    names = list(cases)
    windows: dict[str, list[Window]] = {n: [] for n in names}
    for r in range(reps):
        for name in names if r % 2 == 0 else names[::-1]:
            windows[name].append(timed(cases[name])[1])
    return windows


def summary(windows: Sequence[Window], per: float = 1.0) -> dict[str, Any]:
    """Median wall and CPU seconds (divided by `per`, e.g. updates), all walls, and the load."""
    walls = [w.wall / per for w in windows]
    return {
        "wall_s": statistics.median(walls),
        "cpu_s": statistics.median(w.cpu / per for w in windows),
        "walls_s": [round(x, 6) for x in walls],
        "foreign_cores": round(statistics.median(w.foreign for w in windows), 2),
        "loadavg1": round(statistics.median(w.load1 for w in windows), 2),
    }


# --------------------------------------------------------------------------------------------------
# Agents, data and the two training paths.


def synthetic_transitions(n: int, obs_dim: int, action_dim: int, seed: int = 0) -> dict:
    """n random transitions in the layout `gfp.data.load` returns (float32, masks, terminals)."""
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((n, obs_dim), dtype=np.float32)
    terminals = np.zeros(n, np.float32)
    terminals[1000::1001] = 1.0
    return {
        "observations": obs,
        "actions": rng.uniform(-1, 1, (n, action_dim)).astype(np.float32),
        "rewards": -rng.integers(0, 2, n).astype(np.float32),
        "masks": np.ones(n, np.float32),
        "terminals": terminals,
        "next_observations": np.roll(obs, -1, axis=0),
    }


def make_bench_agent(name: str, hidden: Sequence[int], cfg: BenchConfig, **overrides: Any):
    """GFP or FQL (or any agent) with `hidden` actor and critic layers and the bench's sizes."""
    from gfp.agents import AGENTS, make_agent

    cls = AGENTS[name]
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    kw: dict[str, Any] = {
        "actor_hidden_dims": tuple(hidden),
        "value_hidden_dims": tuple(hidden),
        "batch_size": cfg.batch_size,
    }
    if "flow_steps" in fields:
        kw["flow_steps"] = cfg.flow_steps
    config = cls.Config(**(kw | overrides))
    return make_agent(name, config, obs_dim=cfg.obs_dim, action_dim=cfg.action_dim)


class Fused:
    """The fused path: `make_train_chunk` compiled for `seeds` seeds and K updates per call."""

    def __init__(self, agent, device_data: dict, seeds: int, k: int):
        from gfp.train import init_states, make_train_chunk

        self.k, self.seeds = k, seeds
        self.data = {key: device_data[key] for key in agent.batch_keys}
        self.states = init_states(agent, list(range(seeds)))
        t0 = time.perf_counter()
        chunk = make_train_chunk(agent, agent.config.batch_size)
        self.compiled = chunk.lower(self.states, self.data, k).compile()
        self.compile_s = time.perf_counter() - t0
        self()  # warm-up

    def __call__(self) -> None:
        import jax

        out = self.compiled(self.states, self.data)  # (states, metrics, ...)
        self.states = out[0]
        jax.block_until_ready(out)


class PerStep:
    """The common per-step path: one jitted `agent.update` per Python call, its batch sampled
    on the host with numpy (as FQL's `Dataset.sample`) and passed in; blocks once at the end."""

    def __init__(self, agent, host_data: dict, k: int, seed: int = 0):
        import jax
        import jax.numpy as jnp

        self.k = k
        self.data = {key: host_data[key] for key in agent.batch_keys}
        self.n = len(self.data["actions"])
        self.batch_size = agent.config.batch_size
        self.rng = np.random.default_rng(seed)
        # init shares buffers between params and their target copy; donation needs them apart
        self.state = jax.tree.map(jnp.array, agent.init(jax.random.PRNGKey(seed)))
        t0 = time.perf_counter()
        update = jax.jit(agent.update, donate_argnums=0)
        self.compiled = update.lower(self.state, self.sample()).compile()
        self.compile_s = time.perf_counter() - t0
        self.state, _ = self.compiled(self.state, self.sample())  # warm-up
        jax.block_until_ready(self.state)

    def sample(self) -> dict:
        idx = self.rng.integers(0, self.n, self.batch_size)
        return {key: v[idx] for key, v in self.data.items()}

    def __call__(self) -> None:
        import jax

        metrics = None
        for _ in range(self.k):
            self.state, metrics = self.compiled(self.state, self.sample())
        jax.block_until_ready((self.state, metrics))


class ScanOnly(Fused):
    """A reference, not a training path of gfp: K updates in one lax.scan with batches sampled on
    the device, like `make_train_chunk`, but for ONE seed without vmap and without the metrics
    and health outputs. It shows what the seed axis costs at one seed."""

    def __init__(self, agent, device_data: dict, k: int):
        import jax
        import jax.numpy as jnp

        from gfp.train import sample_batch

        def chunk(state, data):
            def body(state, _):
                rng, batch_rng = jax.random.split(state.rng)
                batch = sample_batch(data, batch_rng, agent.config.batch_size)
                return agent.update(state.replace(rng=rng), batch)

            state, metrics = jax.lax.scan(body, state, None, length=k)
            return state, jax.tree.map(jnp.mean, metrics)

        self.k, self.seeds = k, 1
        self.data = {key: device_data[key] for key in agent.batch_keys}
        self.states = jax.tree.map(jnp.array, agent.init(jax.random.PRNGKey(0)))
        t0 = time.perf_counter()
        self.compiled = jax.jit(chunk, donate_argnums=0).lower(self.states, self.data).compile()
        self.compile_s = time.perf_counter() - t0
        self()


def host_sampling_seconds(host: dict, keys: Sequence[str], batch_size: int, n: int = 200) -> float:
    """Seconds per numpy minibatch (randint + fancy indexing), the per-step path's host work."""
    rng = np.random.default_rng(0)
    data = {k: host[k] for k in keys}
    size = len(data["actions"])
    t0 = time.perf_counter()
    for _ in range(n):
        idx = rng.integers(0, size, batch_size)
        {k: v[idx] for k, v in data.items()}
    return (time.perf_counter() - t0) / n


def to_device(host: dict) -> dict:
    import jax.numpy as jnp

    return {k: jnp.asarray(v) for k, v in host.items() if k != "terminals"}


# --------------------------------------------------------------------------------------------------
# FLOPs: analytic count, the jaxpr's dot_generals, XLA's cost analysis.


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
    """Matmul FLOPs of one update of a GFP or FQL agent, pass by pass (GFP.md section 2).

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


# --------------------------------------------------------------------------------------------------
# Sections.


def bench_training(cfg: BenchConfig) -> dict[str, Any]:
    """Targets 1-4: GFP vs FQL, FLOP efficiency, fused vs per-step, vmapped seeds."""
    import jax

    log(f"synthetic dataset: {cfg.dataset_size} transitions")
    host = synthetic_transitions(cfg.dataset_size, cfg.obs_dim, cfg.action_dim)
    dev = to_device(host)
    jax.block_until_ready(dev)
    res: dict[str, Any] = {"compile_s": {}}

    # ---- compile everything first (no timing runs while compiling) ------------------------
    agents = {
        "fql": make_bench_agent("fql", cfg.paper_hidden, cfg),
        "gfp": make_bench_agent("gfp", cfg.paper_hidden, cfg),
    }
    if cfg.gfp_mean:
        agents["gfp_mean"] = make_bench_agent("gfp", cfg.paper_hidden, cfg, target_agg="mean")
    fused: dict[str, Fused] = {}
    for name, agent in agents.items():
        log(f"compiling the fused {name} update at paper size (K={cfg.update_k})")
        fused[name] = Fused(agent, dev, 1, cfg.update_k)
        res["compile_s"][f"fused/{name}"] = round(fused[name].compile_s, 1)

    sizes: dict[str, tuple[Fused, PerStep]] = {}
    scan_only: dict[str, ScanOnly] = {}
    for size, hidden, k in cfg.fused_sizes:
        agent = make_bench_agent("gfp", hidden, cfg)
        if tuple(hidden) == tuple(cfg.paper_hidden) and k == cfg.update_k:
            f = fused["gfp"]
        else:
            log(f"compiling the fused GFP update, {size} size (K={k})")
            f = Fused(agent, dev, 1, k)
            res["compile_s"][f"fused/gfp/{size}"] = round(f.compile_s, 1)
        log(f"compiling the per-step GFP update, {size} size")
        p = PerStep(agent, host, k)
        res["compile_s"][f"perstep/gfp/{size}"] = round(p.compile_s, 1)
        sizes[size] = (f, p)
        if size in cfg.scan_only_sizes:
            log(f"compiling the one-seed scan without vmap (a reference), {size} size")
            scan_only[size] = ScanOnly(agent, dev, k)

    vmaps: dict[str, tuple[Fused, list[Fused]]] = {}
    for size, hidden, k in cfg.vmap_sizes:
        agent = make_bench_agent("gfp", hidden, cfg)
        one = next(
            (f for s, h, kk in cfg.fused_sizes if tuple(h) == tuple(hidden) and kk == k
             for f in [sizes[s][0]]),
            None,
        )  # fmt: skip
        if one is None:
            log(f"compiling the fused GFP update, {size} size, 1 seed (K={k})")
            one = Fused(agent, dev, 1, k)
        many = []
        for n in cfg.vmap_seeds:
            log(f"compiling the fused GFP update, {size} size, {n} seeds (K={k})")
            many.append(Fused(agent, dev, n, k))
            res["compile_s"][f"fused/gfp/{size}/{n}seeds"] = round(many[-1].compile_s, 1)
        vmaps[size] = (one, many)

    log("FLOP count (analytic, jaxpr, XLA) and the matmul loops of the same shapes")
    paper_perstep = next((p for s, h, _ in cfg.fused_sizes if s == "paper" for p in [sizes[s][1]]),
                         None)  # fmt: skip
    flops = flop_check(agents["gfp"], paper_perstep.compiled if paper_perstep else None)
    rate = 40e9 if jax.default_backend() == "cpu" else 2e13  # sizes the matmul timing loops
    matmul = MatmulRate(flops.pop("ops"), cfg.matmul_seconds, rate)
    fql_flops = sum(analytic_flops(agents["fql"]).values())
    res["flops"] = {
        "gfp_update_analytic": flops["analytic"],
        "gfp_update_jaxpr_dots": flops["jaxpr_dots"],
        "gfp_update_xla": flops["xla"],
        "fql_update_analytic": fql_flops,
        "gfp_over_fql_flops": flops["analytic"] / fql_flops,
        "breakdown": flops["breakdown"],
    }
    if cfg.gfp_mean:
        res["flops"]["gfp_mean_update_analytic"] = sum(analytic_flops(agents["gfp_mean"]).values())
    res["host_sampling_s"] = host_sampling_seconds(host, agents["gfp"].batch_keys, cfg.batch_size)
    return {
        "res": res,
        "fused": fused,
        "sizes": sizes,
        "scan_only": scan_only,
        "vmaps": vmaps,
        "matmul": matmul,
    }


def time_training(cfg: BenchConfig, prep: dict[str, Any]) -> dict[str, Any]:
    res, fused, matmul = prep["res"], prep["fused"], prep["matmul"]
    k = cfg.update_k

    log(f"timing GFP vs FQL at paper size: {cfg.reps} interleaved reps of {k} updates each")
    cases: dict[str, Callable[[], Any]] = dict(fused) | {"matmul": matmul}
    windows = interleave(cases, cfg.reps)
    upd = {name: summary(windows[name], k) for name in fused}
    res["update"] = upd
    res["gfp_over_fql_time"] = upd["gfp"]["wall_s"] / upd["fql"]["wall_s"]
    res["gfp_over_fql_cpu_time"] = upd["gfp"]["cpu_s"] / upd["fql"]["cpu_s"]
    if "gfp_mean" in upd:
        res["gfp_mean_over_fql_time"] = upd["gfp_mean"]["wall_s"] / upd["fql"]["wall_s"]
    f = res["flops"]
    ideal = matmul.ideal_seconds()
    achieved = f["gfp_update_analytic"] / upd["gfp"]["wall_s"]
    matmul_rate = f["gfp_update_jaxpr_dots"] / ideal
    res["matmul"] = {
        "ideal_update_s": ideal,
        "rate_gflops": matmul_rate / 1e9,
        "achieved_gflops": achieved / 1e9,
        "by_shape": matmul.table(),
        "foreign_cores": summary(windows["matmul"])["foreign_cores"],
    }
    res["flop_efficiency"] = achieved / matmul_rate
    res["fql_achieved_gflops"] = f["fql_update_analytic"] / upd["fql"]["wall_s"] / 1e9

    res["fused_vs_perstep"] = {}
    for size, (fu, ps) in prep["sizes"].items():
        log(f"timing fused vs per-step, {size}: {cfg.reps} interleaved reps of {fu.k} updates")
        cases = {"fused": fu, "perstep": ps}
        if size in prep["scan_only"]:
            cases["scan_only"] = prep["scan_only"][size]
        w = interleave(cases, cfg.reps)
        a, b = summary(w["fused"], fu.k), summary(w["perstep"], ps.k)
        res["fused_vs_perstep"][size] = {
            "fused": a,
            "perstep": b,
            "speedup": b["wall_s"] / a["wall_s"],
            "cpu_speedup": b["cpu_s"] / a["cpu_s"],
        }
        if "scan_only" in w:
            c = summary(w["scan_only"], fu.k)
            res["fused_vs_perstep"][size] |= {
                "scan_only": c,
                "scan_only_speedup": b["wall_s"] / c["wall_s"],
            }
    speedups = {s: r["speedup"] for s, r in res["fused_vs_perstep"].items()}
    res["fused_over_perstep_tiny"] = speedups.get("tiny")
    res["fused_over_perstep_min"] = min(speedups.values()) if speedups else None

    res["vmap"] = {}
    for size, (one, many) in prep["vmaps"].items():
        counts = [f.seeds for f in many]
        log(f"timing {counts} vmapped seeds vs 1, {size}: {cfg.reps} reps of {one.k} updates")
        w = interleave({"1": one} | {str(f.seeds): f for f in many}, cfg.reps)
        a = summary(w["1"], one.k)
        res["vmap"][size] = {"1 seed": a}
        for f in many:
            b = summary(w[str(f.seeds)], f.k)
            res["vmap"][size] |= {
                f"{f.seeds} seeds": b,
                f"ratio {f.seeds}": b["wall_s"] / a["wall_s"],
            }
    for n in (4, 8):
        res[f"vmap{n}_over_1"] = next(
            (v[f"ratio {n}"] for v in res["vmap"].values() if f"ratio {n}" in v), None
        )
    return res


def bench_eval(cfg: BenchConfig) -> dict[str, Any]:
    """Target 5: the vectorised evaluation against one environment at a time."""
    import jax

    from gfp.evaluate import close_env_pools, default_workers, evaluate

    agent = make_bench_agent("gfp", cfg.paper_hidden, cfg)
    params = agent.init(jax.random.PRNGKey(0)).params
    fn = agent.policy_fn("actor")

    def policy(obs, key):
        return fn(params, obs, key)

    for n in (1, cfg.eval_num_envs):  # compile the policy for both batch sizes outside the timing
        np.asarray(policy(np.zeros((n, cfg.obs_dim), np.float32), jax.random.PRNGKey(0)))
    episodes = cfg.eval_episodes
    out: dict[str, Any] = {
        "env": cfg.eval_env,
        "episodes": episodes,
        "num_envs": cfg.eval_num_envs,
        "workers": default_workers(cfg.eval_num_envs),
        "policy": "GFP one-step actor, 4x512, untrained (every episode runs to the time limit)",
    }

    def run(num_envs: int, cold: bool) -> Callable[[], Any]:
        def go():
            if cold:
                close_env_pools()
            return evaluate(policy, cfg.eval_env, episodes=episodes, num_envs=num_envs, seed=0)

        return go

    log(f"timing evaluation: {episodes} episodes of {cfg.eval_env}, one env vs a pool (cold, warm)")
    windows: dict[str, list[Window]] = {k: [] for k in ("single", "single_warm", "vec", "vec_warm")}
    results = {}
    for r in range(cfg.eval_reps):
        order = [("single", 1), ("vec", cfg.eval_num_envs)]
        for name, n in order if r % 2 == 0 else order[::-1]:
            results[name], w = timed(run(n, cold=True))
            windows[name].append(w)
            results[name + "_warm"], w = timed(run(n, cold=False))
            windows[name + "_warm"].append(w)
    close_env_pools()
    for name, ws in windows.items():
        out[name] = summary(ws)
        out[name]["steps_per_s"] = results[name]["length"] * episodes / out[name]["wall_s"]
    out["speedup"] = out["single_warm"]["wall_s"] / out["vec_warm"]["wall_s"]
    out["speedup_cold"] = out["single"]["wall_s"] / out["vec"]["wall_s"]
    return out


def datagen_throughput(name: str, episodes: int, length: int, workers: int, seed: int) -> dict:
    """`gfp data generate` end to end, in transitions (stored rows) per second and per CPU-second.

    Wall-clock, so other load lowers it; the CPU-time figure (this process and its workers) does
    not depend on that load. (The measurement of benchmarks/bench_datagen.py, which calls this.)
    """
    from gfp.data.generate import generate

    rows = (episodes + max(1, episodes // 10)) * length
    with tempfile.TemporaryDirectory(prefix="gfp-bench-") as tmp:
        cpu_start = datagen_cpu_seconds()
        start = time.perf_counter()
        generate(name, episodes, Path(tmp), workers=workers, seed=seed, episode_length=length,
                 progress=False)  # fmt: skip
        seconds = time.perf_counter() - start
        cpu = datagen_cpu_seconds() - cpu_start
    return {
        "workers": workers,
        "rows": rows,
        "seconds": round(seconds, 2),
        "transitions_per_s": round(rows / seconds, 1),
        "cpu_seconds": round(cpu, 2),
        "transitions_per_cpu_s": round(rows / cpu, 1),
    }


def datagen_cpu_seconds() -> float:
    """User + system CPU time of this process and its reaped children (the joined workers)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def bench_datagen(cfg: BenchConfig) -> dict[str, Any]:
    """Target 6: data generation throughput with one worker per core."""
    workers = cfg.datagen_workers or os.cpu_count() or 1
    log(f"timing data generation: {cfg.datagen_name}, {cfg.datagen_episodes} episodes, "
        f"{workers} workers")  # fmt: skip
    result, w = timed(
        lambda: datagen_throughput(
            cfg.datagen_name, cfg.datagen_episodes, cfg.datagen_length, workers, 0
        )
    )
    return result | {"name": cfg.datagen_name, "foreign_cores": round(w.foreign, 2),
                     "loadavg1": round(w.load1, 2)}  # fmt: skip


_PROBE_FIELDS = ("obs_dim", "action_dim", "batch_size", "flow_steps", "memory_dataset_size",
                 "memory_hidden", "memory_steps")  # fmt: skip


def memory_probe(args: dict[str, Any]) -> dict[str, Any]:
    """Target 7, run in its own process: a synthetic dataset of `memory_dataset_size`
    transitions, then GFP trained on it through gfp.run.fit (the `gfp train` path); returns the
    peak RSS. `args` holds the _PROBE_FIELDS of a BenchConfig."""
    import jax

    from gfp.data.load import Dataset
    from gfp.run import fit

    cfg = BenchConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in args.items()})
    t0 = time.perf_counter()
    train = synthetic_transitions(cfg.memory_dataset_size, cfg.obs_dim, cfg.action_dim)
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB
    ds = Dataset(train=train, val=None, name="synthetic", source="npz", env_name=None)
    agent = make_bench_agent("gfp", cfg.memory_hidden, cfg)
    steps = cfg.memory_steps
    states = fit(agent, ds, steps=steps, seeds=[0], log_every=max(1, steps // 2), progress=False)
    jax.block_until_ready(states)
    return {
        "dataset_transitions": cfg.memory_dataset_size,
        "dataset_gib": sum(v.nbytes for v in train.values()) / GIB,
        "hidden": list(cfg.memory_hidden),
        "steps": steps,
        "peak_rss_after_dataset_gib": rss_data,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB,
        "seconds": time.perf_counter() - t0,
    }


def start_memory_probe(cfg: BenchConfig) -> subprocess.Popen:
    args = json.dumps({k: getattr(cfg, k) for k in _PROBE_FIELDS})
    code = f"import json, gfp.bench as b; print(json.dumps(b.memory_probe(json.loads({args!r}))))"
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish_memory_probe(proc: subprocess.Popen) -> dict[str, Any]:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe failed (exit {proc.returncode}):\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------------
# The suite.


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for n in ("gfp", "jax", "jaxlib", "flax", "optax", "numpy", "ogbench", "mujoco", "gymnasium"):
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = "not installed"
    return out


def machine() -> dict[str, Any]:
    import jax

    return {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, 1),
        "device": str(jax.devices()[0]),
        "platform": platform.platform(),
    }


def for_accelerator(cfg: BenchConfig) -> BenchConfig:
    """On a GPU an update takes milliseconds: many more updates per timed call, and 8 vmapped
    seeds (issue 5, target 8: 1M updates in < 15 minutes, 8 seeds in < 2x the time of one)."""
    more = 25 if cfg.update_k < 8 else 50
    return dataclasses.replace(
        cfg,
        update_k=cfg.update_k * more,
        fused_sizes=tuple((n, h, k * more) for n, h, k in cfg.fused_sizes),
        vmap_sizes=((cfg.vmap_sizes[0][0], cfg.vmap_sizes[0][1], cfg.vmap_sizes[0][2] * more),),
        vmap_seeds=(4, 8),
    )


def run_bench(quick: bool = False, cfg: BenchConfig | None = None) -> dict[str, Any]:
    """Run the whole suite; returns one JSON-able dict (see the module docstring for fields)."""
    import jax

    if cfg is None:
        cfg = QUICK if quick else FULL
        if jax.default_backend() != "cpu":
            cfg = for_accelerator(cfg)
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    log("memory probe started in a separate process (it compiles while this one does)")
    probe = start_memory_probe(cfg)
    try:
        prep = bench_training(cfg)
    finally:
        log("waiting for the memory probe to finish before timing anything")
        memory = finish_memory_probe(probe)
    training = time_training(cfg, prep)
    evaluation = bench_eval(cfg)
    datagen = bench_datagen(cfg)
    out: dict[str, Any] = {
        "gfp_over_fql_time": training["gfp_over_fql_time"],
        "gfp_mean_over_fql_time": training.get("gfp_mean_over_fql_time"),
        "flop_efficiency": training["flop_efficiency"],
        "fused_over_perstep_tiny": training["fused_over_perstep_tiny"],
        "fused_over_perstep_min": training["fused_over_perstep_min"],
        "vmap4_over_1": training["vmap4_over_1"],
        "eval_vectorized_speedup": evaluation["speedup"],
        "eval_vectorized_speedup_cold": evaluation["speedup_cold"],
        "datagen_transitions_per_s": datagen["transitions_per_s"],
        "peak_rss_gib": memory["peak_rss_gib"],
        "minutes_per_million_updates": training["update"]["gfp"]["wall_s"] * 1e6 / 60,
        "vmap8_over_1": training["vmap8_over_1"],
    }
    targets = dict(TARGETS)
    if jax.default_backend() != "cpu":
        targets |= {"minutes_per_million_updates": ("<", 15.0), "vmap8_over_1": ("<", 2.0)}
    out["targets"] = {
        name: {"value": v, "target": f"{op} {bound:g}", "met": _met(v, op, bound)}
        for name, (op, bound) in targets.items()
        for v in [out.get(name)]
    }
    out |= {
        "training": training,
        "evaluation": evaluation,
        "datagen": datagen,
        "memory": memory,
        "bench_peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB,
        "quick": quick,
        "config": dataclasses.asdict(cfg),
        "command": "gfp bench" + (" --quick" if quick else ""),
        "machine": machine(),
        "versions": versions(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    return out


def _met(value: float | None, op: str, bound: float) -> bool | None:
    if value is None or not math.isfinite(value):
        return None
    return {"<=": value <= bound, "<": value < bound, ">=": value >= bound}[op]


def format_report(r: dict[str, Any]) -> str:
    """The human-readable report of `run_bench`'s result."""
    t, ev, dg, mem = r["training"], r["evaluation"], r["datagen"], r["memory"]
    f, mm = t["flops"], t["matmul"]
    lines = [
        f"gfp bench{' --quick' if r['quick'] else ''}: {r['machine']['cpu']}, "
        f"{r['machine']['cpu_count']} cores, {r['machine']['device']}, {r['date']}, "
        f"{r['seconds']:.0f} s; load average {r['loadavg_start']} -> {r['loadavg_end']}",
        "",
        "Targets (medians of interleaved repetitions; 'other load': cores other processes used):",
    ]
    for name, tgt in r["targets"].items():
        v = tgt["value"]
        mark = {True: "ok", False: "MISSED", None: "n/a"}[tgt["met"]]
        lines.append(
            f"  {name:28s} {v if v is None else f'{v:10.3f}'}  target {tgt['target']:8s} {mark}"
        )
    lines += ["", "Training updates at paper size (per update; fused path, 1 seed):"]
    for name, u in t["update"].items():
        lines.append(
            f"  {name:9s} {u['wall_s'] * 1e3:8.1f} ms wall  {u['cpu_s'] * 1e3:8.1f} ms CPU  "
            f"other load {u['foreign_cores']:.2f} cores, loadavg {u['loadavg1']}"
        )
    lines.append(
        f"  GFP/FQL time {t['gfp_over_fql_time']:.3f} (CPU time {t['gfp_over_fql_cpu_time']:.3f}); "
        f"FLOPs {f['gfp_over_fql_flops']:.3f}"
        + (f"; GFP y_VaBC/FQL {t['gfp_mean_over_fql_time']:.3f}" if "gfp_mean_over_fql_time" in t
           else "")
    )  # fmt: skip
    lines += ["", "Matmul FLOPs of one GFP update (analytic):"]
    for name, v in f["breakdown"].items():
        lines.append(f"  {v / 1e9:8.3f} GFLOP  {name}")
    xla = f["gfp_update_xla"]
    lines.append(
        f"  {f['gfp_update_analytic'] / 1e9:8.3f} GFLOP  total (jaxpr dot_generals "
        f"{f['gfp_update_jaxpr_dots'] / 1e9:.3f}; XLA cost analysis, all ops, "
        f"{'n/a' if xla is None else f'{xla / 1e9:.3f}'}); FQL {f['fql_update_analytic'] / 1e9:.3f}"
    )
    lines.append(
        f"  achieved {mm['achieved_gflops']:.1f} GFLOP/s; the same matmuls alone "
        f"{mm['rate_gflops']:.1f} GFLOP/s ({mm['ideal_update_s'] * 1e3:.1f} ms); efficiency "
        f"{t['flop_efficiency']:.1%}"
    )
    lines.append("  matmul shapes by share of FLOPs (lhs x rhs, count, GFLOP/s alone):")
    for row in mm["by_shape"][:8]:
        lines.append(
            f"    {row['lhs']} x {row['rhs']} contract {row['contract']} x{row['count']}: "
            f"{row['gflop']:.3f} GFLOP at {row['gflops']:.1f} GFLOP/s"
        )
    lines += [
        "",
        "Fused (K per lax.scan, batches sampled on the device) vs per-step (numpy batch):",
    ]
    for size, v in t["fused_vs_perstep"].items():
        lines.append(
            f"  {size:6s} fused {v['fused']['wall_s'] * 1e3:8.2f} ms  per-step "
            f"{v['perstep']['wall_s'] * 1e3:8.2f} ms  speedup {v['speedup']:.2f}x "
            f"(CPU time {v['cpu_speedup']:.2f}x), other load {v['fused']['foreign_cores']:.2f}"
        )
        if "scan_only" in v:
            lines.append(
                f"         reference, one-seed scan without vmap: "
                f"{v['scan_only']['wall_s'] * 1e3:8.2f} ms, {v['scan_only_speedup']:.2f}x per-step"
            )
    lines.append(
        f"  host work of the per-step path: {t['host_sampling_s'] * 1e3:.3f} ms per numpy batch"
    )
    lines += ["", "Vmapped seeds (time per fused call, same updates per seed):"]
    for size, v in t["vmap"].items():
        a = v["1 seed"]
        line = f"  {size:6s} 1 seed {a['wall_s'] * 1e3:8.1f} ms"
        for key, b in v.items():
            if key.endswith(" seeds"):
                n = key.split()[0]
                line += f";  {key} {b['wall_s'] * 1e3:8.1f} ms, ratio {v['ratio ' + n]:.2f}"
        lines.append(line + f" (other load {a['foreign_cores']:.2f})")
    lines += [
        "",
        f"Evaluation, {ev['episodes']} episodes of {ev['env']} ({ev['policy']}):",
    ]
    for name in ("single", "vec", "single_warm", "vec_warm"):
        v = ev[name]
        lines.append(
            f"  {name:12s} {v['wall_s']:7.1f} s  {v['steps_per_s']:7.0f} env steps/s, "
            f"other load {v['foreign_cores']:.2f}"
        )
    lines.append(
        f"  speedup {ev['speedup']:.2f}x warm (the target's figure), "
        f"{ev['speedup_cold']:.2f}x cold "
        f"({ev['num_envs']} envs, {ev['workers']} worker processes)"
    )
    lines += [
        "",
        f"Data generation: {dg['name']}, {dg['rows']} transitions, {dg['workers']} workers: "
        f"{dg['transitions_per_s']:.0f}/s ({dg['transitions_per_cpu_s']:.0f} per CPU-second), "
        f"other load {dg['foreign_cores']:.2f}",
        "",
        f"Memory: {mem['dataset_transitions']} transitions ({mem['dataset_gib']:.2f} GiB) + GFP "
        f"training {'x'.join(map(str, mem['hidden']))}: peak RSS {mem['peak_rss_gib']:.2f} GiB "
        f"(after the dataset {mem['peak_rss_after_dataset_gib']:.2f}); this process "
        f"{r['bench_peak_rss_gib']:.2f} GiB",
    ]
    return "\n".join(lines)


def main(quick: bool = False, as_json: bool = False, out: str | Path | None = None) -> dict:
    """What `gfp bench` runs: the suite, then the report (or the JSON object) on stdout."""
    result = run_bench(quick)
    if out is not None:
        Path(out).write_text(json.dumps(result, indent=1, default=str) + "\n")
    if as_json:
        print(json.dumps(result, default=str))
    else:
        print(format_report(result))
    return result
