"""The device check's Python steps (benchmarks/device/run.sh calls each under its own timeout).

    check.py info   --out F            the machine, the JAX devices, versions
    check.py speed  --out F [--toy]    updates/s (GFP 1 seed and N vmapped seeds, pixel GFP), the
                                       FLOP rate against the chip's, a profiler summary
    check.py plan   --speed F --seconds S --agents N [--toy]
                                       steps of the learning slice that fit S seconds
    check.py collect --work DIR --out DIR
                                       every step's results -> device_check.json, device_check.md

Sizes are the paper's (4x512 networks, batch 256, M = 10 flow steps: GFP.md, Appendix C) unless
--toy, which runs the same code at toy sizes on the CPU (`run.sh --dry-run`).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import glob
import gzip
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

PAPER = dict(hidden=(512, 512, 512, 512), batch=256, flow_steps=10, seeds=8, k=200, reps=3,
             pixel_encoder="impala_small", pixel_hidden=(512, 512, 512, 512), pixel_batch=256,
             pixel_frames=20_000, pixel_k=20, matmul=8192)  # fmt: skip
TOY = dict(hidden=(32, 32), batch=32, flow_steps=2, seeds=2, k=10, reps=2,
           pixel_encoder="impala_cpu", pixel_hidden=(16, 16), pixel_batch=8,
           pixel_frames=600, pixel_k=2, matmul=256)  # fmt: skip


def _write(path: str | Path, obj: Any) -> None:
    Path(path).write_text(json.dumps(obj, indent=1, default=str) + "\n")


def info() -> dict[str, Any]:
    """The machine, the accelerator JAX sees and the versions the figures depend on."""
    import jax

    from gfp.bench.suite import machine, versions

    dev = jax.devices()[0]
    try:
        mem = dev.memory_stats() or {}
    except Exception:  # noqa: BLE001 - backends without memory statistics
        mem = {}
    return {
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_kind": dev.device_kind,
        "device_memory_gib": round(mem.get("bytes_limit", 0) / 2**30, 1) or None,
        "machine": machine(),
        "versions": versions(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _bench_cfg(size: dict[str, Any]):
    from gfp.bench.config import BenchConfig

    return BenchConfig(batch_size=size["batch"], flow_steps=size["flow_steps"],
                       paper_hidden=tuple(size["hidden"]))  # fmt: skip


def _interleaved_rate(cases: dict[str, Any], k: int, reps: int, seeds: dict[str, int]) -> dict:
    """Updates per second per seed of each case (median of interleaved timed calls)."""
    from gfp.bench.timing import interleave, summary

    windows = interleave(cases, reps)
    out = {}
    for name, ws in windows.items():
        s = summary(ws, k)
        out[name] = {"seeds": seeds[name], "updates_per_s_per_seed": 1.0 / s["wall_s"],
                     "updates_per_s_all_seeds": seeds[name] / s["wall_s"], "ms_per_update":
                     s["wall_s"] * 1e3, "walls_s": s["walls_s"]}  # fmt: skip
    return out


def chip_matmul_rate(n: int, reps: int = 10) -> dict[str, Any]:
    """FLOP/s of an n x n x n float32 matrix product at JAX's default precision (TF32 on a
    Hopper GPU) and at 'highest' (true float32): the chip's ceilings for the update's matmuls."""
    import jax
    import jax.numpy as jnp

    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(key_a, (n, n), jnp.float32)  # random data, never zeros (METHOD.md)
    b = jax.random.normal(key_b, (n, n), jnp.float32)
    out = {"n": n}
    for name, precision in (("default", None), ("highest", jax.lax.Precision.HIGHEST)):
        f = jax.jit(lambda x, y, p=precision: jnp.dot(x, y, precision=p))
        f(a, b).block_until_ready()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            f(a, b).block_until_ready()
            times.append(time.perf_counter() - t0)
        out[f"{name}_tflops"] = 2 * n**3 / statistics.median(times) / 1e12
    return out


def profile_summary(fn: Any, top: int = 12) -> dict[str, Any]:
    """One call of `fn` under jax.profiler: the events of its perfetto trace summed by name
    (on a GPU the kernels, on the CPU XLA's thunks), the `top` costliest with their share."""
    import jax

    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        with jax.profiler.trace(d, create_perfetto_trace=True):
            fn()
        wall = time.perf_counter() - t0
        paths = sorted(glob.glob(f"{d}/**/perfetto_trace.json.gz", recursive=True))
        if not paths:
            return {"error": "the profiler wrote no perfetto trace"}
        with gzip.open(paths[-1]) as f:
            events = json.load(f)["traceEvents"]
    names = {(e.get("pid"), e.get("tid")): e["args"]["name"] for e in events
             if e.get("ph") == "M" and e.get("name") == "thread_name" and "args" in e}  # fmt: skip
    procs = {e.get("pid"): e["args"]["name"] for e in events
             if e.get("ph") == "M" and e.get("name") == "process_name" and "args" in e}  # fmt: skip
    by_name: dict[str, list[float]] = {}
    for e in events:
        if e.get("ph") != "X" or "dur" not in e:
            continue
        where = f"{procs.get(e.get('pid'), '')} {names.get((e.get('pid'), e.get('tid')), '')}"
        # device work only where the trace has device rows (GPU streams); else XLA's threads
        if any(w in where for w in ("/device:GPU", "Stream", "stream")) or "GPU" not in str(procs):
            by_name.setdefault(e["name"], []).append(e["dur"] / 1e6)
    total = sum(sum(v) for v in by_name.values()) or float("nan")
    rows = sorted(by_name.items(), key=lambda kv: -sum(kv[1]))[:top]
    return {
        "traced_wall_s": wall,
        "event_seconds_total": total,
        "top": [
            {"name": n[:120], "count": len(v), "seconds": sum(v), "share": sum(v) / total}
            for n, v in rows
        ],  # fmt: skip
    }


def pixel_rate(size: dict[str, Any]) -> dict[str, Any]:
    """GFP on 64x64x3 frames (stack 3, random shifts: the paper's visual settings) with the
    frames on the device: updates/s of one seed, timed on a second chunk after the compile."""
    import jax

    from gfp.agents import make_agent
    from gfp.agents.base import ObsSpec
    from gfp.agents.configs import GFPConfig
    from gfp.engine.chunk import init_states
    from gfp.engine.driver import train
    from gfp.engine.placement import make_sampler

    n, length = size["pixel_frames"], 200
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (n + 1, 64, 64, 3), dtype=np.uint8)
    terminals = np.zeros(n, np.float32)
    terminals[length - 1 :: length] = 1.0
    data = {
        "observations": obs[:-1], "next_observations": obs[1:], "terminals": terminals,
        "actions": rng.uniform(-1, 1, (n, 5)).astype(np.float32),
        "rewards": -rng.integers(0, 2, n).astype(np.float32), "masks": np.ones(n, np.float32),
    }  # fmt: skip
    hidden = tuple(size["pixel_hidden"])
    cfg = GFPConfig(encoder=size["pixel_encoder"], frame_stack=3, p_aug=0.5,
                    actor_hidden_dims=hidden, value_hidden_dims=hidden,
                    batch_size=size["pixel_batch"], flow_steps=size["flow_steps"])  # fmt: skip
    agent = make_agent("gfp", cfg, obs_spec=ObsSpec.of(data["observations"]), action_dim=5)
    sampler = make_sampler(data, agent.batch_keys)
    states = init_states(agent, [0])
    k = size["pixel_k"]
    t0 = time.perf_counter()
    states = train(agent, sampler, states, steps=k, log_every=k, progress=False)
    jax.block_until_ready(states)
    first = time.perf_counter() - t0
    walls = []
    for i in range(size["reps"]):
        t0 = time.perf_counter()
        states = train(agent, sampler, states, steps=(i + 2) * k, log_every=k, progress=False)
        jax.block_until_ready(states)
        walls.append(time.perf_counter() - t0)
    return {
        "encoder": size["pixel_encoder"], "hidden": list(hidden), "batch": size["pixel_batch"],
        "frames": n, "placement": type(sampler).__name__, "compile_and_first_chunk_s": first,
        "updates_per_s": k / statistics.median(walls),
    }  # fmt: skip


