"""Reliability: runs killed (SIGKILL) or stopped (SIGTERM/SIGINT) and resumed end bit-identical to
uninterrupted runs, multi-seed runs resume with every seed at its own step, a NaN stops training
and keeps the last good checkpoint, and a failed checkpoint write keeps the previous one.

The runs are real `gfp train` processes on the tiny generated dataset with tiny networks. A
persistent XLA compilation cache shared by this module's processes (and this process) keeps the
compile cost to about one compilation per program.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gfp.cli import main
from gfp.errors import WriteError
from gfp.rundir import CHECKPOINT, RunDir
from tests.conftest import TINY_TASK

SMALL = ["--actor-hidden-dims", "16", "16", "--value-hidden-dims", "16", "16", "--batch-size", "16",
         "--flow-steps", "2"]  # fmt: skip
# 120 steps; a log row every 20, evaluations at 60 and 120, checkpoints at 40, 80, 120.
SCHEDULE = ["--steps", "120", "--log-every", "20", "--eval-every", "60", "--eval-episodes", "1",
            "--checkpoint-every", "40"]  # fmt: skip
ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 240


@pytest.fixture(scope="module")
def jax_cache():
    """The environment of this module's `gfp` subprocesses: the session's persistent compilation
    cache (tests/conftest.py sets it for every process the suite starts, so each resume compiles
    nothing new) and this checkout on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def gfp_train(env, *args, driver: str | None = None) -> subprocess.Popen:
    code = (driver or "") + "\nimport sys\nfrom gfp.cli import main\nmain(sys.argv[1:])\n"
    return subprocess.Popen(
        [sys.executable, "-c", code, "train", *map(str, args)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, out, err


def wait_until(proc: subprocess.Popen, condition, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before {what}: {proc.communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def steps_logged(path: Path) -> list[int]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()[1:]
    return [int(line.split(",")[0]) for line in lines if line.endswith(tuple("0123456789"))]


def checkpoint_step(run: Path) -> int | None:
    return RunDir(run, create=False).checkpoint_step()


def rows(path: Path, drop: tuple[str, ...]) -> list[dict[str, str]]:
    with path.open() as f:
        return [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(f)]


def assert_same_run(run: Path, ref: Path) -> None:
    """Bit-identical parameters and checkpoint state; the same log rows (timings aside)."""
    assert (run / "params.msgpack").read_bytes() == (ref / "params.msgpack").read_bytes()
    (state, meta), (ref_state, ref_meta) = (RunDir(p, create=False).load_checkpoint()
                                            for p in (run, ref))  # fmt: skip
    assert meta["step"] == ref_meta["step"] == 120
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref_state), strict=True):
        np.testing.assert_array_equal(a, b)
    assert rows(run / "metrics.csv", ("time/updates_per_s",)) == rows(
        ref / "metrics.csv", ("time/updates_per_s",)
    )
    assert steps_logged(run / "metrics.csv") == list(range(20, 121, 20))
    assert rows(run / "eval.csv", ("eval_seconds",)) == rows(ref / "eval.csv", ("eval_seconds",))
    assert steps_logged(run / "eval.csv") == [60, 120]
    assert json.loads((run / "summary.json").read_text())["steps"] == 120


@pytest.fixture(scope="module")
def reference(tiny_ogbench_dir, tmp_path_factory, jax_cache):
    """Uninterrupted runs: one seed, and seeds 0,1 side by side."""
    out = tmp_path_factory.mktemp("reference")
    data = ["--task", TINY_TASK, "--dataset-dir", tiny_ogbench_dir]
    procs = [
        gfp_train(jax_cache, *data, *SCHEDULE, *SMALL, "--out", out / "single"),
        gfp_train(jax_cache, *data, *SCHEDULE, *SMALL, "--seeds", "0,1", "--out", out / "multi"),
    ]
    for proc in procs:
        code, _, err = finish(proc)
        assert code == 0, err[-3000:]
    return out


# Each log row takes 0.25 s more, so that a signal sent when a row appears lands at that step.
SLOW_LOGS = """
import time
import gfp.rundir as rd
log_metrics = rd.RunDir.log_metrics
def slow_log_metrics(self, step, row):
    log_metrics(self, step, row)
    time.sleep(0.25)
rd.RunDir.log_metrics = slow_log_metrics
"""


def test_sigterm_sigkill_sigint_then_resume_is_bit_identical(
    reference, tiny_ogbench_dir, tmp_path, jax_cache, capsys
):
    out = tmp_path / "run"
    data = ["--task", TINY_TASK, "--dataset-dir", tiny_ogbench_dir]

    def logged_past(step: int):
        return lambda: any(s > step for s in steps_logged(out / "metrics.csv"))

    # 1. SIGTERM at step 20: a checkpoint at that chunk boundary, then exit 128 + 15.
    proc = gfp_train(jax_cache, *data, *SCHEDULE, *SMALL, "--out", out, driver=SLOW_LOGS)
    wait_until(proc, logged_past(0), "the first log row")
    proc.send_signal(signal.SIGTERM)
    code, _, err = finish(proc)
    assert code == 143, err[-3000:]
    assert "stopped by SIGTERM at step 20 of 120, checkpoint written" in err
    assert f"gfp train --resume {out}" in err
    assert checkpoint_step(out) == 20 and steps_logged(out / "metrics.csv") == [20]
    # an unfinished run is neither restarted nor overwritten by accident
    with pytest.raises(SystemExit) as e:
        main(["train", *map(str, data), *SCHEDULE, *SMALL, "--out", str(out)])
    assert e.value.code == 2

    # 2. SIGKILL at step 60, after the step-40 checkpoint: row 60 must go, and be written again.
    proc = gfp_train(jax_cache, "--resume", out, driver=SLOW_LOGS)
    wait_until(proc, logged_past(40), "log row 60")
    proc.kill()
    proc.wait()
    assert checkpoint_step(out) == 40 and steps_logged(out / "metrics.csv")[-1] == 60

    # 3. SIGINT (Ctrl-C) at step 100, then the last resume runs to the end.
    proc = gfp_train(jax_cache, "--resume", out, driver=SLOW_LOGS)
    wait_until(proc, logged_past(80), "log row 100")
    proc.send_signal(signal.SIGINT)
    code, out_text, err = finish(proc)
    assert code == 130, err[-3000:]
    assert "resuming" in out_text and "seed 0: step 40 of 120" in out_text
    assert "stopped by SIGINT at step 100" in err and checkpoint_step(out) == 100
    code, _, err = finish(gfp_train(jax_cache, "--resume", out))
    assert code == 0, err[-3000:]
    assert_same_run(out, reference / "single")

    # resuming a finished run does nothing
    main(["train", "--resume", str(out)])
    assert "already finished" in capsys.readouterr().out
    assert_same_run(out, reference / "single")


KILL_SEED1_AT_80 = """
import os, signal
import gfp.rundir as rd
save = rd.RunDir.save_checkpoint
def killing_save(self, state, meta, *replay):
    if self.path.name == "seed1" and meta["step"] == 80:
        os.kill(os.getpid(), signal.SIGKILL)  # after seed0's step-80 checkpoint, before seed1's
    save(self, state, meta, *replay)
rd.RunDir.save_checkpoint = killing_save
"""


def test_multi_seed_resumes_every_seed_at_its_own_step(
    reference, tiny_ogbench_dir, tmp_path, jax_cache
):
    out = tmp_path / "seeds"
    data = ["--task", TINY_TASK, "--dataset-dir", tiny_ogbench_dir]
    proc = gfp_train(jax_cache, *data, *SCHEDULE, *SMALL, "--seeds", "0,1", "--out", out,
                     driver=KILL_SEED1_AT_80)  # fmt: skip
    code, _, _ = finish(proc)
    assert code == -signal.SIGKILL
    assert (checkpoint_step(out / "seed0"), checkpoint_step(out / "seed1")) == (80, 40)
    assert steps_logged(out / "seed1" / "eval.csv") == [60]  # written after its checkpoint

    code, out_text, err = finish(gfp_train(jax_cache, "--resume", out))
    assert code == 0, err[-3000:]
    assert "seed 0: step 80, seed 1: step 40 of 120" in out_text
    for seed in ("seed0", "seed1"):
        assert_same_run(out / seed, reference / "multi" / seed)


def run_in_process(tiny_ogbench_dir, out, *extra: str) -> None:
    main(["train", "--task", TINY_TASK, "--dataset-dir", str(tiny_ogbench_dir), *SCHEDULE, *SMALL,
          "--out", str(out), *extra])  # fmt: skip


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(
    tiny_ogbench_dir, tmp_path, monkeypatch, capsys, jax_cache
):
    from gfp.agents.gfp import GFP

    update = GFP.update

    def poisoned(self, state, batch):  # from update 51 on, every reward is NaN
        rewards = jnp.where(state.step >= 50, jnp.nan, batch["rewards"])
        return update(self, state, {**batch, "rewards": rewards})

    monkeypatch.setattr(GFP, "update", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(SystemExit) as e:
        run_in_process(tiny_ogbench_dir, out)
    assert e.value.code == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert err.startswith("gfp: error: ") and err.count("gfp:") == 1
    assert "training diverged at step 51: non-finite critic/loss" in err
    assert "last good checkpoint (step 40) is kept" in err
    state, meta = RunDir(out, create=False).load_checkpoint()
    assert meta["step"] == 40 and all(np.isfinite(x).all() for x in jax.tree.leaves(state))
    assert not (out / "summary.json").exists()


def test_failed_checkpoint_write_keeps_the_previous_one(
    tiny_ogbench_dir, tmp_path, monkeypatch, capsys, jax_cache
):
    import gfp.rundir

    replace = os.replace
    calls = []

    def full_disk(src, dst):
        if Path(dst).name == CHECKPOINT:
            calls.append(dst)
            if len(calls) == 2:  # the step-80 checkpoint
                raise OSError(errno.ENOSPC, "No space left on device")
        replace(src, dst)

    monkeypatch.setattr(gfp.rundir.os, "replace", full_disk)
    out = tmp_path / "full"
    with pytest.raises(SystemExit) as e:
        run_in_process(tiny_ogbench_dir, out)
    assert e.value.code == 4
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("gfp: error: ") and err.count("gfp:") == 1
    assert "could not write the step-80 checkpoint" in err and "No space left on device" in err
    assert "the previous checkpoint (step 40) is intact" in err
    assert checkpoint_step(out) == 40
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]

    # a failed result write says so too, and keeps the previous file
    monkeypatch.setattr(gfp.rundir.os, "replace", lambda src, dst: (_ for _ in ()).throw(
        PermissionError(errno.EACCES, "Permission denied")))  # fmt: skip
    with pytest.raises(WriteError, match="Permission denied; the previous version is intact"):
        gfp.rundir.atomic_write_json(out / "config.json", {})
    assert json.loads((out / "config.json").read_text())["steps"] == 120
