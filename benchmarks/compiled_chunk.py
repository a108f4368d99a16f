"""The compiled XLA program of the offline training chunk, as text without source locations, so
that two checkouts' programs can be compared: identical text means identical speed and results.

    PYTHONPATH=/tmp/gfp-before python benchmarks/compiled_chunk.py --seeds 4 --out before.txt
    python benchmarks/compiled_chunk.py --seeds 4 --out after.txt && cmp before.txt after.txt

It builds GFP at 2x256 (batch 256, 28-d observations, 5-d actions), 8 fused updates, for 1 or
more vmapped seeds, through whichever API the checkout has (gfp.engine.chunk.Chunk, or the
gfp.train.make_train_chunk it replaced).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from gfp.agents import make_agent
from gfp.agents.configs import GFPConfig


def compiled_text(seeds: int, updates: int = 8) -> str:
    cfg = GFPConfig(actor_hidden_dims=(256, 256), value_hidden_dims=(256, 256), batch_size=256)
    agent = make_agent("gfp", cfg, obs_dim=28, action_dim=5)
    rng, n = np.random.default_rng(0), 10_000
    data = {
        "observations": rng.normal(size=(n, 28)),
        "actions": rng.uniform(-1, 1, (n, 5)),
        "rewards": rng.normal(size=n),
        "masks": np.ones(n),
        "next_observations": rng.normal(size=(n, 28)),
    }
    data = {k: jnp.asarray(v, jnp.float32) for k, v in data.items()}
    try:
        from gfp.engine.chunk import Chunk, init_states
        from gfp.engine.samplers import ArraySampler

        fn = Chunk(agent, ArraySampler(data)).fused
    except ImportError:  # a checkout from before the engine
        from gfp.train import init_states, make_train_chunk

        fn = make_train_chunk(agent, cfg.batch_size)
    text = fn.lower(init_states(agent, list(range(seeds))), data, updates).compile().as_text()
    return normalize(text)


def normalize(text: str) -> str:
    """The program without what names the source: the file/function/frame tables, metadata and
    stack frame ids, the module name."""
    out, skip = [], False
    for line in text.splitlines():
        if line.strip() in ("FileNames", "FunctionNames", "FileLocations", "StackFrames"):
            skip = True
            continue
        if skip and (re.match(r"^\s*\d+ ", line) or not line.strip()):
            continue
        skip = False
        line = re.sub(r", metadata=\{[^}]*\}", "", line)
        line = re.sub(r", stack_frame_id=\d+", "", line)
        out.append(re.sub(r"^HloModule \S+", "HloModule chunk", line))
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    args.out.write_text(compiled_text(args.seeds))
    print(f"{args.out}: {len(args.out.read_text().splitlines())} lines")


if __name__ == "__main__":
    main()