def speed(toy: bool) -> dict[str, Any]:
    """The training speed figures at the paper's size (or toy sizes)."""
    import jax

    from gfp.bench.flops import MatmulRate, flop_check
    from gfp.bench.paths import Fused, make_bench_agent, synthetic_transitions, to_device

    size = TOY if toy else PAPER
    cfg = _bench_cfg(size)
    out: dict[str, Any] = {"sizes": size, "backend": jax.default_backend()}
    dev = to_device(synthetic_transitions(100_000 if toy else 1_000_000, 28, 5))
    agent = make_bench_agent("gfp", size["hidden"], cfg)
    k, n = size["k"], size["seeds"]
    t0 = time.perf_counter()
    cases = {"gfp_1_seed": Fused(agent, dev, 1, k), f"gfp_{n}_seeds": Fused(agent, dev, n, k)}
    out["compile_s"] = time.perf_counter() - t0
    out["training"] = _interleaved_rate(cases, k, size["reps"], {c: f.seeds for c, f in
                                                                 cases.items()})  # fmt: skip
    one, many = out["training"]["gfp_1_seed"], out["training"][f"gfp_{n}_seeds"]
    out[f"vmap{n}_over_1_time"] = many["ms_per_update"] / one["ms_per_update"]
    out["minutes_per_million_updates_1_seed"] = one["ms_per_update"] * 1e6 / 1e3 / 60

    flops = flop_check(agent)
    matmul = MatmulRate(flops.pop("ops"), 0.02 if toy else 0.05, 40e9 if toy else 2e13)
    for _ in range(size["reps"]):
        matmul()
    achieved = flops["analytic"] / (one["ms_per_update"] / 1e3)
    chip = chip_matmul_rate(size["matmul"])
    out["flops"] = {
        "gfp_update_gflop": flops["analytic"] / 1e9,
        "achieved_tflops_1_seed": achieved / 1e12,
        "achieved_tflops_vmapped": achieved
        * n
        / (many["ms_per_update"] / one["ms_per_update"])
        / 1e12,
        "same_matmuls_alone_tflops": flops["jaxpr_dots"] / matmul.ideal_seconds() / 1e12,
        "chip_matmul": chip,
    }
    f = out["flops"]
    f["fraction_of_same_matmuls"] = f["achieved_tflops_1_seed"] / f["same_matmuls_alone_tflops"]
    f["fraction_of_chip_default"] = f["achieved_tflops_1_seed"] / chip["default_tflops"]
    f["fraction_of_chip_default_vmapped"] = f["achieved_tflops_vmapped"] / chip["default_tflops"]
    out["profile"] = profile_summary(cases["gfp_1_seed"])
    out["pixels"] = pixel_rate(size)
    return out


