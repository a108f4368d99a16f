"""The `gfp` command end to end on a tiny generated dataset, and its one-line errors."""

from __future__ import annotations

import json

import pytest

from gfp.cli import main
from tests.conftest import TINY_TASK

SMALL = ["--actor-hidden-dims", "16", "16", "--value-hidden-dims", "16", "16", "--batch-size", "16"]


def run_cli(*argv: str) -> None:
    main(list(argv))


def test_train_then_eval(tiny_ogbench_dir, tmp_path, capsys):
    out = tmp_path / "run"
    run_cli(
        "train",
        "--task",
        TINY_TASK,
        "--dataset-dir",
        str(tiny_ogbench_dir),
        "--steps",
        "20",
        "--log-every",
        "10",
        "--eval-every",
        "20",
        "--eval-episodes",
        "2",
        "--out",
        str(out),
        "--alpha",
        "3.0",
        *SMALL,
    )
    for name in ("config.json", "metrics.csv", "eval.csv", "summary.json", "params.msgpack"):
        assert (out / name).exists(), name
    assert any((out / "tb").iterdir())
    config = json.loads((out / "config.json").read_text())
    assert config["agent_config"]["alpha"] == 3.0
    assert config["agent_config_sources"]["alpha"] == "flag"
    assert config["agent_config"]["actor_hidden_dims"] == [16, 16]
    # cube-single-noisy's paper row: y_VaBC target and eta 1e-3
    assert config["agent_config"]["target_agg"] == "mean"
    assert config["agent_config"]["eta"] == 1e-3
    metrics = (out / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 3 and metrics[1].startswith("10,") and metrics[2].startswith("20,")
    assert "vabc/g_mean" in metrics[0] and "grad_norm/critic" in metrics[0]
    evals = (out / "eval.csv").read_text().splitlines()
    assert len(evals) == 2 and "actor/success" in evals[0] and "vabc/success" in evals[0]
    summary = json.loads((out / "summary.json").read_text())
    assert 0.0 <= summary["actor/success_final"] <= 1.0 and summary["steps"] == 20

    run_cli("eval", str(out), "--episodes", "2")
    printed = capsys.readouterr().out
    assert "actor/success" in printed
    assert set(json.loads((out / "eval_final.json").read_text())) >= {
        "actor/success",
        "vabc/return",
    }

    # a finished run is not overwritten without --overwrite
    with pytest.raises(SystemExit) as e:
        run_cli(
            "train",
            "--task",
            TINY_TASK,
            "--dataset-dir",
            str(tiny_ogbench_dir),
            "--steps",
            "10",
            "--out",
            str(out),
            *SMALL,
        )
    assert e.value.code == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--agent", "nope"], "unknown agent 'nope'"),
        (["train", "--steps", "0"], "steps = 0 must be >= 1"),
        (["train", "--steps", "10", "--eval-every", "20"], "eval_every = 20 must be between 0"),
        (["train", "--seeds", "1,x"], "--seeds"),
        (["train", "--steps", "-5"], "steps = -5 must be >= 1"),
        (["train", "--preset", "nope"], "unknown preset 'nope' (choices: paper, cpu"),
        (["train", "--agent", "gfp", "--nope", "3"], "Unrecognized options: --nope"),
        (["train", "--lrr", "3"], "(did you mean --lr?)"),
        (["train", "--lr", "abc"], "Error parsing --lr"),
        (["nope"], "Available subcommands: train, eval"),
        (
            ["train", "--steps", "10", "--checkpoint-every", "20"],
            "checkpoint_every = 20 must be between 0",
        ),
        (["train", "--checkpoint-every", "-1"], "checkpoint_every = -1 must be between 0"),
        (["train", "--resume", "/nonexistent/run"], "not a gfp run directory (it does not exist)"),
    ],
)
def test_errors_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        run_cli(*argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert err.startswith("gfp: error: ")


def fail_if_compiled(monkeypatch):
    """Input errors must come before any compilation (and before a run directory is written)."""
    import gfp.run

    def init_states(*args, **kwargs):
        raise AssertionError("compiled before the input error")

    monkeypatch.setattr(gfp.run, "init_states", init_states)


@pytest.mark.parametrize(
    ("task", "message"),
    [
        (
            "no-such-task",
            "no dataset found for 'no-such-task': it is not an existing file, an "
            "OGBench singletask task or a local Minari dataset",
        ),
        ("cube-single-play-v0", "is a goal-conditioned OGBench dataset"),
        ("cube-single-noisy-singletask-task1-v7", "is not an OGBench singletask task"),
    ],
)
def test_unknown_task_is_one_line_before_anything_runs(task, message, tmp_path, monkeypatch,
                                                       capsys):  # fmt: skip
    fail_if_compiled(monkeypatch)
    with pytest.raises(SystemExit) as e:
        run_cli("train", "--task", task, "--dataset-dir", str(tmp_path), "--out",
                str(tmp_path / "run"), *SMALL)  # fmt: skip
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_dataset_environment_mismatch_is_one_line(tiny_ogbench_dir, tmp_path, monkeypatch, capsys):
    import dataclasses

    import gfp.run
    from gfp.data.load import load_dataset

    real = load_dataset(TINY_TASK, tiny_ogbench_dir)
    # the same task's data with observations cut to 5 numbers, as a file of another env would be
    wrong = dataclasses.replace(
        real, train={**real.train, "observations": real.train["observations"][:, :5]}, source="file"
    )
    monkeypatch.setattr(gfp.run, "load_dataset", lambda *a, **k: wrong)
    fail_if_compiled(monkeypatch)
    capsys.readouterr()  # the loader's own environment warnings
    with pytest.raises(SystemExit) as e:
        run_cli("train", "--task", TINY_TASK, "--out", str(tmp_path / "run"), *SMALL)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    obs = real.train["observations"].shape[1]
    assert (f"does not match its environment '{TINY_TASK}': observations have shape (5,) in the "
            f"dataset but ({obs},) in the environment") in err  # fmt: skip
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("flag", "value"), [("--frame-stack", "3"), ("--p-aug", "0.5")])
def test_image_settings_on_state_data_are_refused_before_anything_is_written(
    flag, value, tiny_ogbench_dir, tmp_path, monkeypatch, capsys
):
    fail_if_compiled(monkeypatch)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        run_cli("train", "--task", TINY_TASK, "--dataset-dir", str(tiny_ogbench_dir),
                "--out", str(out), *SMALL, flag, value)  # fmt: skip
    assert e.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("gfp: error: ") and "applies to pixel observations" in line, line
    assert not out.exists()  # no run directory, no config.json


