"""Latency of one policy call: GFP's one-step actor against its VaBC flow (M Euler steps), in JAX
(jitted, warm) and in onnxruntime (the `gfp export --format onnx` file run by gfp.deploy).

What a robot controller pays per control step: a numpy observation (and noise) in, a numpy action
out, host transfers included. Batch 1 (one robot) and 256 (many environments / a fleet), at the
paper's network size (4x512) and the cpu preset (2x128), on cube-single (obs 28, action 5). The
parameters are random: latency does not depend on their values.

Every case runs in windows of calls (about --window seconds each), interleaved across cases so a
drift of the machine's load hits all alike; a figure is the median over windows of the mean time
per call. The other processes' load (cores) is recorded beside it (gfp.bench.timing).

    .venv/bin/python benchmarks/bench_latency.py                   # ~3 minutes on 2 idle cores
    .venv/bin/python benchmarks/bench_latency.py --sizes cpu --reps 5

One core each (what a controller pinned to a core gets, and steadier on a shared machine):

    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \
        .venv/bin/python benchmarks/bench_latency.py --threads 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import numpy as np

from gfp.agents import make_agent
from gfp.bench.suite import machine, versions
from gfp.bench.timing import interleave, log, summary
from gfp.deploy import load_policy
from gfp.export import export_policy
from gfp.presets import resolve

TASK = "cube-single-noisy-singletask-task1-v0"
OBS_DIM, ACT_DIM = 28, 5
POLICIES = ("actor", "vabc")
BATCHES = (1, 256)
# onnxruntime on the same policy exported twice: with --batch dynamic (any batch) and with the
# batch fixed (--batch 1 / 256), where onnxruntime can fold the shape computations (the flow's
# time embeddings) into constants.
ORT_DYNAMIC, ORT_FIXED = "onnxruntime dynamic", "onnxruntime fixed"


def jax_call(jitted: Callable[..., Any], params: Any, obs, z, policy: str) -> np.ndarray:
    """What a controller does with gfp's own policy: numpy in, jitted call, numpy out."""
    return np.asarray(jitted(params, obs, z, policy))


