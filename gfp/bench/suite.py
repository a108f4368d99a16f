"""The whole suite: every section, the targets, the machine and versions; `gfp bench`'s entry."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from gfp.bench.config import FULL, GIB, QUICK, TARGETS, BenchConfig, for_accelerator
from gfp.bench.datagen import bench_datagen
from gfp.bench.evaluation import bench_eval
from gfp.bench.memory import finish_memory_probe, peak_rss_gib, start_memory_probe
from gfp.bench.report import format_report
from gfp.bench.timing import log
from gfp.bench.training import bench_training, time_training


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
    """Versions of Python and of the packages the figures depend on."""
    out = {"python": platform.python_version()}
    for n in ("gfp", "jax", "jaxlib", "flax", "optax", "numpy", "ogbench", "mujoco", "gymnasium"):
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = "not installed"
    return out


def machine() -> dict[str, Any]:
    """The CPU, core count, memory and JAX device the figures were measured on."""
    import jax

    return {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, 1),
        "device": str(jax.devices()[0]),
        "platform": platform.platform(),
    }


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
        "bench_peak_rss_gib": peak_rss_gib(),
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


def main(quick: bool = False, as_json: bool = False, out: str | Path | None = None) -> dict:
    """What `gfp bench` runs: the suite, then the report (or the JSON object) on stdout."""
    from gfp.io import atomic_write_bytes

    result = run_bench(quick)
    if out is not None:
        atomic_write_bytes(out, (json.dumps(result, indent=1, default=str) + "\n").encode())
    if as_json:
        print(json.dumps(result, default=str))
    else:
        print(format_report(result))
    return result
