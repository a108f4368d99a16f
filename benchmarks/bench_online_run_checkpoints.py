"""Seconds and bytes of every checkpoint of a real online run (`gfp train --online-steps M`).

Runs `gfp train` in a subprocess whose `RunDir.save_checkpoint` is timed: each call's wall time,
the bytes it wrote (the checkpoint file plus the replay files it created) and the online rows held
then, one JSON line per checkpoint. Run it once with this checkout and once with the code before
the replay segments (a `git worktree` of af1fe51^ passed as --code), on the same dataset:

    .venv/bin/python benchmarks/bench_online_run_checkpoints.py --dataset-dir DATA \\
        --online-steps 100000 --every 10000 --out /tmp/ckpt-after
    .venv/bin/python benchmarks/bench_online_run_checkpoints.py --dataset-dir DATA \\
        --online-steps 100000 --every 10000 --out /tmp/ckpt-before --code /tmp/before-segments

Small networks (16x16, batch 16, 2 flow steps) keep the updates cheap: what is measured is the
checkpoint, whose replay part does not depend on the networks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

TASK = "cube-single-noisy-singletask-task1-v0"
SMALL = ["--actor-hidden-dims", "16", "16", "--value-hidden-dims", "16", "16",
         "--batch-size", "16", "--flow-steps", "2"]  # fmt: skip

# Imported by the child before gfp's CLI: wraps RunDir.save_checkpoint with a timer.
DRIVER = """
import json, os, time
from pathlib import Path
import gfp.rundir as rundir

LOG = {log!r}
_save = rundir.RunDir.save_checkpoint

def _files(root):
    return {{p: p.stat().st_size for p in Path(root).rglob("*") if p.is_file()}}

def timed(self, state, meta, *rest):
    before = _files(self.path)
    t = time.perf_counter()
    _save(self, state, meta, *rest)
    seconds = time.perf_counter() - t
    after = _files(self.path)
    new = [p for p in after if p not in before or after[p] != before.get(p)]
    # What the call wrote: the new checkpoint and replay files (checkpoint.prev is the previous
    # checkpoint renamed, not written again).
    written = sum(after[p] for p in new
                  if (p.name.startswith("checkpoint") and ".prev" not in p.name)
                  or "replay" in str(p))
    online = meta.get("online", {{}})
    with open(LOG, "a") as f:
        f.write(json.dumps({{"step": meta.get("step"), "seconds": seconds, "bytes": written,
                            "online_rows": online.get("added")}}) + "\\n")

rundir.RunDir.save_checkpoint = timed
import sys
from gfp.cli import main
main(sys.argv[1:])
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset-dir", required=True)
    p.add_argument("--online-steps", type=int, default=100_000)
    p.add_argument("--every", type=int, default=10_000)
    p.add_argument("--out", required=True, help="run directory (its checkpoints.jsonl: figures)")
    p.add_argument("--code", default=None, help="a gfp checkout to measure (default: this one)")
    a = p.parse_args()
    out = Path(a.out).resolve()
    log = out.parent / f"{out.name}.checkpoints.jsonl"
    log.unlink(missing_ok=True)
    env = dict(os.environ)
    if a.code:
        env["PYTHONPATH"] = os.pathsep.join([a.code, env.get("PYTHONPATH", "")])
    data = str(Path(a.dataset_dir).resolve())
    args = ["train", "--task", TASK, "--dataset-dir", data, *SMALL, "--steps", "10",
            "--online-steps", str(a.online_steps), "--checkpoint-every", str(a.every),
            "--log-every", str(a.every), "--eval-every", "0", "--eval-episodes", "1",
            "--out", str(out)]  # fmt: skip
    code = DRIVER.format(log=str(log))
    # `python -c` puts the working directory first on the import path: run it from the code
    # measured, so that a checkout's gfp is the one imported.
    cwd = a.code or Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=cwd, check=True)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    print("| step | online rows | seconds | MB written |")
    print("|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['step']} | {r['online_rows']} | {r['seconds']:.3f} | {r['bytes'] / 1e6:.2f} |")


if __name__ == "__main__":
    main()