def write_run_config(path, **changes):
    import dataclasses

    from gfp.agents import AGENTS

    path.mkdir(parents=True)
    config = {"task": TINY_TASK, "agent": "gfp", "seed": 0, "seeds": [0], "steps": 20,
              "preset": "cpu", "eval_every": 10, "eval_episodes": 2, "log_every": 10,
              "checkpoint_every": 10, "dataset_dir": None,
              "agent_config": dataclasses.asdict(AGENTS["gfp"].Config()),
              "agent_config_sources": {}, **changes}  # fmt: skip
    (path / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--steps", "50"], "these flags differ from them: --steps 50 (run: 20)"),
        (["--lr", "1e-2", "--seed", "3"], "--seed 3 (run: --seeds 0), --lr 0.01 (run: 0.0003)"),
        (["--agent", "fql"], "--agent fql (run: gfp)"),
        (["--overwrite"], "--resume and --overwrite exclude each other"),
    ],
)
def test_resume_refuses_flags_that_change_the_run(flags, message, tmp_path, capsys):
    write_run_config(tmp_path / "run")
    with pytest.raises(SystemExit) as e:
        run_cli("train", "--resume", str(tmp_path / "run"), *flags)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_resume_of_one_seed_of_a_multi_seed_run_points_to_the_run(tmp_path, capsys):
    write_run_config(tmp_path / "runs" / "seed1", seed=1, seeds=[0, 1])
    with pytest.raises(SystemExit):
        run_cli("train", "--resume", str(tmp_path / "runs" / "seed1"))
    assert f"resume the whole run: --resume {tmp_path / 'runs'}" in capsys.readouterr().err


def test_a_run_directory_in_use_is_refused(tmp_path):
    """A second process writing into a live run directory (even with --overwrite) is refused."""
    from gfp.errors import ConfigError
    from gfp.rundir import RunDir

    live = RunDir(tmp_path / "run")
    with pytest.raises(ConfigError, match="in use by another running gfp process"):
        RunDir(tmp_path / "run", overwrite=True)
    live.close()
    RunDir(tmp_path / "run", overwrite=True).close()  # free again once the first run closed


def test_commands_print_no_library_warnings(tiny_ogbench_dir):
    """Issue 10: glfw's 'DISPLAY' note and gymnasium's Box precision warnings (raised when OGBench
    builds an environment) never reach a user's terminal: gfp's own output only."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "PYTHONWARNINGS")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gfp.cli",
            "data",
            "info",
            "cube-single-noisy-singletask-task1-v0",
            "--dataset-dir",
            str(tiny_ogbench_dir),
        ],  # fmt: skip
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "transitions" in proc.stdout.lower() or "rows" in proc.stdout.lower()
    assert "warn" not in proc.stderr.lower() and "display" not in proc.stderr.lower(), proc.stderr
