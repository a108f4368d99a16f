"""Profile one fused training call (K updates) with the JAX profiler and summarise where the time
goes, by kind of XLA operation: matmuls, reductions, elementwise fusions, copies, ...

    .venv/bin/python benchmarks/profile_update.py                     # GFP, 4x512, K = 4
    .venv/bin/python benchmarks/profile_update.py --agent fql --hidden 256x256 --k 50

Every XLA thunk of the traced call is a trace event on one of XLA's CPU threads; each is
classified by what its HLO computation contains (a `dot` -> matmul, a `reduce` -> reduction,
otherwise elementwise / copy / ...). The summary gives each kind's share of the busy thread time
and how busy the threads were over the call's wall time (the rest is idle or waiting).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import re
import statistics
import tempfile
import time


def classify(hlo_text: str) -> dict[str, str]:
    """Map every instruction name of the entry/while computations to a kind of work."""
    comps: dict[str, list[str]] = {}
    cur = None
    for line in hlo_text.splitlines():
        if not line.startswith(" ") and line.rstrip().endswith("{"):
            words = line.split()
            cur = (words[1] if words[0] == "ENTRY" else words[0]).lstrip("%")
            comps[cur] = []
        elif cur is not None:
            comps[cur].append(line)
    kinds: dict[str, str] = {}
    pattern = re.compile(r"%([\w.\-]+) = \S+ (\w[\w\-]*)\((.*?)calls=%([\w.\-]+)")
    for body in comps.values():
        for line in body:
            m = pattern.search(line)
            if not m:
                continue
            name, op, _, called = m.groups()
            inner = "\n".join(comps.get(called, []))
            if " dot(" in inner or " convolution(" in inner:
                kind = "matmul (dot, with its fused epilogue)"
            elif " reduce(" in inner or " reduce-window(" in inner:
                kind = "reduction (LayerNorm statistics, bias gradients, means)"
            elif " gather(" in inner:
                kind = "gather (minibatch sampling)"
            elif op == "fusion":
                kind = "elementwise fusion (GELU, LayerNorm, Adam, Polyak, losses)"
            else:
                kind = op
            kinds[name] = kind
    return kinds


def kind_of(name: str, kinds: dict[str, str]) -> str:
    if name in kinds:
        return kinds[name]
    base = re.sub(r"[.\d]+$", "", name)
    if base == "dot":
        return "matmul (dot, with its fused epilogue)"
    if base in ("copy", "copy-start", "copy-done"):
        return "copy (loop-carried buffers)"
    if "reduce" in base:
        return "reduction (LayerNorm statistics, bias gradients, means)"
    if base.endswith("fusion"):
        return "elementwise fusion (GELU, LayerNorm, Adam, Polyak, losses)"
    return "other (" + base + ")"


def summarise(trace_dir: str, kinds: dict[str, str], wall: float) -> dict:
    path = sorted(glob.glob(f"{trace_dir}/**/perfetto_trace.json.gz", recursive=True))[-1]
    with gzip.open(path) as f:
        events = json.load(f)["traceEvents"]
    threads = {
        e["tid"]: e["args"]["name"]
        for e in events
        if e.get("ph") == "M" and e.get("name") == "thread_name"
    }
    skip = (
        "ThunkExecutor",
        "SlinkyThreadPool",
        "ThreadpoolListener",
        "end: ",
        "PjitFunction",
        "Common",
    )
    by_kind: dict[str, float] = collections.defaultdict(float)
    busy: dict[str, float] = collections.defaultdict(float)
    for e in events:
        name = e.get("name", "")
        if e.get("ph") != "X" or name.startswith("$") or name.startswith(skip):
            continue
        if not threads.get(e.get("tid"), "").startswith("tf_XLA"):
            continue
        by_kind[kind_of(name, kinds)] += e["dur"] / 1e6
        busy[threads[e["tid"]]] += e["dur"] / 1e6
    total = sum(by_kind.values())
    return {
        "wall_s": wall,
        "thread_busy_s": sorted(busy.values(), reverse=True),
        "busy_fraction": total / (wall * max(1, len(busy))),
        "by_kind_s": dict(sorted(by_kind.items(), key=lambda kv: -kv[1])),
        "by_kind_share": {k: v / total for k, v in by_kind.items()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agent", default="gfp")
    p.add_argument("--hidden", default="512x512x512x512")
    p.add_argument("--k", type=int, default=4, help="updates in the traced call")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()

    import jax

    from gfp import bench

    hidden = tuple(int(x) for x in a.hidden.split("x"))
    cfg = bench.FULL
    host = bench.synthetic_transitions(100_000, cfg.obs_dim, cfg.action_dim)
    fused = bench.Fused(bench.make_bench_agent(a.agent, hidden, cfg), bench.to_device(host),
                        a.seeds, a.k)  # fmt: skip
    walls = []
    for _ in range(3):
        t0 = time.perf_counter()
        fused()
        walls.append(time.perf_counter() - t0)
    kinds = classify(fused.compiled.as_text())
    with tempfile.TemporaryDirectory(prefix="gfp-profile-") as tmp:
        with jax.profiler.trace(tmp, create_perfetto_trace=True):
            t0 = time.perf_counter()
            fused()
            wall = time.perf_counter() - t0
        out = summarise(tmp, kinds, wall)
    out |= {
        "agent": a.agent,
        "hidden": a.hidden,
        "k": a.k,
        "seeds": a.seeds,
        "untraced_wall_s": statistics.median(walls),
    }
    if a.json:
        print(json.dumps(out))
        return
    print(
        f"{a.agent} {a.hidden}, {a.k} fused updates, {a.seeds} seed(s): traced call "
        f"{wall * 1e3:.0f} ms (untraced {out['untraced_wall_s'] * 1e3:.0f} ms); XLA threads busy "
        f"{out['busy_fraction']:.0%} of the wall time"
    )
    for kind, secs in out["by_kind_s"].items():
        print(f"  {out['by_kind_share'][kind]:6.1%}  {secs * 1e3 / a.k:8.1f} ms/update  {kind}")


if __name__ == "__main__":
    main()
