"""How much OGBench's success timing changes a success rate: the same policy (a finished gfp run's
final parameters) evaluated with 'post' (OGBench < 1.2: success and termination decided after the
action, the paper's numbers) and 'pre' (OGBench 1.2's default: before it), on the same episode
seeds. Usage: python benchmarks/success_timing.py RUN_DIR [--episodes N]"""

from __future__ import annotations

import argparse
import json

from gfp.run import evaluate_policies, load_run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    agent, params, cfg = load_run(args.run_dir)
    out = {"run_dir": args.run_dir, "task": cfg["task"], "episodes": args.episodes}
    for timing in ("post", "pre"):
        row = evaluate_policies(
            agent,
            params,
            cfg["dataset"]["env_name"],
            episodes=args.episodes,
            seed=args.seed,
            success_timing=timing,
        )
        out[timing] = {k: v for k, v in row.items() if k.endswith(("success", "length"))}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
