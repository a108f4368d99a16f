"""gfp sweep against the same runs as sequential `gfp train` commands (issue 11, item 6).

Runs N short cpu-preset GFP runs (by default 4 alpha values x 2 seeds = 8 runs) on one task three
ways, each in fresh processes as a user would start them, and reports the wall times:

* sequential: one `gfp train` command per run (per seed), one after the other;
* sweep: one `gfp sweep` command (local Ray started by the command; one Ray task per alpha with
  its seeds vmapped, --cpus-per-run 1, CPUs pinned);
* sweep, unpinned (--no-pin-cpus), to see whether keeping each run to its own CPU matters;
plus the cost of starting Ray alone (import, ray.init, one no-op task, shutdown).

    .venv/bin/python benchmarks/bench_sweep.py                      # text
    .venv/bin/python benchmarks/bench_sweep.py --json out.json      # also one JSON object

Every command uses a fresh output folder and no persistent XLA compilation cache, so all three
compile what they run. The dataset is the cached 100-episode cube-single-noisy dataset
(~/.cache/gfp/data, generated on first use like the default job).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GFP = [sys.executable, "-m", "gfp.cli"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # every variant compiles what it runs
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _timed(cmd: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    with log.open("a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=_env(), cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}; see {log}")
    return wall


_RAY_START = """
import time, ray
t0 = time.perf_counter()
ray.init(num_cpus={n}, include_dashboard=False, log_to_driver=False)
t1 = time.perf_counter()
ray.get(ray.remote(lambda: 0).remote())
t2 = time.perf_counter()
ray.shutdown()
print(t1 - t0, t2 - t1, time.perf_counter() - t2)
"""


def ray_start(cpus: int) -> dict[str, float]:
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _RAY_START.format(n=cpus)],
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
    ).stdout.split()
    init, task, down = map(float, out[-3:])
    return {
        "process_s": time.perf_counter() - t0,
        "init_s": init,
        "first_task_s": task,
        "shutdown_s": down,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="cube-single-noisy-singletask-task1-v0")
    p.add_argument("--dataset-dir", default=str(Path.home() / ".cache" / "gfp" / "data"))
    p.add_argument("--alphas", default="3,1,0.3,0.1")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--skip", default="", help="comma list of variants to skip")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()

    from gfp.run import ensure_default_dataset

    ensure_default_dataset(args.task, Path(args.dataset_dir))
    alphas, seeds = args.alphas.split(","), args.seeds.split(",")
    common = ["--preset", "cpu", "--steps", str(args.steps), "--eval-every", "0",
              "--eval-episodes", str(args.eval_episodes),
              "--dataset-dir", args.dataset_dir]  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    log = work / "commands.log"
    skip = set(filter(None, args.skip.split(",")))
    result: dict = {
        "runs": len(alphas) * len(seeds),
        "alphas": alphas,
        "seeds": seeds,
        "steps": args.steps,
        "eval_episodes": args.eval_episodes,
        "task": args.task,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_before": os.getloadavg(),
    }
    print(f"{result['runs']} runs ({len(alphas)} alphas x {len(seeds)} seeds), {args.steps} steps; "
          f"logs in {log}", flush=True)  # fmt: skip
    result["ray_start"] = ray_start(os.cpu_count() or 1)
    print(f"ray start alone: {result['ray_start']}", flush=True)
    if "sequential" not in skip:
        t = 0.0
        for a in alphas:
            for s in seeds:
                out = work / "seq" / f"a{a}" / f"seed{s}"
                t += _timed([*GFP, "train", "--task", args.task, "--alpha", a, "--seed", s,
                             *common, "--out", str(out)], log)  # fmt: skip
        result["sequential_s"] = t
        print(f"sequential gfp train: {t:.1f} s", flush=True)
    sweep = [*GFP, "sweep", "--tasks", args.task, "--agents", "gfp", "--seeds", args.seeds,
             "--grid", f"alpha={args.alphas}", *common, "--cpus-per-run", "1"]  # fmt: skip
    for name, extra in (("sweep", []), ("sweep_unpinned", ["--no-pin-cpus"])):
        if name in skip:
            continue
        result[f"{name}_s"] = _timed([*sweep, *extra, "--out", str(work / name)], log)
        print(f"{name}: {result[f'{name}_s']:.1f} s", flush=True)
    if "sequential_s" in result and "sweep_s" in result:
        result["ratio_sweep_over_sequential"] = result["sweep_s"] / result["sequential_s"]
    result["load_after"] = os.getloadavg()
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    for name in ("seq", "sweep", "sweep_unpinned"):  # the runs; the command log stays
        shutil.rmtree(work / name, ignore_errors=True)


if __name__ == "__main__":
    main()
