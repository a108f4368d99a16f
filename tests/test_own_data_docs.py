"""docs/own-data.md run as written: every bash and python block, in order, on the LeRobot fixture,
checking the figures the page quotes where they do not depend on the training's float rounding."""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "own-data.md"


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of each fenced block."""
    return [(m[1], m[2]) for m in re.finditer(r"```(\w*)\n(.*?)```", text, flags=re.S)]


def test_the_page_names_only_commands_gfp_has():
    """Each bash line starts with one of gfp's subcommands (a renamed one fails here, fast)."""
    commands = [b for lang, b in blocks(PAGE.read_text()) if lang == "bash"]
    assert len(commands) == 5
    for body in commands:
        argv = shlex.split(body)
        assert argv[0] == "gfp" and argv[1] in {"data", "train", "ope", "export"}, body


@pytest.mark.slow
def test_own_data_walkthrough_runs_end_to_end(tmp_path):
    fixture = tmp_path / "tests" / "fixtures" / "lerobot" / "v3.0"
    shutil.copytree(ROOT / "tests" / "fixtures" / "lerobot" / "v3.0", fixture)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    text = PAGE.read_text()
    quoted = [b for lang, b in blocks(text) if lang == ""]
    outputs = []
    for lang, body in blocks(text):
        if lang == "bash":
            argv = shlex.split(body)
        elif lang == "python":
            argv = [sys.executable, "-c", body]
        else:
            continue
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{body}\n{done.stderr[-3000:]}"
        outputs.append(done.stdout + done.stderr)

    # 1. gfp data info: the page's lines are its output (the rule's results are exact)
    for line in quoted[0].strip().splitlines():
        assert line.strip() in outputs[0], line
    # 2. training: validation rows at each evaluation step, the best kept beside the final
    run = tmp_path / "runs" / "robot"
    with open(run / "eval.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["250", "500", "750", "1000"]
    assert quoted[1].strip().splitlines()[0] == ",".join(rows[0])  # the page's columns
    best = json.loads((run / "summary.json").read_text())["best"]
    mse = [float(r["actor/val_action_mse"]) for r in rows]
    assert best["metric"] == "actor/val_action_mse" and best["value"] == pytest.approx(min(mse))
    assert (run / "params_best.msgpack").is_file()
    assert (tmp_path / "runs" / "robot-camera" / "params_best.msgpack").is_file()
    # 3. ope: its estimate saved
    assert "V^pi" in outputs[3] and (run / "ope.json").is_file()
    # 4. export in robot units, and the deploy snippet's three actions within the data's range
    assert "action[5] in robot units (raw observation: observation.state)" in outputs[4]
    meta = json.loads((tmp_path / "robot.onnx.json").read_text())
    lo, hi = (meta["robot"]["action_normalization"][k] for k in ("min", "max"))
    printed = re.findall(r"^\[([-\d. e]+)\]$", outputs[5], flags=re.M)
    actions = [[float(x) for x in p.split()] for p in printed[-3:]]
    assert len(actions) == 3 and all(len(a) == 5 for a in actions)
    for a in actions:
        assert all(lo[i] - 1e-3 <= a[i] <= hi[i] + 1e-3 for i in range(5)), (a, lo, hi)
