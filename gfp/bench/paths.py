"""The bench's agents and data, and the two training paths it compares: fused (K updates per
lax.scan call, batches sampled on the device) and per-step (one jitted update per Python call)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from gfp.bench.config import BenchConfig


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


def _compile(jitted: Any, *args: Any) -> tuple[Any, float]:
    """`jitted.lower(*args).compile()` and the seconds it took."""
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - t0


class Fused:
    """The fused path: the engine's chunk (`gfp.engine.chunk.Chunk`) compiled for `seeds` seeds
    and K updates per call."""

    def __init__(self, agent, device_data: dict, seeds: int, k: int):
        self.k, self.seeds = k, seeds
        self.data = {key: device_data[key] for key in agent.batch_keys}
        self.states, program, static = self._program(agent, seeds, k)
        self.compiled, self.compile_s = _compile(program, self.states, self.data, *static)
        self()  # warm-up

    def _program(self, agent, seeds: int, k: int) -> tuple[Any, Any, tuple]:
        """(initial states, the jitted chunk, its static arguments after (states, data))."""
        from gfp.engine.chunk import Chunk, init_states
        from gfp.engine.samplers import ArraySampler

        chunk = Chunk(agent, ArraySampler(self.data))
        return init_states(agent, list(range(seeds))), chunk.fused, (k,)

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
        update = jax.jit(agent.update, donate_argnums=0)
        self.compiled, self.compile_s = _compile(update, self.state, self.sample())
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
    the device, like the engine's chunk, but for ONE seed without vmap and without the metrics
    and health outputs. It shows what the seed axis costs at one seed."""

    def __init__(self, agent, device_data: dict, k: int):
        super().__init__(agent, device_data, 1, k)

    def _program(self, agent, seeds: int, k: int) -> tuple[Any, Any, tuple]:
        import jax
        import jax.numpy as jnp

        from gfp.engine.samplers import sample_rows

        def chunk(state, data):
            def body(state, _):
                rng, batch_rng = jax.random.split(state.rng)
                batch = sample_rows(data, batch_rng, agent.config.batch_size)
                return agent.update(state.replace(rng=rng), batch)

            state, metrics = jax.lax.scan(body, state, None, length=k)
            return state, jax.tree.map(jnp.mean, metrics)

        states = jax.tree.map(jnp.array, agent.init(jax.random.PRNGKey(0)))
        return states, jax.jit(chunk, donate_argnums=0), ()


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
    """The arrays the update reads, on the default device."""
    import jax.numpy as jnp

    return {k: jnp.asarray(v) for k, v in host.items() if k != "terminals"}
