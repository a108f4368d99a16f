"""The fused chunk with `lax.scan` unrolled 1, 2 and 4 times against the per-step path, one seed,
interleaved (BENCHMARKS.md, "The other CPU targets"): whether unrolling would help the fused path
where it only ties with per-step dispatch.

    .venv/bin/python benchmarks/scan_unroll.py [--hidden 256x256] [--k 60] [--reps 7]

The engine's `scan_updates` is swapped for an unrolled copy while each variant is compiled; the
engine itself is not changed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gfp.bench.config import BenchConfig  # noqa: E402
from gfp.bench.paths import PerStep, make_bench_agent, synthetic_transitions  # noqa: E402
from gfp.engine import chunk  # noqa: E402
from gfp.engine.samplers import ArraySampler  # noqa: E402


def fused_call(agent, data: dict, k: int, unroll: int) -> Callable[[], None]:
    """One compiled chunk of `k` updates whose scan is unrolled `unroll` times."""
    original = chunk.scan_updates

    def unrolled(agent, sampler, state, data, fed, length):
        def body(state, fed_one):
            return chunk.sampled_update(agent, sampler, state, data, fed_one)

        return jax.lax.scan(body, state, fed, length=length, unroll=unroll)

    chunk.scan_updates = unrolled
    try:
        fused = chunk.Chunk(agent, ArraySampler(data)).fused
        states = chunk.init_states(agent, [0])
        compiled = fused.lower(states, data, k).compile()
    finally:
        chunk.scan_updates = original
    held = [states]

    def call() -> None:
        out = compiled(held[0], data)
        held[0] = out[0]
        jax.block_until_ready(out)

    call()  # warm-up
    return call


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", default="256x256")
    p.add_argument("--k", type=int, default=60)
    p.add_argument("--reps", type=int, default=7)
    a = p.parse_args()
    cfg = BenchConfig()
    host = synthetic_transitions(1_000_000, cfg.obs_dim, cfg.action_dim)
    agent = make_bench_agent("gfp", tuple(int(x) for x in a.hidden.split("x")), cfg)
    data = {key: jax.device_put(host[key]) for key in agent.batch_keys}
    cases: dict[str, Callable[[], None]] = {
        f"fused, unroll {u}": fused_call(agent, data, a.k, u) for u in (1, 2, 4)
    }
    cases["per-step"] = PerStep(agent, host, a.k)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(a.reps):  # interleaved: every case once per round
        for name, call in cases.items():
            t0 = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t0)
    for name, ts in times.items():
        print(f"{name:16s} {np.median(ts) / a.k * 1e3:8.3f} ms/update")


if __name__ == "__main__":
    main()
