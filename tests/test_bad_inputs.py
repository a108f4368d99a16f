"""The bad-input table: careless and hostile inputs through the real CLI, by group (datasets,
OGBench folders, run directories and checkpoints, flags, sweeps, reports, exports).

For every input the command must exit with the status the table names (2: bad input), print
exactly one `gfp: error:` line and no traceback, and leave every file under the case's folder and
the shared dataset byte-identical (nothing written, nothing removed). Each case gets its own copy
of a tiny finished run, so a case that damaged it could not hide behind another."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from gfp.cli import main
from tests.conftest import TINY_TASK

SMALL = ["--actor-hidden-dims", "8", "8", "--value-hidden-dims", "8", "8", "--batch-size", "8"]


@dataclass(frozen=True)
class World:
    data: Path  # the tiny OGBench folder (shared: must never change)
    run: Path  # this case's copy of a finished 20-step run
    tmp: Path  # this case's folder (the run lives in it)


@dataclass(frozen=True)
class Case:
    group: str
    name: str
    argv: Callable[[World], list[str]]  # may also write the bad input into world.tmp
    code: int = 2


def train_argv(w: World, *extra: str) -> list[str]:
    return ["train", "--task", TINY_TASK, "--dataset-dir", str(w.data), "--out",
            str(w.tmp / "new"), "--steps", "4", "--log-every", "2", *SMALL, *extra]  # fmt: skip


def write(path: Path, content: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def npz(path: Path, **arrays: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def d4rl_like(path: Path, n: int = 6, **changes) -> Path:
    obs = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    arrays = {
        "observations": obs,
        "next_observations": obs + 1,
        "actions": np.zeros((n, 2), np.float32),
        "rewards": np.zeros(n, np.float32),
        "terminals": np.zeros(n, bool),
        "timeouts": np.eye(1, n, n - 1, dtype=bool)[0],  # the last step ends the episode
    }
    arrays.update(changes)
    return npz(path, **{k: v for k, v in arrays.items() if v is not None})


def ogbench_copy(w: World, edit: Callable[[dict], dict]) -> Path:
    """A copy of the tiny OGBench folder whose train file went through `edit`."""
    folder = w.tmp / "ogb"
    shutil.copytree(w.data, folder)
    train = next(folder.glob("*-v0.npz"))
    with np.load(train) as f:
        arrays = edit(dict(f))
    npz(train, **arrays)
    return folder


def flip_byte(path: Path, at: int = -9) -> None:
    blob = bytearray(path.read_bytes())
    blob[at] ^= 0xFF
    path.write_bytes(bytes(blob))


def drop(arrays: dict, key: str) -> dict:
    return {k: v for k, v in arrays.items() if k != key}


def with_nan(arrays: dict, key: str) -> dict:
    arrays[key] = arrays[key].astype(np.float32)
    arrays[key][5] = np.nan
    return arrays


def folder(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def eval_after(w: World, damage: Callable[[Path], object]) -> list[str]:
    """`gfp eval` of the run once `damage` was done to its params.msgpack (or beside it)."""
    damage(w.run / "params.msgpack")
    return ["eval", str(w.run), "--episodes", "1"]


def resume_damaged(w: World) -> list[str]:
    """An unfinished run whose checkpoints all fail their integrity check."""
    for name in ("checkpoint.msgpack", "checkpoint.prev.msgpack"):
        if (w.run / name).exists():
            flip_byte(w.run / name)
    (w.run / "summary.json").unlink()
    return ["train", "--resume", str(w.run)]


def edited_config(w: World, **changes) -> Path:
    cfg = json.loads((w.run / "config.json").read_text())
    cfg.update(changes)
    (w.run / "config.json").write_text(json.dumps(cfg))
    (w.run / "summary.json").unlink()  # an unfinished run, so that --resume looks at it
    return w.run


CASES = [
    # ---- datasets ----
    Case(
        "datasets",
        "npz without actions",
        lambda w: ["data", "info", str(d4rl_like(w.tmp / "d.npz", actions=None))],
    ),
    Case(
        "datasets",
        "npz with NaN observations",
        lambda w: [
            "data",
            "info",
            str(d4rl_like(w.tmp / "d.npz", observations=np.full((6, 3), np.nan, np.float32))),
        ],
    ),
    Case(
        "datasets",
        "npz with mismatched lengths",
        lambda w: ["data", "info", str(d4rl_like(w.tmp / "d.npz", rewards=np.zeros(5)))],
    ),
    Case(
        "datasets",
        "text file named .npz",
        lambda w: ["data", "info", str(write(w.tmp / "d.npz", "observations,actions\n1,2\n"))],
    ),
    Case("datasets", "empty file", lambda w: ["data", "info", str(write(w.tmp / "d.npz", b""))]),
    Case(
        "datasets",
        "truncated npz",
        lambda w: [
            "data",
            "info",
            str(write(w.tmp / "d.npz", d4rl_like(w.tmp / "full.npz").read_bytes()[:200])),
        ],
    ),
    Case(
        "datasets",
        "hdf5 that is not one",
        lambda w: ["data", "info", str(write(w.tmp / "d.hdf5", b"\x89HDF\r\n\x1a\n" + b"\0" * 40))],
    ),
    Case("datasets", "missing file", lambda w: ["data", "info", str(w.tmp / "absent.npz")]),
    Case(
        "datasets",
        "train on a text file",
        lambda w: [
            "train",
            "--task",
            str(write(w.tmp / "d.npz", "hello")),
            "--out",
            str(w.tmp / "new"),
            *SMALL,
        ],
    ),  # fmt: skip
    # ---- OGBench folders ----
    Case(
        "ogbench",
        "dataset dir is a file",
        lambda w: [*train_argv(w), "--dataset-dir", str(write(w.tmp / "f", "x"))],
    ),
    Case(
        "ogbench",
        "train file missing",
        lambda w: ["data", "info", TINY_TASK, "--dataset-dir", str(w.tmp)],
    ),
    Case(
        "ogbench",
        "qpos missing",
        lambda w: [
            "data",
            "info",
            TINY_TASK,
            "--dataset-dir",
            str(ogbench_copy(w, lambda a: drop(a, "qpos"))),
        ],
    ),  # fmt: skip
    Case(
        "ogbench",
        "terminals missing",
        lambda w: [
            "data",
            "info",
            TINY_TASK,
            "--dataset-dir",
            str(ogbench_copy(w, lambda a: drop(a, "terminals"))),
        ],
    ),  # fmt: skip
    Case(
        "ogbench",
        "NaN action",
        lambda w: [
            "data",
            "info",
            TINY_TASK,
            "--dataset-dir",
            str(ogbench_copy(w, lambda a: with_nan(a, "actions"))),
        ],
    ),  # fmt: skip
    Case(
        "ogbench",
        "observations of another width",
        lambda w: [
            "data",
            "info",
            TINY_TASK,
            "--dataset-dir",
            str(ogbench_copy(w, lambda a: {**a, "observations": a["observations"][:, :-1]})),
        ],
    ),
    Case(
        "ogbench",
        "typo in the task",
        lambda w: ["data", "info", TINY_TASK.replace("noisy", "nosy")],
    ),
    # ---- run directories and checkpoints ----
    Case("runs", "eval of a folder that is no run", lambda w: ["eval", str(w.tmp / "nothing")]),
    Case("runs", "eval with flipped params", lambda w: eval_after(w, flip_byte)),
    Case(
        "runs", "eval with text params", lambda w: eval_after(w, lambda p: write(p, "{}"))
    ),  # fmt: skip
    Case(
        "runs",
        "eval with truncated params",
        lambda w: eval_after(w, lambda p: write(p, p.read_bytes()[:50])),
    ),  # fmt: skip
    Case(
        "runs",
        "eval with broken config.json",
        lambda w: eval_after(w, lambda p: write(p.with_name("config.json"), "{not json")),
    ),
    Case(
        "runs",
        "resume of a folder that is no run",
        lambda w: ["train", "--resume", str(w.tmp / "nothing")],
    ),
    Case("runs", "resume with every checkpoint damaged", lambda w: resume_damaged(w)),
    Case(
        "runs",
        "resume with an unknown config key",
        lambda w: ["train", "--resume", str(edited_config(w, colour="blue"))],
    ),
    Case(
        "runs",
        "resume with seed edited but not seeds",
        lambda w: ["train", "--resume", str(edited_config(w, seed=7))],
    ),
    Case(
        "runs", "train into a finished run", lambda w: [*train_argv(w), "--out", str(w.run)]
    ),  # the last --out counts
    # ---- flags ----
    Case("flags", "steps 0", lambda w: train_argv(w, "--steps", "0")),
    Case("flags", "negative batch", lambda w: train_argv(w, "--batch-size", "-1")),
    Case("flags", "unknown agent", lambda w: train_argv(w, "--agent", "gpf")),
    Case("flags", "seed beyond 2^31", lambda w: train_argv(w, "--seed", str(2**31))),
    Case("flags", "negative seed", lambda w: train_argv(w, "--seed", "-1")),
    Case("flags", "seed with seeds", lambda w: train_argv(w, "--seed", "1", "--seeds", "0,1")),
    Case("flags", "empty seeds", lambda w: train_argv(w, "--seeds", "")),
    Case("flags", "eval every beyond steps", lambda w: train_argv(w, "--eval-every", "99")),
    Case("flags", "alpha NaN", lambda w: train_argv(w, "--alpha", "nan")),
    Case("flags", "eval with zero episodes", lambda w: ["eval", str(w.run), "--episodes", "0"]),
    Case(
        "flags", "eval with negative episodes", lambda w: ["eval", str(w.run), "--episodes", "-3"]
    ),
    Case("flags", "unknown preset", lambda w: train_argv(w, "--preset", "papr")),
    Case("flags", "presets of a misspelled task", lambda w: ["presets", TINY_TASK[:-2] + "v9"]),
    Case(
        "flags",
        "generate into an existing file",
        lambda w: [
            "data",
            "generate",
            "cube-single-noisy-v0",
            "--episodes",
            "1",
            "--out",
            str(write(w.tmp / "taken.npz", "mine")),
        ],
    ),  # fmt: skip
    # ---- sweeps (refused before Ray starts) ----
    Case(
        "sweeps",
        "grid of an unknown key",
        lambda w: [
            "sweep",
            "--tasks",
            TINY_TASK,
            "--agents",
            "gfp",
            "--seeds",
            "0",
            "--grid",
            "alfa=1,2",
            "--out",
            str(w.tmp / "sw"),
        ],
    ),  # fmt: skip
    Case(
        "sweeps",
        "grid value out of range",
        lambda w: [
            "sweep",
            "--tasks",
            TINY_TASK,
            "--agents",
            "gfp",
            "--seeds",
            "0",
            "--grid",
            "eta=-1",
            "--out",
            str(w.tmp / "sw"),
        ],
    ),  # fmt: skip
    Case(
        "sweeps",
        "spec that is not TOML",
        lambda w: ["sweep", str(write(w.tmp / "s.toml", "tasks = [")), "--out", str(w.tmp / "sw")],
    ),
    Case(
        "sweeps",
        "binary spec",
        lambda w: [
            "sweep",
            str(write(w.tmp / "s.toml", b"\xff\xfe\x00\x81")),
            "--out",
            str(w.tmp / "sw"),
        ],
    ),  # fmt: skip
    Case(
        "sweeps", "status of a folder that is no sweep", lambda w: ["sweep", "status", str(w.tmp)]
    ),
    # ---- reports ----
    Case(
        "reports",
        "report of an empty folder",
        lambda w: ["report", str(folder(w.tmp / "empty")), "--out", str(w.tmp / "rep")],
    ),
    Case(
        "reports",
        "report of a non-UTF-8 results.csv",
        lambda w: [
            "report",
            str(write(w.tmp / "results.csv", b"agent,task\n\xff\xfe,x\n")),
            "--out",
            str(w.tmp / "rep"),
        ],
    ),  # fmt: skip
    Case(
        "reports",
        "report of a binary file",
        lambda w: [
            "report",
            str(write(w.tmp / "results.csv", bytes(range(256)))),
            "--out",
            str(w.tmp / "rep"),
        ],
    ),  # fmt: skip
    Case(
        "reports",
        "report with an absent baseline",
        lambda w: ["report", str(w.run), "--out", str(w.tmp / "rep"), "--baseline", "iql"],
    ),
    # ---- exports ----
    Case(
        "exports",
        "export onto the run's own params",
        lambda w: [
            "export",
            str(w.run),
            "--format",
            "onnx",
            "--out",
            str(w.run / "params.msgpack"),
            "--overwrite",
        ],
    ),  # fmt: skip
    Case(
        "exports",
        "export over an existing file",
        lambda w: [
            "export",
            str(w.run),
            "--format",
            "onnx",
            "--out",
            str(write(w.tmp / "mine.onnx", "keep")),
        ],
    ),  # fmt: skip
    Case(
        "exports",
        "export of an unknown policy",
        lambda w: ["export", str(w.run), "--policy", "critic", "--out", str(w.tmp / "p.onnx")],
    ),
    Case(
        "exports",
        "export at an unsupported opset",
        lambda w: ["export", str(w.run), "--opset", "3", "--out", str(w.tmp / "p.onnx")],
    ),
]


@pytest.fixture(scope="module")
def finished_run(tiny_ogbench_dir, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("bad_inputs") / "run"
    main(["train", "--task", TINY_TASK, "--dataset-dir", str(tiny_ogbench_dir), "--out", str(run),
          "--steps", "20", "--log-every", "10", "--eval-every", "20", "--eval-episodes", "1",
          "--checkpoint-every", "10", *SMALL])  # fmt: skip
    return run


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file under `roots` (and every folder, as an entry of its own) with its sha256."""
    seen: dict[str, str] = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            seen[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[f"{c.group}: {c.name}" for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(case, finished_run, tiny_ogbench_dir,
                                                   tmp_path, capsys):  # fmt: skip
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    world = World(data=tiny_ogbench_dir, run=run, tmp=tmp_path)
    argv = case.argv(world)  # writes the bad input, if any, before the snapshot
    before = snapshot(tmp_path, tiny_ogbench_dir)
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("gfp: error: ")]
    assert e.value.code == case.code, err
    assert len(errors) == 1, err
    assert "Traceback" not in out + err
    assert snapshot(tmp_path, tiny_ogbench_dir) == before


# ---- signals: Ctrl-C while a command compiles (held there by tests/test_reliability.py's gate,
# so the signal lands during the compilation whatever the machine's load) ----
SIGNAL_CASES = {
    "train": lambda w: train_argv(w),
    "eval": lambda w: ["eval", str(w.run), "--episodes", "1"],
    "export": lambda w: [
        "export",
        str(w.run),
        "--format",
        "stablehlo",
        "--out",
        str(w.tmp / "policy.stablehlo"),
    ],  # fmt: skip
}


@pytest.mark.slow
@pytest.mark.parametrize("command", list(SIGNAL_CASES))
def test_ctrl_c_while_compiling_is_one_line(command, finished_run, tiny_ogbench_dir, tmp_path):
    """Exit 130, one `gfp:` line, no traceback; the run and the dataset unchanged, and nothing of
    the command's own output left behind (train: a fresh run directory may hold its config)."""
    import signal
    import subprocess
    import sys

    from tests.test_reliability import gfp_env, wait_for

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    world = World(data=tiny_ogbench_dir, run=run, tmp=tmp_path)
    before = snapshot(run, tiny_ogbench_dir)
    gate = tmp_path / "gate"
    proc = subprocess.Popen([sys.executable, "-m", "gfp.cli", *SIGNAL_CASES[command](world)],
                            env=gfp_env(gate), cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    wait_for(gate / "compiling", proc)
    proc.send_signal(signal.SIGINT)
    (gate / "open").touch()
    out, err = proc.communicate(timeout=600)
    lines = [line for line in err.splitlines() if line.strip() and "\r" not in line]
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in out + err
    assert [line for line in lines if line.startswith("gfp:")] == lines[-1:], err[-3000:]
    assert snapshot(run, tiny_ogbench_dir) == before
    assert not (tmp_path / "policy.stablehlo").exists()