def plan(speed_json: Path, seconds: float, agents: int, toy: bool) -> dict[str, int]:
    """Steps, log and evaluation intervals of the learning slice: what `agents` runs of the
    vmapped seeds fit in `seconds`, after a fixed allowance for compiling and two evaluations."""
    if toy:
        return {"steps": 20, "log_every": 10, "eval_every": 10}
    rate = None
    if speed_json.exists():
        s = json.loads(speed_json.read_text())
        rate = next((v["updates_per_s_per_seed"] for n, v in s.get("training", {}).items()
                     if n != "gfp_1_seed"), None)  # fmt: skip
    rate = rate or 100.0
    per_agent = seconds / agents - 90.0  # start-up, compile and two evaluations
    # FQL's update costs about 0.9 of GFP's (BENCHMARKS.md): GFP's rate bounds both
    steps = int(max(per_agent, 10.0) * rate * 0.9)
    log_every = max(10, steps // 10 // 10 * 10)
    steps = max(2 * log_every, steps // (2 * log_every) * 2 * log_every)
    return {"steps": steps, "log_every": log_every, "eval_every": steps // 2}


def _eval_rows(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "eval.csv"
    if not path.exists():
        return []
    with path.open() as f:
        rows = list(csv.DictReader(f))
    keep = []
    for r in rows:
        row: dict[str, Any] = {"step": int(float(r["step"]))}
        for key, v in r.items():
            if "success" in key and v not in ("", None):
                row[key] = float(v)
        keep.append(row)
    return keep


def learning(work: Path) -> dict[str, Any]:
    """Per agent: each seed's evaluations (eval.csv), and the mean over seeds at each step."""
    out: dict[str, Any] = {}
    for agent_dir in sorted((work / "runs").glob("*")):
        seeds = {p.name: _eval_rows(p) for p in sorted(agent_dir.glob("seed*"))}
        steps = sorted({r["step"] for rows in seeds.values() for r in rows})
        means = []
        for step in steps:
            at = [r for rows in seeds.values() for r in rows if r["step"] == step]
            keys = sorted({k for r in at for k in r if k != "step"})
            mean = {k: statistics.mean(r[k] for r in at if k in r) for k in keys}
            means.append({"step": step, "seeds": len(at)} | mean)
        out[agent_dir.name] = {"seeds": len(seeds), "mean_over_seeds": means, "per_seed": seeds}
    return out


def _junit(path: Path) -> dict[str, Any]:
    import xml.etree.ElementTree as ET

    if not path.exists():
        return {"ran": False}
    suite = ET.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    cases = []
    for c in suite.iter("testcase"):
        status = next((t.tag for t in c if t.tag in ("failure", "error", "skipped")), "passed")
        cases.append({"name": c.get("name"), "status": status, "seconds": float(c.get("time", 0))})
    return {"ran": True, "cases": cases,
            "passed": sum(c["status"] == "passed" for c in cases), "total": len(cases)}  # fmt: skip


def collect(work: Path, out_dir: Path, dry_run: bool) -> dict[str, Any]:
    """Every step's status and results in one JSON object, and its Markdown summary."""
    steps = [json.loads(x) for x in (work / "steps.jsonl").read_text().splitlines() if x.strip()]
    res: dict[str, Any] = {"dry_run": dry_run, "steps": steps}
    for name in ("info", "speed"):
        p = work / f"{name}.json"
        res[name] = json.loads(p.read_text()) if p.exists() else None
    res["tests"] = _junit(work / "tests.xml")
    res["learning"] = learning(work)
    res["slice_plan"] = json.loads((work / "plan.json").read_text()) if (
        work / "plan.json").exists() else None  # fmt: skip
    data = work / "data"
    res["dataset"] = {p.name: p.stat().st_size for p in sorted(data.glob("*.npz"))} if \
        data.exists() else {}  # fmt: skip
    _write(out_dir / "device_check.json", res)
    (out_dir / "device_check.md").write_text(markdown(res))
    return res


def _f(x: Any, fmt: str = ".3g") -> str:
    return "—" if x is None else format(x, fmt)


def markdown(res: dict[str, Any]) -> str:
    """The summary a reader checks first: steps, tests, speed, learning."""
    lines = [f"# gfp device check{' (dry run, CPU, toy sizes)' if res['dry_run'] else ''}", ""]
    i = res.get("info") or {}
    lines += [f"Device: {i.get('device_kind', '?')} ({i.get('backend', '?')}); date "
              f"{i.get('date', '?')}; jax {i.get('versions', {}).get('jax', '?')}.", "",
              "| step | status | seconds | limit s |", "|---|---|---|---|"]  # fmt: skip
    for s in res["steps"]:
        status = {0: "ok", 124: "timed out", 137: "killed (time)"}.get(s["rc"], f"exit {s['rc']}")
        lines.append(f"| {s['name']} | {status} | {s['seconds']} | {s['limit']} |")
    t = res["tests"]
    lines += ["", "## Tests marked gpu", ""]
    if t.get("ran"):
        lines.append(f"{t['passed']} / {t['total']} passed.")
        lines += [f"- {c['name']}: {c['status']} ({c['seconds']:.1f} s)" for c in t["cases"]]
    else:
        lines.append("Not run.")
    sp = res.get("speed")
    lines += ["", "## Speed", ""]
    if sp:
        lines += ["| case | seeds | updates/s per seed | ms / update |", "|---|---|---|---|"]
        for name, v in sp["training"].items():
            lines.append(f"| {name} | {v['seeds']} | {_f(v['updates_per_s_per_seed'], '.1f')} | "
                         f"{_f(v['ms_per_update'], '.3f')} |")  # fmt: skip
        px = sp.get("pixels", {})
        lines.append(f"| pixel GFP {px.get('encoder')} batch {px.get('batch')} | 1 | "
                     f"{_f(px.get('updates_per_s'), '.1f')} | — |")  # fmt: skip
        f = sp["flops"]
        lines += ["", f"GFP update: {_f(f['gfp_update_gflop'])} GFLOP; achieved "
                  f"{_f(f['achieved_tflops_1_seed'])} TFLOP/s (1 seed), "
                  f"{_f(f['achieved_tflops_vmapped'])} TFLOP/s (vmapped); the same matmuls alone "
                  f"{_f(f['same_matmuls_alone_tflops'])} TFLOP/s "
                  f"({_f(f['fraction_of_same_matmuls'], '.1%')}); chip "
                  f"{_f(f['chip_matmul']['default_tflops'])} TFLOP/s at default precision "
                  f"({_f(f['fraction_of_chip_default'], '.1%')} 1 seed, "
                  f"{_f(f['fraction_of_chip_default_vmapped'], '.1%')} vmapped), "
                  f"{_f(f['chip_matmul']['highest_tflops'])} at 'highest'.", "",
                  "Costliest profiler events of one fused call (1 seed):", ""]  # fmt: skip
        lines += [f"- {e['share']:.1%} {e['name']} ({e['count']}x, {e['seconds'] * 1e3:.2f} ms)"
                  for e in sp["profile"].get("top", [])[:8]]  # fmt: skip
    else:
        lines.append("Not measured.")
    lines += ["", "## Learning slice (cube-double-noisy task 2)", ""]
    plan_ = res.get("slice_plan") or {}
    lines.append(f"Dataset: {res.get('dataset') or 'none'}; plan: {plan_ or 'none'}.")
    for agent, v in res["learning"].items():
        lines += ["", f"**{agent}** ({v['seeds']} seeds), mean over seeds:", ""]
        for row in v["mean_over_seeds"]:
            vals = ", ".join(f"{k} {x:.3f}" for k, x in row.items() if k not in ("step", "seeds"))
            lines.append(f"- step {row['step']} ({row['seeds']} seeds): {vals}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    p = sub.add_parser("info")
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("speed")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--toy", action="store_true")
    p = sub.add_parser("plan")
    p.add_argument("--speed", type=Path, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--agents", type=int, default=2)
    p.add_argument("--toy", action="store_true")
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("collect")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--dry-run", action="store_true")
    a = ap.parse_args()
    if a.what == "info":
        _write(a.out, info())
    elif a.what == "speed":
        _write(a.out, speed(a.toy))
    elif a.what == "plan":
        steps = plan(a.speed, a.seconds, a.agents, a.toy)
        _write(a.out, steps)
        print(" ".join(str(steps[k]) for k in ("steps", "log_every", "eval_every")))
    else:
        collect(a.work, a.out, a.dry_run)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
