"""Loading a 10M-row OGBench dataset as one file vs as a folder of 1M-row shards (gfp.data.sharded):
wall seconds and peak resident memory of `gfp.data.load.load_dataset`, each load in a fresh
process (its peak RSS is the process's own, ru_maxrss).

The 10M rows are made from a small generated dataset by repeating its episodes (generating 10M
rows with the oracles would take hours on 2 cores): `--base-episodes` episodes of
cube-single-noisy-v0 (1001 rows each, seed 0) repeated to ~10M rows, written as OGBench writes
its files (np.savez_compressed): once as STEM.npz + STEM-val.npz, once as ten shards
STEM-000.npz ... STEM-009.npz of 1,001,000 rows (whole episodes) + STEM-000-val.npz in
cube-single-noisy-10m-v0/. The relabelled rewards are the task's (singletask task 1).

    .venv/bin/python benchmarks/bench_shards.py --work /tmp/bench_shards [--reps 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TASK = "cube-single-noisy-singletask-task1-v0"
STEM = "cube-single-noisy-v0"
SHARDS = 10


def build(work: Path, base_episodes: int) -> tuple[Path, Path]:
    """The single-file dataset and the sharded folder (kept between runs)."""
    from gfp.data import sharded
    from gfp.datagen.generate import generate

    base = work / "base"
    if not (base / f"{STEM}.npz").exists():
        generate(STEM, base_episodes, base, workers=1, seed=0, progress=False)
    with np.load(base / f"{STEM}.npz") as f:
        raw = {k: f[k] for k in f.files}
    rows = len(raw["terminals"])
    repeat = -(-10_000_000 // (rows * SHARDS))  # copies of the base per shard
    single, folder = work / "single", work / sharded.folder_name(STEM, rows * repeat * SHARDS)
    if not (folder / sharded.shard_name(STEM, SHARDS - 1)).exists():
        folder.mkdir(parents=True, exist_ok=True)
        shard = {k: np.concatenate([v] * repeat) for k, v in raw.items()}
        np.savez_compressed(folder / sharded.shard_name(STEM, 0), **shard)
        for i in range(1, SHARDS):  # every shard holds the same rows: copy the first
            shutil.copyfile(
                folder / sharded.shard_name(STEM, 0), folder / sharded.shard_name(STEM, i)
            )
        shutil.copyfile(base / f"{STEM}-val.npz", folder / sharded.val_name(STEM))
        del shard
    if not (single / f"{STEM}.npz").exists():
        single.mkdir(parents=True, exist_ok=True)
        whole = {k: np.concatenate([v] * (repeat * SHARDS)) for k, v in raw.items()}
        np.savez_compressed(single / f"{STEM}.npz", **whole)
        shutil.copyfile(base / f"{STEM}-val.npz", single / f"{STEM}-val.npz")
    return single, folder


def measure(directory: str) -> None:
    """Child process: one load, then 'seconds rows peak_rss_bytes' on stdout."""
    from gfp.data.load import load_dataset

    start = time.perf_counter()
    ds = load_dataset(TASK, directory)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(seconds, ds.size, peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_shards"))
    parser.add_argument("--base-episodes", type=int, default=10)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure)
        return
    single, folder = build(args.work, args.base_episodes)
    print(f"load average before: {os.getloadavg()}", flush=True)
    results: dict[str, list[tuple[float, int, int]]] = {"single file": [], "shards": []}
    for _ in range(args.reps):  # interleaved, so a change in the machine's load hits both
        for label, path in (("single file", single), ("shards", folder)):
            out = subprocess.run(
                [sys.executable, __file__, "--measure", str(path)],
                check=True, capture_output=True, text=True,
            ).stdout.split()  # fmt: skip
            results[label].append((float(out[0]), int(out[1]), int(out[2])))
            print(label, results[label][-1], os.getloadavg(), flush=True)
    print(f"load average after: {os.getloadavg()}")
    print("| layout | train transitions | load seconds (each rep) | peak RSS |")
    print("|---|---|---|---|")
    for label, runs in results.items():
        secs = ", ".join(f"{s:.1f}" for s, _, _ in runs)
        peak = max(p for _, _, p in runs) / 2**30
        print(f"| {label} | {runs[0][1]:,} | {secs} | {peak:.2f} GiB |")


if __name__ == "__main__":
    main()
