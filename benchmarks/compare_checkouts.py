"""`gfp bench --quick` of two checkouts, side by side: before/after a change, on one machine.

Runs the suite alternately for each checkout (A, B, A, B, ...), each in a fresh interpreter that
imports gfp from that checkout (PYTHONPATH), so machine load drifting during the comparison hits
both alike, and prints each figure's median over the rounds and the ratio B / A. The speed
figures of BENCHMARKS.md are compared this way, as ratios measured side by side.

    .venv/bin/python benchmarks/compare_checkouts.py /tmp/gfp-before . --rounds 2 --out ab.json

(make the "before" checkout with `git worktree add /tmp/gfp-before <commit>`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# The figures compared (the suite's JSON keys); higher is better for those marked "+".
FIGURES = {
    "training.update.gfp.wall_s": "-",
    "training.update.fql.wall_s": "-",
    "training.fused_over_perstep_tiny": "+",
    "training.fused_over_perstep_min": "+",
    "training.vmap4_over_1": "-",
    "minutes_per_million_updates": "-",
    "evaluation.vec_warm.steps_per_s": "+",
    "memory.peak_rss_gib": "-",
    "flop_efficiency": "+",
}


def run_suite(checkout: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout.resolve())}
    cmd = [sys.executable, "-m", "gfp.cli", "bench", "--quick", "--json", "--out", str(out)]
    subprocess.run(cmd, env=env, cwd=checkout, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def figure(result: dict, key: str) -> float | None:
    node: object = result
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, int | float) else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path, help="the first checkout (e.g. before the change)")
    p.add_argument("b", type=Path, help="the second checkout (e.g. after it)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", type=Path, help="also write every run's figures here (JSON)")
    args = p.parse_args()
    runs: dict[str, list[dict]] = {"a": [], "b": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name in ("a", "b"):
                checkout = getattr(args, name)
                print(f"round {r + 1}/{args.rounds}: {name} = {checkout}", flush=True)
                runs[name].append(run_suite(checkout, Path(tmp) / f"{name}{r}.json"))
    rows = []
    for key, better in FIGURES.items():
        a = [v for v in (figure(x, key) for x in runs["a"]) if v is not None]
        b = [v for v in (figure(x, key) for x in runs["b"]) if v is not None]
        if a and b:
            ma, mb = statistics.median(a), statistics.median(b)
            rows.append({"figure": key, "better": better, "a": ma, "b": mb, "b_over_a": mb / ma})
    print(f"{'figure':40s} {'A (median)':>12s} {'B (median)':>12s} {'B/A':>7s}")
    for row in rows:
        print(f"{row['figure']:40s} {row['a']:12.4g} {row['b']:12.4g} {row['b_over_a']:7.3f}")
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
