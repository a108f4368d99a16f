"""Target 6: data generation throughput."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from gfp.bench.config import BenchConfig
from gfp.bench.timing import log, timed


def datagen_throughput(name: str, episodes: int, length: int, workers: int, seed: int) -> dict:
    """`gfp data generate` end to end, in transitions (stored rows) per second and per CPU-second.

    Wall-clock, so other load lowers it; the CPU-time figure (this process and its workers) does
    not depend on that load, and the load is recorded beside it. (The measurement of
    benchmarks/bench_datagen.py, which calls this.)
    """
    from gfp.datagen.generate import generate

    rows = (episodes + max(1, episodes // 10)) * length
    with tempfile.TemporaryDirectory(prefix="gfp-bench-") as tmp:
        _, w = timed(
            lambda: generate(name, episodes, Path(tmp), workers=workers, seed=seed,
                             episode_length=length, progress=False)
        )  # fmt: skip
    return {
        "workers": workers,
        "rows": rows,
        "seconds": round(w.wall, 2),
        "transitions_per_s": round(rows / w.wall, 1),
        "cpu_seconds": round(w.cpu, 2),
        "transitions_per_cpu_s": round(rows / w.cpu, 1),
        "foreign_cores": round(w.foreign, 2),
        "loadavg1": round(w.load1, 2),
    }


def bench_datagen(cfg: BenchConfig) -> dict[str, Any]:
    """Target 6: data generation throughput with one worker per core."""
    workers = cfg.datagen_workers or os.cpu_count() or 1
    log(f"timing data generation: {cfg.datagen_name}, {cfg.datagen_episodes} episodes, "
        f"{workers} workers")  # fmt: skip
    result = datagen_throughput(
        cfg.datagen_name, cfg.datagen_episodes, cfg.datagen_length, workers, 0
    )
    return result | {"name": cfg.datagen_name}
