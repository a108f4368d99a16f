"""FQE against the truth: rank policies of finished OGBench runs by `gfp ope`'s estimate and by
their real evaluation in the environment, and measure the rank correlations (docs/results-ope.md).

The policies: every seed of each source run folder (`gfp train --seeds ...` output), at its final
parameters and at its previous checkpoint (checkpoint.prev.msgpack), each of the agent's
policies. The truth is the run's own eval.csv row at that step (`--eval-episodes` episodes in the
environment). The source runs are never modified: each policy is saved as a run directory of its
own under --work (Policy.save), where gfp ope writes its ope.json.

Resumable: a (policy directory, policy) already in the CSV is skipped; each row is appended as it
is measured. Usage:

    .venv/bin/python scripts/measure_ope.py --runs /work/qcmeas/fql-h1 /work/qcmeas/gfp-h1 \\
        --csv docs/results-ope.csv --work runs/ope-measure --steps 10000
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

CSV_KEYS = ("name", "agent", "seed", "step", "policy", "fit_on", "fqe_steps", "fqe_hidden",
            "value", "lo", "hi", "states_value", "states_lo", "states_hi", "behaviour_value",
            "true_return", "true_success", "eval_episodes", "fit_seconds")  # fmt: skip


def policy_dirs(source: Path, work: Path) -> list[tuple[Path, Path, int]]:
    """(source seed dir, policy run dir under `work`, step) for each seed's final parameters and
    previous checkpoint, the policy dirs written once."""
    from gfp.api import Policy, load_run
    from gfp.rundir import PREV_CHECKPOINT, _open_checkpoint

    out = []
    for seed_dir in sorted(source.glob("seed*")):
        final = load_run(seed_dir)
        steps = int(final.config["steps"])
        name = f"{source.name}-{seed_dir.name}"
        target = work / f"{name}-{steps}"
        if not (target / "params.msgpack").exists():
            Policy(final.agent, final.params, dict(final.config), final.summary).save(target)
        out.append((seed_dir, target, steps))
        prev = seed_dir / PREV_CHECKPOINT
        if prev.exists():
            state, meta = _open_checkpoint(prev)
            step = int(meta["step"])
            target = work / f"{name}-{step}"
            if not (target / "params.msgpack").exists():
                config = {**final.config, "steps": step}
                Policy(final.agent, state["params"], config).save(target)
            out.append((seed_dir, target, step))
    return out


def truth(seed_dir: Path, step: int, policy: str) -> tuple[float, float, int]:
    """(mean return, success rate, episodes) of `policy` at `step` in the run's eval.csv."""
    import json

    with (seed_dir / "eval.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) == step]
    if not rows:
        raise SystemExit(f"{seed_dir}/eval.csv has no row for step {step}")
    episodes = int(json.loads((seed_dir / "config.json").read_text())["eval_episodes"])
    return float(rows[-1][f"{policy}/return"]), float(rows[-1][f"{policy}/success"]), episodes


def correlations(
    rows: list[dict[str, str]],
) -> list[tuple[str, str, int, float, float, float, float]]:
    """(estimate, truth, n, Spearman rho, p, Kendall tau, p) for each pairing measured."""
    from scipy.stats import kendalltau, spearmanr

    out = []
    for est in ("value", "states_value"):  # behaviour_value: the data's, one for all policies
        for true in ("true_return", "true_success"):
            x = [float(r[est]) for r in rows]
            y = [float(r[true]) for r in rows]
            rho, p_rho = spearmanr(x, y)
            tau, p_tau = kendalltau(x, y)
            out.append((est, true, len(rows), float(rho), float(p_rho), float(tau), float(p_tau)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True)
    parser.add_argument("--csv", type=Path, default=Path("docs/results-ope.csv"))
    parser.add_argument("--work", type=Path, default=Path("runs/ope-measure"))
    parser.add_argument("--steps", type=int, default=10_000, help="FQE steps per policy")
    parser.add_argument("--hidden-dims", type=int, nargs="+", default=[128, 128])
    parser.add_argument("--fit-on", default="val")
    parser.add_argument("--summary", action="store_true", help="only print the tables")
    args = parser.parse_args()

    from gfp.ope import Evaluation, FQEConfig, run_ope

    done: list[dict[str, str]] = []
    if args.csv.exists():
        with args.csv.open() as f:
            done = list(csv.DictReader(f))
    if not args.summary:
        hidden = " ".join(map(str, args.hidden_dims))
        seen = {(r["name"], r["policy"], r["fit_on"], r["fqe_steps"], r["fqe_hidden"])
                for r in done}  # fmt: skip
        args.work.mkdir(parents=True, exist_ok=True)
        todo = [p for source in args.runs for p in policy_dirs(source, args.work)]
        # the final parameters of every run first, then the earlier checkpoints
        todo.sort(key=lambda p: -p[2])
        for seed_dir, target, step in todo:
            from gfp.api import load_run

            agent = load_run(target).agent
            for policy in agent.policies:
                key = (target.name, policy, args.fit_on, str(args.steps), hidden)
                if key in seen:
                    continue
                started = time.time()
                ev = Evaluation(target, policy, args.fit_on)
                config = FQEConfig(steps=args.steps, hidden_dims=tuple(args.hidden_dims))
                res = run_ope(ev, config)
                ret, succ, episodes = truth(seed_dir, step, policy)
                row = {"name": target.name, "agent": agent.name, "seed": seed_dir.name,
                       "step": step, "policy": policy, "fit_on": args.fit_on,
                       "fqe_steps": args.steps, "fqe_hidden": hidden,
                       "value": f"{res['value']:.3f}",
                       "lo": f"{res['interval'][0]:.3f}", "hi": f"{res['interval'][1]:.3f}",
                       "states_value": f"{res['states_value']:.3f}",
                       "states_lo": f"{res['states_interval'][0]:.3f}",
                       "states_hi": f"{res['states_interval'][1]:.3f}",
                       "behaviour_value": f"{res['behaviour_value']:.3f}",
                       "true_return": ret, "true_success": succ, "eval_episodes": episodes,
                       "fit_seconds": res["fit_seconds"]}  # fmt: skip
                new = not args.csv.exists()
                with args.csv.open("a", newline="") as f:
                    writer = csv.DictWriter(f, CSV_KEYS)
                    if new:
                        writer.writeheader()
                    writer.writerow(row)
                done.append({k: str(v) for k, v in row.items()})
                print(f"{target.name} {policy}: FQE {res['value']:.2f} "
                      f"[{res['interval'][0]:.2f}, {res['interval'][1]:.2f}], true return "
                      f"{ret}, success {succ} ({time.time() - started:.0f} s)",
                      flush=True)  # fmt: skip

    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    for r in done:
        groups.setdefault((r["fit_on"], r["fqe_steps"], r["fqe_hidden"]), []).append(r)
    for (fit_on, steps, hidden), rows in groups.items():
        print(f"\nfit_on={fit_on}, FQE steps={steps}, hidden {hidden}: {len(rows)} policies")
        print("| policy | step | FQE V (95% CI) | mean Q all states | true return | success |")
        print("|---|---|---|---|---|---|")
        for r in sorted(rows, key=lambda r: float(r["true_return"])):
            print(f"| {r['name'].rsplit('-', 1)[0]} {r['policy']} | {r['step']} | {r['value']} "
                  f"[{r['lo']}, {r['hi']}] | {r['states_value']} | {r['true_return']} | "
                  f"{r['true_success']} |")  # fmt: skip
        if len(rows) >= 3:
            print("\n| estimate | truth | n | Spearman rho (p) | Kendall tau (p) |")
            print("|---|---|---|---|---|")
            for est, true, n, rho, p1, tau, p2 in correlations(rows):
                print(f"| {est} | {true} | {n} | {rho:.2f} ({p1:.3f}) | {tau:.2f} ({p2:.3f}) |")


if __name__ == "__main__":
    main()
