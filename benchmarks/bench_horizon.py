"""Update speed with action chunking: fql and gfp at horizon 1 against horizon 5 (and qc at 5).

    .venv/bin/python benchmarks/bench_horizon.py [--k 50] [--reps 5] [--agents fql,gfp,qc]

The cpu preset's sizes (128x128 networks, batch 256) on cube-single's shapes (obs 28, action 5),
M = 10 flow steps. Each case is K updates fused in one jitted `lax.scan` over K minibatches already
on the device (horizon 1: transitions; horizon 5: windows, actions (B, 5, A) and valid (B, 5), as
the engine's window sampler hands them), so the figure is the agents' update alone, without
sampling. The cases are compiled first, then timed interleaved A B B A ... (gfp.bench.timing) and
medians reported: updates/s by wall clock and CPU-seconds per update.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gfp.agents import CONFIGS, make_agent  # noqa: E402
from gfp.bench.timing import interleave, summary  # noqa: E402

OBS, ACT, BATCH, HIDDEN = 28, 5, 256, (128, 128)


def minibatches(k: int, h: int, seed: int = 0) -> dict[str, jax.Array]:
    rng = np.random.default_rng(seed)
    f = np.float32
    out = {
        "observations": rng.normal(size=(k, BATCH, OBS)).astype(f),
        "actions": rng.uniform(-1, 1, (k, BATCH, ACT) if h == 1 else (k, BATCH, h, ACT)).astype(f),
        "rewards": rng.normal(size=(k, BATCH)).astype(f),
        "masks": np.ones((k, BATCH), f),
        "next_observations": rng.normal(size=(k, BATCH, OBS)).astype(f),
    }
    if h > 1:
        valid = np.ones((k, BATCH, h), f)
        valid[:, ::10, 3:] = 0.0  # a tenth of the windows end early
        out["valid"] = valid
    return {key: jnp.asarray(v) for key, v in out.items()}


def case(name: str, h: int, k: int):
    config = CONFIGS[name](
        actor_hidden_dims=HIDDEN, value_hidden_dims=HIDDEN, batch_size=BATCH, horizon=h
    )
    agent = make_agent(name, config, obs_dim=OBS, action_dim=ACT)
    data = minibatches(k, h)

    @jax.jit
    def run(state, data):
        return jax.lax.scan(lambda s, b: (agent.update(s, b)[0], None), state, data)[0]

    box = {"state": agent.init(jax.random.PRNGKey(0))}
    box["state"] = jax.block_until_ready(run(box["state"], data))  # compile

    def go():
        box["state"] = jax.block_until_ready(run(box["state"], data))

    return go


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=50, help="updates per timed window")
    parser.add_argument("--reps", type=int, default=5, help="timed windows per case")
    parser.add_argument("--agents", default="fql,gfp,qc")
    args = parser.parse_args()
    cases = {}
    for name in args.agents.split(","):
        for h in (1, 5):
            cases[f"{name} h={h}"] = case(name, h, args.k)
    windows = interleave(cases, args.reps)
    print(f"jax {jax.__version__} {jax.devices()[0].platform}; {HIDDEN} nets, batch {BATCH}")
    print(f"{'case':10s} {'updates/s':>10s} {'cpu ms/update':>14s} {'other load (cores)':>19s}")
    for label, ws in windows.items():
        s = summary(ws, per=args.k)
        rate, cpu_ms, other = 1 / s["wall_s"], 1e3 * s["cpu_s"], s["foreign_cores"]
        print(f"{label:10s} {rate:10.1f} {cpu_ms:14.2f} {other:19.2f}")


if __name__ == "__main__":
    main()
