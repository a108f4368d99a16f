"""Weights & Biases tracking (`gfp train --wandb [PROJECT]`, gfp/tracking.py): the flag and its
optional value, a setting that is not run-defining (a resume may add or drop it), one line without
the client, and the real wandb client in offline mode (no network): the offline run folder holds
the logged metric keys, config.json's values, the final figures and the video.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import gfp.settings as run_settings
from gfp.cli import _parse, main, train_job
from gfp.errors import ConfigError
from gfp.job import job_record, make_train_job
from gfp.rundir import RunDir
from tests.test_checkpoint_integrity import tiny_npz

TASK = "cube-single-noisy-singletask-task1-v0"
TINY = ["--actor-hidden-dims", "8", "8", "--value-hidden-dims", "8", "8", "--batch-size", "8",
        "--flow-steps", "2"]  # fmt: skip


def cli(*argv: object) -> tuple[int, str]:
    """`gfp ARGV` in this process: (exit code, stderr)."""
    err, code = io.StringIO(), 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main([*map(str, argv)])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return code, err.getvalue()


@pytest.fixture
def offline(tmp_path, monkeypatch) -> Path:
    """The real wandb client, offline, with every folder it writes in tmp_path."""
    pytest.importorskip("wandb", reason="the dev extra installs wandb: pip install -e '.[dev]'")
    root = tmp_path / "wandb_root"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        (root / var).mkdir(parents=True)
        monkeypatch.setenv(var, str(root / var))
    return root / "WANDB_DIR"


def offline_runs(wandb_dir: Path) -> list[Path]:
    return sorted((wandb_dir / "wandb").glob("offline-run-*"))


def transaction_log(run: Path) -> bytes:
    """The run's record of what was logged (`run-<id>.wandb`, what `wandb sync` uploads)."""
    (log,) = run.glob("run-*.wandb")
    return log.read_bytes()


# ---- the flag -----------------------------------------------------------------------------------
def test_the_wandb_flag_takes_an_optional_project():
    def project(*argv: str):
        return _parse(["train", *argv]).settings.wandb

    assert project() is None
    assert project("--wandb") == "gfp"
    assert project("--wandb", "grid-a") == "grid-a"
    assert project("--wandb", "--steps", "5") == "gfp"
    code, err = cli("train", "--wandb", "a", "b")
    assert code == 2 and err.startswith("gfp: error: ") and err.count("\n") == 1, err
    assert "at most one value" in err
    with pytest.raises(ConfigError, match="must be a Weights & Biases project name"):
        make_train_job(TASK, "gfp", preset="cpu", out="x", wandb="a/b")
    # sweeps get every setting: --wandb there too, unset by default
    assert _parse(["sweep", "--tasks", TASK, "--out", "x", "--wandb"]).settings.wandb == "gfp"


def test_wandb_is_not_part_of_the_run_and_a_resume_may_add_or_drop_it(tmp_path):
    job = make_train_job(TASK, "gfp", preset="cpu", steps=40, out=tmp_path, wandb="grid")
    plain = make_train_job(TASK, "gfp", preset="cpu", steps=40, out=tmp_path)
    record = job_record(job)
    assert "wandb" not in record and "wandb" not in run_settings.run_defining()
    assert record["config_hash"] == job_record(plain)["config_hash"]
    (tmp_path / "config.json").write_text(json.dumps({**record, "seed": 0}))
    resumed, _ = train_job(_parse(["train", "--resume", str(tmp_path), "--wandb", "later"]))
    assert resumed.wandb == "later" and resumed.resume
    resumed, _ = train_job(_parse(["train", "--resume", str(tmp_path)]))
    assert resumed.wandb is None


def test_without_the_client_wandb_is_one_line_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[wandb\]"'):
        RunDir(tmp_path / "run", wandb="gfp")
    assert not (tmp_path / "run").exists()
    data = tiny_npz(tmp_path / "tiny.npz")
    out = tmp_path / "cli_run"
    code, err = cli("train", "--task", data, "--steps", "10", "--out", out, "--wandb", *TINY)
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("gfp: error: --wandb needs the Weights & Biases client") and (
        'pip install -e ".[wandb]"' in err
    ), err
    assert not out.exists()


# ---- the offline run ----------------------------------------------------------------------------
def test_an_offline_run_holds_the_metrics_config_figures_and_video(tmp_path, offline):
    import imageio.v2 as imageio

    config = {**job_record(make_train_job(TASK, "gfp", preset="cpu", steps=40, out=tmp_path)),
              "seed": 0}  # fmt: skip
    run = RunDir(tmp_path / "run", wandb="gfp-test", offline_steps=40)
    run.write_config(config)
    run.log_metrics(20, {"critic/loss": 0.75, "vabc/g_mean": float("nan")})
    run.log_metrics(40, {"critic/loss": 0.5, "vabc/g_mean": 0.25})
    run.log_eval(40, {"actor/success": 0.62, "actor/return": -3.5, "eval_seed": 11})
    run.log_scalars(30, {"return": 4.0}, "explore/")  # out of order: before step 40
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    imageio.mimwrite(tmp_path / "run" / "actor.mp4", list(frames), fps=30, macro_block_size=1)
    run.log_videos(40, ["actor", "vabc"])  # no vabc.mp4: nothing to log for it
    run.write_summary({"task": TASK, "steps": 40, "actor/success_final": 0.62})
    wb = run.tracker.run
    # the public run object: the config, and the last value of every logged key
    assert wb.config["agent_config"]["alpha"] == config["agent_config"]["alpha"]
    assert wb.config["task"] == TASK and wb.project == "gfp-test"
    assert wb.summary["critic/loss"] == 0.5 and wb.summary["eval/actor/success"] == 0.62
    assert wb.summary["actor/success_final"] == 0.62
    run.close()

    (folder,) = offline_runs(offline)
    log = transaction_log(folder)
    for key in (
        "critic/loss",
        "vabc/g_mean",
        "eval/actor/success",
        "eval/actor/return",
        "explore/return",
        "video/actor",
        "actor/success_final",
        "agent_config",
        TASK,
    ):
        assert key.encode() in log, key  # fmt: skip
    assert b"eval/eval_seed" not in log  # an identifier, CSV only (as for TensorBoard)
    videos = list((folder / "files" / "media" / "videos").rglob("*.mp4"))
    assert len(videos) == 1 and videos[0].read_bytes() == (tmp_path / "run/actor.mp4").read_bytes()


@pytest.mark.slow
def test_gfp_train_wandb_offline_end_to_end(tmp_path, offline):
    """`gfp train --wandb` of a tiny run: one offline W&B run per seed with the training metrics
    and the config, and the TensorBoard hparams beside it."""
    data = tiny_npz(tmp_path / "tiny.npz")
    out = tmp_path / "runs"
    code, err = cli("train", "--task", data, "--steps", "20", "--log-every", "10", "--eval-every",
                    "0", "--seeds", "0,1", "--out", out, "--wandb", *TINY)  # fmt: skip
    assert code == 0, err[-3000:]
    folders = offline_runs(offline)
    assert len(folders) == 2
    for folder in folders:
        log = transaction_log(folder)
        assert b"critic/loss" in log and b"agent_config" in log and b"time/updates_per_s" in log
    names = sorted(
        next(
            s for s in (str(out / "seed0"), str(out / "seed1")) if s.encode() in transaction_log(f)
        )
        for f in folders
    )
    assert names == [str(out / "seed0"), str(out / "seed1")]  # each seed its own W&B run
    assert list((out / "seed0" / "tb" / "hparams").glob("events.out.tfevents.*"))
