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
    run_cli("train", "--task", TINY_TASK, "--dataset-dir", str(tiny_ogbench_dir), "--steps", "20",
            "--log-every", "10", "--eval-every", "20", "--eval-episodes", "2", "--out", str(out),
            "--alpha", "3.0", *SMALL)
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
    assert set(json.loads((out / "eval_final.json").read_text())) >= {"actor/success", "vabc/return"}

    # a finished run is not overwritten without --overwrite
    with pytest.raises(SystemExit) as e:
        run_cli("train", "--task", TINY_TASK, "--dataset-dir", str(tiny_ogbench_dir), "--steps",
                "10", "--out", str(out), *SMALL)
    assert e.value.code == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--agent", "nope"], "unknown agent 'nope'"),
        (["train", "--steps", "0"], "--steps must be positive"),
        (["train", "--steps", "10", "--eval-every", "20"], "--eval-every 20"),
        (["train", "--seeds", "1,x"], "--seeds"),
    ],
)
def test_errors_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        run_cli(*argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
