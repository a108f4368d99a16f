"""Benchmark offline OGBench dataset generation (gfp.datagen.generate) in transitions per second.

A transition here is one stored row (one env step with its action). The figure is end to end:
worker start-up, simulation, shard writes and the final merge and compression are all included.
It is wall-clock, so other load on the machine lowers it; the CPU-time figure printed beside it
(transitions per CPU-second, all processes) does not depend on that load, and the load average
is recorded so a contended measurement can be recognised.

    .venv/bin/python benchmarks/bench_datagen.py                      # 8 episodes, 2 then 1 worker
    .venv/bin/python benchmarks/bench_datagen.py --workers 2 --json   # machine-readable
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
from importlib import metadata

from gfp.bench import datagen_throughput


def _cpu_model() -> str:
    with open("/proc/cpuinfo") as f:  # Linux only, like the rest of this project's tooling
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _versions() -> dict[str, str]:
    names = ("gfp", "ogbench", "mujoco", "numpy", "gymnasium", "scipy")
    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = "not installed"
    return out


# The measurement itself lives in gfp.bench (`gfp bench` reports it as datagen_transitions_per_s);
# this script keeps its own CLI and output.
run = datagen_throughput


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", default="cube-single-noisy-v0")
    p.add_argument("--episodes", type=int, default=8, help="train episodes (+ max(1, n//10) val)")
    p.add_argument("--episode-length", type=int, default=1001)
    p.add_argument("--workers", default="2,1", help="comma-separated worker counts to run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    a = p.parse_args()

    load_before = os.getloadavg()
    results = [
        run(a.name, a.episodes, a.episode_length, int(w), a.seed) for w in a.workers.split(",")
    ]
    report = {
        "benchmark": "datagen",
        "name": a.name,
        "episodes": a.episodes,
        "episode_length": a.episode_length,
        "results": results,
        "machine": {
            "cpu": _cpu_model(),
            "cpu_count": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "versions": _versions(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    if a.json:
        print(json.dumps(report))
        return
    for r in results:
        print(
            f"{a.name}: {r['rows']} transitions ({a.episodes}+val episodes x {a.episode_length}) "
            f"with {r['workers']} worker(s) in {r['seconds']:.1f} s = "
            f"{r['transitions_per_s']:.0f} transitions/s "
            f"({r['transitions_per_cpu_s']:.0f} per CPU-second)"
        )
    print(f"load average before/after: {load_before} / {os.getloadavg()}")


if __name__ == "__main__":  # required: workers are spawned and re-import the main module
    main()
