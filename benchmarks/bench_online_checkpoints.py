"""Seconds and bytes of one online checkpoint's replay part, once the buffer holds N online rows.

Measures the checkpoint function directly (no training): a buffer of one seed (observation and
action sizes of antmaze, 29 and 8; next_actions as ReBRAC keeps them) is filled with N rows, then
a checkpoint is written as gfp.run writes it, with the rows added since a checkpoint `--every`
rows before. Run with the gfp to measure on PYTHONPATH (the code before the replay segments
writes every held row each time; `replay_end` tells them apart):

    PYTHONPATH=. .venv/bin/python benchmarks/bench_online_checkpoints.py --rows 10000 50000 100000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import flax.serialization
import numpy as np

from gfp.engine.replay import create_buffers, held_rows
from gfp.rundir import RunDir


def write(run: RunDir, buffers, added: int, segmented: bool) -> float:
    """Seconds to write the checkpoint at `added` online rows (step = added)."""
    state, meta = (
        {"params": np.zeros(1000, np.float32)},
        {"step": added, "online": {"added": added}},
    )
    t = time.perf_counter()
    if segmented:
        from gfp.rundir import ReplaySegment

        start = run.replay_end or 0
        rows = {k: np.asarray(x[0, start:added]) for k, x in buffers.data.items()}
        run.save_checkpoint(state, meta, ReplaySegment(rows, start, added, 0, {"added": added}))
    else:
        held = {**state, "online": {"rows": held_rows(buffers, 0, added)}}
        run.save_checkpoint(flax.serialization.to_state_dict(held), meta)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    parser.add_argument("--every", type=int, default=5_000, help="rows between checkpoints")
    parser.add_argument("--capacity", type=int, default=1_000_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    dims = {"observations": 29, "next_observations": 29, "actions": 8, "next_actions": 8}
    empty = {k: np.zeros((0, d), np.float32) for k, d in dims.items()}
    empty |= {k: np.zeros(0, np.float32) for k in ("rewards", "masks")}
    segmented = hasattr(RunDir, "replay_end")
    print(
        f"{'rows':>8} {'seconds':>8} {'MB written':>10}  ({'segments' if segmented else 'whole'})"
    )
    for n in args.rows:
        buffers = create_buffers(empty, args.capacity, 1)
        data = {k: x.at[0, :n].set(rng.normal(size=(n, *x.shape[2:])).astype(x.dtype))
                for k, x in buffers.data.items()}  # fmt: skip
        count = np.full(1, n, np.int32)
        buffers = buffers.replace(data=data, size=count, pointer=count, added=count)
        with tempfile.TemporaryDirectory() as tmp:
            run = RunDir(Path(tmp))
            write(run, buffers, n - args.every, segmented)  # the checkpoint before
            seconds = write(run, buffers, n, segmented)
            newest = [Path(tmp) / "checkpoint.msgpack", *Path(tmp).glob(f"replay/seg-{n:012d}*")]
            written = sum(p.stat().st_size for p in newest)
            run.close()
        print(f"{n:>8} {seconds:>8.3f} {written / 1e6:>10.2f}")


if __name__ == "__main__":
    main()