def calls(fn: Callable[[], Any], n: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(n):
            fn()

    return run


def calibrate(fn: Callable[[], Any], window: float) -> int:
    """Calls per window: about `window` seconds of them (at least 3)."""
    for _ in range(3):
        fn()  # warm: compile (JAX) or first-run allocation (onnxruntime)
    t0 = time.perf_counter()
    for _ in range(5):
        fn()
    per_call = (time.perf_counter() - t0) / 5
    return max(3, int(window / per_call))


def build_cases(sizes: list[str], threads: int | None, tmp: Path) -> dict[str, dict[str, Any]]:
    """One case per (size, policy, batch, runtime): the call, and what it measures."""
    cases: dict[str, dict[str, Any]] = {}
    rng = np.random.default_rng(0)
    for size in sizes:
        config, _ = resolve("gfp", TASK, size)
        agent = make_agent("gfp", config, obs_dim=OBS_DIM, action_dim=ACT_DIM)
        params = jax.device_put(agent.init(jax.random.PRNGKey(0)).params)
        jitted = jax.jit(agent.action, static_argnums=3)
        hidden = "x".join(map(str, config.actor_hidden_dims))
        for policy in POLICIES:
            log(f"exporting the {size} ({hidden}) {policy} to ONNX")
            exported = {}
            for batch in ("dynamic", *BATCHES):
                out = tmp / f"{size}-{policy}-{batch}.onnx"
                export_policy(agent, params, policy, "onnx", out, batch=batch)
                exported[batch] = load_policy(out, threads=threads)
            for batch in BATCHES:
                obs = rng.standard_normal((batch, OBS_DIM)).astype(np.float32)
                z = rng.standard_normal((batch, ACT_DIM)).astype(np.float32)
                fns = {
                    "jax": functools.partial(jax_call, jitted, params, obs, z, policy),
                    ORT_DYNAMIC: functools.partial(exported["dynamic"], obs, z),
                    ORT_FIXED: functools.partial(exported[batch], obs, z),
                }
                want = fns["jax"]()
                for runtime, fn in fns.items():
                    assert np.max(np.abs(fn() - want)) < 1e-5, (size, policy, batch, runtime)
                    key = f"{size}/{policy}/b{batch}/{runtime}"
                    cases[key] = {
                        "size": size,
                        "hidden": hidden,
                        "flow_steps": config.flow_steps,
                        "policy": policy,
                        "batch": batch,
                        "runtime": runtime,
                        "fn": fn,
                    }
    return cases


def measure(cases: dict[str, dict[str, Any]], reps: int, window: float) -> dict[str, Any]:
    per = {k: calibrate(c["fn"], window) for k, c in cases.items()}
    log(f"timing {len(cases)} cases, {reps} interleaved windows of ~{window}s each")
    windows = interleave({k: calls(c["fn"], per[k]) for k, c in cases.items()}, reps)
    out = {}
    for k, c in cases.items():
        s = summary(windows[k], per=per[k])
        out[k] = {key: v for key, v in c.items() if key != "fn"} | {
            "median_us": round(s["wall_s"] * 1e6, 1),
            # The fastest window: on a shared machine, the closest to an idle one's figure.
            "best_us": round(min(s["walls_s"]) * 1e6, 1),
            "calls_per_window": per[k],
            "windows_us": [round(w * 1e6, 1) for w in s["walls_s"]],
            "foreign_cores": s["foreign_cores"],
            "loadavg1": s["loadavg1"],
        }
    return out


def speedups(results: dict[str, Any]) -> dict[str, float]:
    """The one-step actor's speed-up over the VaBC flow, per (size, batch, runtime)."""
    out = {}
    for k, r in results.items():
        if r["policy"] == "actor":
            flow = results[k.replace("/actor/", "/vabc/")]
            out[k.replace("/actor", "")] = round(flow["median_us"] / r["median_us"], 2)
    return out


def table(results: dict[str, Any], stat: str = "median_us") -> str:
    """Markdown: one row per (size, batch, runtime), microseconds per call of each policy and
    their ratio (`stat`: median_us or best_us)."""
    rows = [
        "| network | batch | runtime | one-step actor | VaBC flow | VaBC / actor |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for k, r in results.items():
        if r["policy"] != "actor":
            continue
        actor, flow = r[stat], results[k.replace("/actor/", "/vabc/")][stat]
        rows.append(
            f"| {r['size']} {r['hidden']} | {r['batch']} | {r['runtime']} | {actor:.0f} µs "
            f"| {flow:.0f} µs | {flow / actor:.1f}x |"
        )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="paper,cpu", help="presets: paper (4x512), cpu (2x128)")
    ap.add_argument("--reps", type=int, default=15, help="interleaved windows per case")
    ap.add_argument("--window", type=float, default=0.2, help="seconds of calls per window")
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    ap.add_argument("--out", type=Path, default=None, help="JSON file (default: results/...)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cases = build_cases(args.sizes.split(","), args.threads, Path(tmp))
        results = measure(cases, args.reps, args.window)
    record = {
        "benchmark": "policy latency (gfp export)",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions()
        | {p: metadata.version(p) for p in ("onnxruntime", "jax2onnx", "onnx")},
        "settings": {
            "task": TASK,
            "obs_dim": OBS_DIM,
            "action_dim": ACT_DIM,
            "reps": args.reps,
            "window_s": args.window,
            "onnxruntime_threads": args.threads or "default (one per core)",
            "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
            "statistic": "median over windows of the mean wall time per call; numpy in, numpy out",
        },
        "results": results,
        "vabc_over_actor": speedups(results),
        "median_foreign_cores": round(
            statistics.median(r["foreign_cores"] for r in results.values()), 2
        ),
    }
    out = args.out or Path(__file__).parent / "results" / f"latency-{dt.date.today()}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print("Median over windows:\n" + table(results))
    print("\nFastest window:\n" + table(results, "best_us"))
    print(f"\nother load (median): {record['median_foreign_cores']} cores; written {out}")


if __name__ == "__main__":
    main()
