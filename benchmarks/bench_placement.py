"""State-data placement benchmark (BENCHMARKS.md, "State-data placement").

    .venv/bin/python benchmarks/bench_placement.py [--rows 1000000] [--rounds 2] [--k 200]

For each placement (device, host, disk; gfp.engine.placement.state_sampler) in a fresh
interpreter, interleaved over --rounds rounds: minibatches per second of the sampler alone (device:
K draws in one jitted scan; host and disk: the fed path, planning the rows, gathering them and
putting them on the device, as the chunk's prefetch thread runs it), GFP updates per second at the
cpu preset (128x128 networks, batch 256; K updates per chunk call), and the process's peak RSS.
The dataset: gfp.bench's synthetic transitions (obs 28, action 5), built in the process (its
float32 arrays count in every placement's RSS). The load average is printed with each row.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def one(placement: str, rows: int, k: int, reps: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from gfp.agents import make_agent
    from gfp.agents.base import ObsSpec
    from gfp.bench.paths import synthetic_transitions
    from gfp.engine.chunk import Chunk, init_states
    from gfp.engine.placement import make_sampler
    from gfp.engine.samplers import sample_rows
    from gfp.presets import resolve

    config, _ = resolve("gfp", None, "cpu")
    agent = make_agent("gfp", config, obs_spec=ObsSpec((28,), "float32"), action_dim=5)
    data = synthetic_transitions(rows, 28, 5)
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        sampler = make_sampler(data, agent.batch_keys, placement, cache_dir=cache).for_agent(agent)
        place_s = time.perf_counter() - t0
        rngs = np.asarray(jax.random.split(jax.random.PRNGKey(0), 1))

        if sampler.fed:

            def draw() -> None:
                for _, block in sampler.feed(rngs, k, config):
                    jax.block_until_ready(block)
        else:

            @jax.jit
            def scan(data, rng):
                def step(rng, _):
                    rng, b = jax.random.split(rng)
                    return rng, jax.tree.map(jnp.sum, sample_rows(data, b, config.batch_size))

                return jax.lax.scan(step, rng, None, length=k)[1]

            def draw() -> None:
                jax.block_until_ready(scan(sampler.data, jnp.asarray(rngs[0])))

        draw()  # compiled
        t0 = time.perf_counter()
        for _ in range(reps):
            draw()
        minibatches = reps * k / (time.perf_counter() - t0)

        chunk = Chunk(agent, sampler)
        states = init_states(agent, [0])
        states = jax.block_until_ready(chunk(states, k)[0])  # compiled
        t0 = time.perf_counter()
        for _ in range(reps):
            states = jax.block_until_ready(chunk(states, k)[0])
        updates = reps * k / (time.perf_counter() - t0)
    return {
        "placement": placement,
        "rows": rows,
        "place_s": round(place_s, 2),
        "minibatches_per_s": round(minibatches, 1),
        "updates_per_s": round(updates, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "load": round(os.getloadavg()[0], 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--k", type=int, default=200, help="updates (minibatches) per timed call")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--one", help=argparse.SUPPRESS)  # the child: one placement
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.rows, args.k, args.reps)))
        return
    for _ in range(args.rounds):
        for placement in ("device", "host", "disk"):
            cmd = [sys.executable, __file__, "--one", placement, "--rows", str(args.rows),
                   "--k", str(args.k), "--reps", str(args.reps)]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
