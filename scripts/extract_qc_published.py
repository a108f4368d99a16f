"""Extract Q-chunking's released OGBench plot data into gfp/published/qc_results.csv.

QC (Li, Zhou, Levine, "Reinforcement Learning with Action Chunking", NeurIPS 2025, arXiv
2507.07969) releases its learning curves as pickles in its repository (ColinQiyangLi/qc,
plot_data/): dictionaries keyed by (task or domain, method) whose entries hold `steps` (millions
of training steps), `means` (the success rate, 0..1) and `ci_lows` / `ci_highs` (95% bootstrap
interval, 5000 samples), every 100K steps: 21 points from 0 to 2M (1M offline steps, then 1M
online steps), 11 points from 1M to 2M for the online-only methods (RLPD, RLPD-AC, SUPE-GT).

This script keeps two points of every curve, the end of each phase:
  * `offline`: step 1M, the end of the offline training (absent for the online-only methods,
    whose step-1M point is the start of their online training, before any update);
  * `online`: step 2M, after the 1M online steps.
Values are written x 100 (success in percent, the scale of gfp report), rounded to 4 decimals.

Usage (the pickles are read from git, never written to disk; only numpy arrays are unpickled):

    python scripts/extract_qc_published.py QC_GIT_DIR [--commit 48283b4f66...] [--out CSV]

QC_GIT_DIR is a clone (or bare mirror) of ColinQiyangLi/qc; a folder holding the three pickles
(plot_data/) is accepted too.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import io
import pickle
import subprocess
from pathlib import Path

import numpy as np

REPOSITORY = "ColinQiyangLi/qc"
COMMIT = "48283b4f662bd1c127ec9fa80647b49759f10653"  # "add tabs in citation", the newest
FILES = {"task": "plot_data/ogbench-individual.pkl", "domain": "plot_data/ogbench-agg.pkl"}
OUT = Path(__file__).resolve().parents[1] / "gfp" / "published" / "qc_results.csv"
COLUMNS = ("kind", "key", "method", "phase", "step", "mean", "ci_low", "ci_high", "source", "note")
PHASE_STEP = {
    "offline": 1.0,
    "online": 2.0,
}  # millions of steps (QC Fig. 1: 1M offline + 1M online)
ONLINE_ONLY = ("RLPD", "RLPD-AC", "QC-RLPD", "SUPE-GT")  # plot_data/README.md
# QC's OGBench domains (its Sec. 5 and README): the domain key of the plot data -> gfp's env key.
DOMAINS = {
    "scene": "scene-play",
    "puzzle-3x3": "puzzle-3x3-play",
    "cube-double": "cube-double-play",
    "cube-triple": "cube-triple-play",
    "cube-quadruple": "cube-quadruple-play",
}
DOMAIN_NOTE = {
    "scene-play": "QC ran it with sparse rewards (--sparse=True, README)",
    "puzzle-3x3-play": "QC ran it with sparse rewards (--sparse=True, README)",
    "cube-quadruple-play": "QC trained on the 100M-transition dataset (README)",
}
# The only globals the plot data needs: numpy arrays. Anything else is refused.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if name == "_reconstruct":  # numpy 1 pickles name numpy.core, numpy 2 numpy._core
            return importlib.import_module(module.replace("numpy.core", "numpy._core"))._reconstruct
        return getattr(np, name)


def read_bytes(source: Path, commit: str, path: str) -> bytes:
    """The file at `path`: from a folder holding it, else from the git repository at `commit`."""
    for candidate in (source / path, source / Path(path).name):
        if candidate.is_file():
            return candidate.read_bytes()
    return subprocess.run(
        ["git", "-C", str(source), "show", f"{commit}:{path}"], check=True, capture_output=True
    ).stdout


def load(data: bytes) -> dict:
    return _ArraysOnly(io.BytesIO(data)).load()


def task_key(name: str) -> str:
    """'cube-double-play-task1' -> gfp's 'cube-double-play-singletask-task1-v0'."""
    env, _, task = name.rpartition("-")
    return f"{env}-singletask-{task}-v0"


def _pct(x: float) -> str:
    return repr(round(float(x) * 100, 4))


def rows(kind: str, curves: dict, source: str, commit: str) -> list[dict[str, str]]:
    out = []
    for (name, method), curve in curves.items():
        if kind == "task":
            key = task_key(name)
            env = key.split("-singletask-")[0]
        elif name == "all":
            key, env = "average-qc", ""
        else:
            key = env = DOMAINS[name]
        steps = np.asarray(curve["steps"], dtype=float)
        for phase, at in PHASE_STEP.items():
            if phase == "offline" and (method in ONLINE_ONLY or steps[0] >= at):
                continue  # an online-only method: no offline phase
            (idx,) = np.flatnonzero(np.isclose(steps, at))
            notes = [DOMAIN_NOTE.get(env, "")]
            if name == "all":
                notes.append("QC's aggregate over its 5 OGBench domains (25 tasks)")
            elif kind == "domain":
                notes.append("QC's aggregate over the domain's 5 tasks")
            if method in ONLINE_ONLY:
                notes.append("online-only method (no offline phase)")
            out.append(
                {
                    "kind": "average" if name == "all" else kind,
                    "key": key,
                    "method": method,
                    "phase": phase,
                    "step": str(int(round(at * 1e6))),
                    "mean": _pct(curve["means"][idx]),
                    "ci_low": _pct(curve["ci_lows"][idx]),
                    "ci_high": _pct(curve["ci_highs"][idx]),
                    "source": f"{REPOSITORY}@{commit[:7]} {source}",
                    "note": "; ".join(n for n in notes if n),
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="QC git directory, or a folder of the pickles")
    parser.add_argument("--commit", default=COMMIT)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    table = []
    for kind, path in FILES.items():
        table += rows(kind, load(read_bytes(args.source, args.commit, path)), path, args.commit)
    order = {"average": 0, "domain": 1, "task": 2}
    table.sort(key=lambda r: (order[r["kind"]], r["key"], r["method"], r["phase"] != "offline"))
    with open(args.out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)
    print(f"wrote {len(table)} rows to {args.out}")


if __name__ == "__main__":
    main()
