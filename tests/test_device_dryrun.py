"""benchmarks/device/run.sh --dry-run: the device check's steps, here on the CPU at toy sizes,
write the JSON and Markdown summaries that the device run writes (BENCHMARKS.md, "Device
check")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_dry_run_writes_every_steps_results(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": "", "PYTHON": sys.executable}  # the Python running the tests
    proc = subprocess.run(
        [str(ROOT / "benchmarks/device/run.sh"), "--dry-run", "--out", str(out), "--budget",
         "1500"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1700,
    )  # fmt: skip
    log = (out / "device_check.log").read_text() if (out / "device_check.log").exists() else ""
    assert proc.returncode == 0, proc.stderr[-2000:] + log[-4000:]
    res = json.loads((out / "device_check.json").read_text())
    assert res["dry_run"] is True
    names = [s["name"] for s in res["steps"]]
    assert names == ["info", "data", "tests", "speed", "train-gfp", "train-fql"], names
    bad = [s for s in res["steps"] if s["rc"] != 0]
    assert not bad, f"{bad}\n{log[-4000:]}"
    assert res["info"]["backend"] == "cpu"
    assert res["tests"]["ran"] and res["tests"]["total"] >= 2
    assert res["tests"]["passed"] == res["tests"]["total"]
    speed = res["speed"]
    rates = [v["updates_per_s_per_seed"] for v in speed["training"].values()]
    assert len(rates) == 2 and all(r > 0 for r in rates)
    assert speed["pixels"]["updates_per_s"] > 0
    assert 0 < speed["flops"]["fraction_of_chip_default"] < 10
    assert speed["profile"]["top"], "no profiler events"
    assert set(res["dataset"]) == {"cube-double-noisy-v0.npz", "cube-double-noisy-v0-val.npz"}
    for agent in ("gfp", "fql"):
        run = res["learning"][agent]
        assert run["seeds"] == 2
        # evaluated twice: half way and at the end of the planned steps
        assert [r["step"] for r in run["mean_over_seeds"]] == [10, 20], run
        assert all(len(rows) == 2 for rows in run["per_seed"].values())
    md = (out / "device_check.md").read_text()
    for heading in ("# gfp device check (dry run", "## Tests marked gpu", "## Speed",
                    "## Learning slice", "**gfp** (2 seeds)", "**fql** (2 seeds)"):  # fmt: skip
        assert heading in md, heading
