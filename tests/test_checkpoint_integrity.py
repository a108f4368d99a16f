"""End to end through `gfp train`: a run stopped after its step-30 checkpoint, whose checkpoints
then get random bytes flipped or cut, is resumed. Every resume must either end identical to the
uninterrupted run (the same params.msgpack bytes and log rows; from the previous checkpoint, with a
warning, when the newest is damaged) or stop with the one-line error and exit code 2; never exit 0
with different parameters. And `--resume` on a read-only file system is one line, exit code 4.

A tiny .npz dataset (no environment, so no evaluation) and tiny networks; in-process runs sharing
test_resume's persistent compilation cache keep each resume to a few seconds (mostly JAX tracing).
"""

from __future__ import annotations

import contextlib
import csv
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gfp.rundir as rd
from gfp.cli import main
from gfp.rundir import CHECKPOINT, PREV_CHECKPOINT
from tests.test_resume import jax_cache  # noqa: F401  (a fixture)
from tests.test_rundir import damage, flip, read_only

# Every test needs the `runs` fixture (two training runs, ~30 s with compilation), and each resume
# costs a few seconds of JAX tracing: the whole module is slow. test_rundir.py covers the same
# checkpoint logic in seconds.
pytestmark = pytest.mark.slow

# 40 steps, a log row and a checkpoint every 10; no evaluation (the .npz names no environment).
ARGS = ["--steps", "40", "--log-every", "10", "--checkpoint-every", "10", "--eval-every", "0",
        "--actor-hidden-dims", "8", "8", "--value-hidden-dims", "8", "8", "--batch-size", "8",
        "--flow-steps", "2"]  # fmt: skip


class Killed(BaseException):
    """Stands in for SIGKILL right after a checkpoint (BaseException: nothing may catch it)."""


def tiny_npz(path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 200
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    np.savez(
        path,
        observations=obs,
        actions=rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32),
        terminals=(np.arange(n) % 50 == 49).astype(np.float32),
        timeouts=np.zeros(n, np.float32),
        next_observations=np.roll(obs, -1, axis=0),
    )
    return path


def train(*argv: object) -> tuple[int, str]:
    """`gfp train ARGV` in this process: (exit code, stderr)."""
    err = io.StringIO()
    code = 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(["train", *map(str, argv)])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return code, err.getvalue()


def log_rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as f:
        return [
            {k: v for k, v in r.items() if k != "time/updates_per_s"} for r in csv.DictReader(f)
        ]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, jax_cache):  # noqa: F811
    """The uninterrupted run, and the same run killed right after its step-30 checkpoint (with
    its log row 30 written: rewinding to the step-20 checkpoint must cut it)."""
    root = tmp_path_factory.mktemp("integrity")
    task = tiny_npz(root / "tiny.npz")
    code, err = train("--task", task, *ARGS, "--out", root / "reference")
    assert code == 0, err[-3000:]

    save = rd.RunDir.save_checkpoint

    def killed_after_30(self, state, meta, *replay):
        save(self, state, meta, *replay)
        if meta["step"] == 30:
            raise Killed

    rd.RunDir.save_checkpoint = killed_after_30
    try:
        with pytest.raises(Killed):
            train("--task", task, *ARGS, "--out", root / "stopped")
    finally:
        rd.RunDir.save_checkpoint = save
    stopped = root / "stopped"
    assert [r["step"] for r in log_rows(stopped)] == ["10", "20", "30"]
    assert rd.RunDir(stopped, create=False).checkpoint_step() == 30
    return root / "reference", stopped


def assert_same_as(run: Path, ref: Path) -> None:
    assert (run / "params.msgpack").read_bytes() == (ref / "params.msgpack").read_bytes()
    assert log_rows(run) == log_rows(ref)
    assert [r["step"] for r in log_rows(run)] == ["10", "20", "30", "40"]


# A damage: (which checkpoint, 'flip' or 'cut', a position as a fraction of the file, a XOR mask).
damages = st.tuples(
    st.sampled_from([CHECKPOINT, CHECKPOINT, PREV_CHECKPOINT]),
    st.sampled_from(["flip", "flip", "flip", "cut"]),
    st.floats(0, 1, exclude_max=True),
    st.integers(1, 255),
)


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(hits=st.lists(damages, min_size=1, max_size=3))
def test_resume_from_damaged_checkpoints_is_identical_or_one_line_error(runs, hits):
    ref, stopped = runs
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(stopped, run)
        damage(run, hits)
        intact = [name for name in (CHECKPOINT, PREV_CHECKPOINT)
                  if (run / name).read_bytes() == (stopped / name).read_bytes()]  # fmt: skip
        code, err = train("--resume", run)
        lines = [line for line in err.splitlines() if line.startswith("gfp:")]
        if not intact:
            assert code == 2, err[-2000:]
            assert len(lines) == 1 and lines[0].startswith(f"gfp: error: no checkpoint in {run} ")
            assert not (run / "params.msgpack").exists()
            return
        assert code == 0, err[-2000:]
        assert_same_as(run, ref)
        fell_back = [line for line in lines if "resuming from the previous checkpoint" in line]
        assert len(fell_back) == (intact[0] == PREV_CHECKPOINT)


def test_resume_from_the_previous_checkpoint_when_the_newest_is_damaged(runs, tmp_path):
    """The issue's case: a few bytes flipped in the middle of the newest checkpoint."""
    ref, stopped = runs
    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    size = (run / CHECKPOINT).stat().st_size
    for offset in range(size // 2, size // 2 + 4):
        flip(run / CHECKPOINT, offset)
    code, err = train("--resume", run)
    assert code == 0, err[-2000:]
    assert (
        f"gfp: {run / CHECKPOINT} is corrupt (sha256 mismatch); resuming from the previous "
        f"checkpoint {run / PREV_CHECKPOINT} at step 20"
    ) in err.splitlines()
    assert_same_as(run, ref)


@pytest.mark.parametrize("kind", ["mount", "patched"])
def test_resume_on_a_read_only_file_system_is_one_line(runs, tmp_path, monkeypatch, kind):
    _, stopped = runs
    shutil.copytree(stopped, tmp_path / "ro" / "run")
    with read_only(tmp_path / "ro", kind, monkeypatch):
        code, err = train("--resume", tmp_path / "ro" / "run")
    lines = [line for line in err.splitlines() if line.startswith("gfp:")]
    assert code == 4, err[-2000:]
    assert len(lines) == 1 and "Read-only file system" in lines[0], err[-2000:]
    assert lines[0].startswith(f"gfp: error: cannot write to the run directory {tmp_path / 'ro'}")
