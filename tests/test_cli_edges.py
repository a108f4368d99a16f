"""The CLI's rough edges: misspelled names get the closest valid ones, help texts hold no source
notes, wrong arguments suggest the right command, multi-seed evaluation, the end-of-train table,
library warnings kept out of the output, the progress bar's scores, and one-line errors for bad
numbers, a closed pipe and a device out of memory."""

from __future__ import annotations

import pytest

from gfp.cli import main


def one_line_error(argv: list[str], capsys) -> str:
    """Run `gfp ARGV` expecting bad input: exit status 2 and one line `gfp: error: ...`."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert line.startswith("gfp: error: "), line
    assert "Traceback" not in captured.err and captured.out == ""
    return line


# ---- a. gfp presets: misspelled task or agent -----------------------------------------------
@pytest.mark.parametrize(
    ("task", "suggested"),
    [
        ("cube-single-noisy-singletsk-task1-v0", "cube-single-noisy-singletask-task1-v0"),
        ("hoper-medium-v2", "hopper-medium-v2"),
        ("D4RL/pen/humen-v2", "D4RL/pen/human-v2"),
        ("antmaze-larg-play-v2", "antmaze-large-play-v2"),
    ],
)
def test_presets_of_a_misspelled_task_names_the_closest(task, suggested, capsys):
    line = one_line_error(["presets", task], capsys)
    assert "did you mean" in line and suggested in line, line


def test_presets_of_a_misspelled_agent_names_the_closest(capsys):
    line = one_line_error(["presets", "cube-single-noisy-singletask-task1-v0", "--agent", "gfq"],
                          capsys)  # fmt: skip
    assert "unknown agent 'gfq'" in line and "did you mean gfp" in line, line


@pytest.mark.parametrize(
    "task",
    [
        "cube-single-noisy-singletask-task1-v0",  # a paper task: its rows
        "pointmaze-medium-navigate-singletask-task1-v0",  # a task outside the paper: defaults
        "hopper-medium-v2",  # D4RL, outside the paper
        "antmaze-large",  # an environment selector without version
        "my-own-data",  # a user's D4RL-style file name, close to no task
    ],
)
def test_presets_of_valid_names_still_print_the_table(task, capsys):
    main(["presets", task])
    out = capsys.readouterr().out
    assert out.startswith(f"agent gfp, preset paper, task {task}")
    assert "field" in out and "alpha" in out


# ---- b. help texts ----------------------------------------------------------------------------
def help_texts(monkeypatch) -> dict[str, str]:
    """`gfp [SUBCOMMAND...] --help` of the top level and of every subcommand (found by walking
    the subcommand lists), on a line wide enough that no word is broken."""
    import contextlib
    import io
    import re

    monkeypatch.setenv("COLUMNS", "1000")
    texts: dict[str, str] = {}
    todo: list[list[str]] = [[]]
    while todo:
        argv = todo.pop()
        buf = io.StringIO()
        out, err = contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf)
        with out, err, pytest.raises(SystemExit) as e:
            main([*argv, "--help"])
        assert e.value.code in (0, None), (argv, buf.getvalue())
        texts[" ".join(["gfp", *argv])] = buf.getvalue()
        todo += [[*argv, m] for m in re.findall(r"•\s+([\w-]+)", buf.getvalue())]
    return texts


def test_help_texts_hold_no_lint_comments_issue_notes_or_outside_files(monkeypatch):
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    texts = help_texts(monkeypatch)
    assert {"gfp", "gfp train", "gfp eval", "gfp data", "gfp data info", "gfp presets",
            "gfp sweep", "gfp report", "gfp export"} <= set(texts)  # fmt: skip
    forbidden = re.compile(r"noqa|\bUP0\d\d\b|type: ignore|fmt: skip|the issue|issue's|"
                           r"\bissue \d|github\.com|ZhangJL16|seohongpark", re.I)  # fmt: skip
    source_file = re.compile(r"[\w./-]+\.(?:py|md|ya?ml|sh|ipynb)\b")
    for command, text in texts.items():
        assert not forbidden.search(text), (command, forbidden.search(text)[0])
        for name in source_file.findall(text):
            # a source file, or a document named by its path, is one of this repository's (a
            # bare 'report.md' is a file the command writes)
            if "/" in name or name.endswith(".py"):
                assert (root / name).is_file(), (command, name)


# ---- c. gfp data info: the wrong argument -----------------------------------------------------
@pytest.mark.parametrize("name", ["missing.npz", "./missing", "/nonexistent/data.hdf5"])
def test_data_info_of_a_missing_path_suggests_the_commands(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    line = one_line_error(["data", "info", name], capsys)
    assert f"{name}: no such file or directory" in line
    assert "gfp data info TASK" in line and "gfp data generate NAME --out DIR" in line, line


def test_data_info_of_a_misspelled_task_names_the_closest(tmp_path, capsys):
    line = one_line_error(["data", "info", "hoper-medium-v2", "--dataset-dir", str(tmp_path)],
                          capsys)  # fmt: skip
    assert "did you mean hopper-medium-v2" in line, line


def test_data_info_of_a_run_directory_points_to_gfp_eval(tmp_path, capsys):
    import json

    (tmp_path / "run" / "seed0").mkdir(parents=True)
    config = {"task": "cube-single-noisy-singletask-task1-v0", "agent": "gfp"}
    (tmp_path / "run" / "seed0" / "config.json").write_text(json.dumps(config))
    line = one_line_error(["data", "info", str(tmp_path / "run")], capsys)
    assert f"`gfp eval {tmp_path / 'run'}`" in line
    assert "`gfp data info cube-single-noisy-singletask-task1-v0`" in line, line


# ---- d. gfp eval of a multi-seed run's folder -------------------------------------------------
SMALL = ["--actor-hidden-dims", "16", "16", "--value-hidden-dims", "16", "16", "--batch-size", "16"]


def tiny_train(data_dir, out, *flags: str) -> list[str]:
    from tests.conftest import TINY_TASK

    return ["train", "--task", TINY_TASK, "--dataset-dir", str(data_dir), "--steps", "10",
            "--log-every", "10", "--eval-episodes", "1", "--out", str(out), *SMALL,
            *flags]  # fmt: skip


@pytest.mark.slow
def test_eval_of_a_seeds_folder_evaluates_each_seed_and_prints_the_mean(
    tiny_ogbench_dir, tmp_path, capsys
):
    import json

    out = tmp_path / "runs"
    main(tiny_train(tiny_ogbench_dir, out, "--seeds", "0,1", "--no-eval"))
    capsys.readouterr()
    main(["eval", str(out), "--episodes", "1"])
    lines = capsys.readouterr().out.strip().splitlines()
    header, *rows = (line.split() for line in lines)
    assert header[0] == "run" and "actor/success" in header and "vabc/return" in header
    assert [r[0] for r in rows] == ["seed0", "seed1", "mean"]
    column = header.index("actor/return")
    saved = [json.loads((out / s / "eval_final.json").read_text()) for s in ("seed0", "seed1")]
    for row, result in zip(rows[:2], saved, strict=True):
        assert float(row[column]) == pytest.approx(result["actor/return"], abs=1e-4)
    mean = (saved[0]["actor/return"] + saved[1]["actor/return"]) / 2
    # the mean row's label is 'mean (2 seeds)': its numbers start two words later
    assert float(rows[2][column + 2]) == pytest.approx(mean, abs=1e-4)


# ---- e. the end of gfp train: a table, or JSON lines with --json ------------------------------
@pytest.mark.slow
def test_train_ends_with_a_table_of_scores_and_json_on_request(tiny_ogbench_dir, tmp_path, capsys):
    import json

    out = tmp_path / "run"
    main(tiny_train(tiny_ogbench_dir, out))
    summary = json.loads((out / "summary.json").read_text())
    lines = capsys.readouterr().out.strip().splitlines()
    assert not any("{" in line for line in lines)  # no JSON dump
    header = [cell.strip() for cell in lines[-3].split("  ") if cell.strip()]
    assert header == ["policy", "score", "final", "mean of last 3", "steps", "run dir"]
    rows = {line.split()[0]: line.split() for line in lines[-2:]}
    assert set(rows) == {"actor", "vabc"}
    for policy, row in rows.items():
        assert row[1] == "success" and row[4] == "10" and row[5] == str(out)
        assert float(row[2]) == pytest.approx(summary[f"{policy}/success_final"], abs=1e-4)
        assert float(row[3]) == pytest.approx(summary[f"{policy}/success_last3"], abs=1e-4)

    main(tiny_train(tiny_ogbench_dir, tmp_path / "other", "--no-eval", "--json"))
    last = capsys.readouterr().out.strip().splitlines()[-1]
    path, _, record = last.partition(": ")
    assert path == str(tmp_path / "other") and json.loads(record)["no_eval"] is True


# ---- g. the progress bar's scores -------------------------------------------------------------
class _NoUpdates:
    """A phase whose advance changes nothing: drive's boundary work alone."""

    def begin(self, states, at):
        return states

    def boundaries(self, start, end, every, at):
        return iter(range(start + every[0], end + 1, every[0]))

    def advance(self, states, before, step, active):
        return states, {}, {}


@pytest.mark.parametrize(
    ("result", "shown", "hidden"),
    [
        # a task scored by return (Minari, D4RL): success is NaN, the normalized score is shown
        ({"actor/success": float("nan"), "actor/return": 3.0, "actor/normalized_score": 42.0},
         ["actor/normalized_score=42"], ["nan", "actor/success", "actor/return"]),
        # OGBench: the success rate
        ({"actor/success": 0.5, "vabc/success": 0.25, "actor/return": -100.0},
         ["actor/success=0.5", "vabc/success=0.25"], ["actor/return"]),
    ],
)  # fmt: skip
def test_progress_bar_shows_finite_scores_and_prefers_the_normalized_score(
    result, shown, hidden, capfd
):
    from gfp.engine.driver import drive

    drive(_NoUpdates(), None, at=[0], end=2, log_every=1, on_eval=lambda step, states: result,
          check_finite=False, progress=True)  # fmt: skip
    bar = capfd.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    for text in shown:
        assert text in bar, bar
    for text in hidden:
        assert text not in bar, bar


# ---- f. library warnings kept out of the output -----------------------------------------------
_EVALUATE_WITH_VIDEO = """
import json, sys
import gymnasium
import numpy as np

def short_cube(**kwargs):
    import ogbench  # registers OGBench's environments (imports mujoco, and glfw)
    return gymnasium.make("cube-single-singletask-task1-v0", max_episode_steps=3, **kwargs)

# OGBench's cube environment, 3 steps an episode, under a plain Gymnasium id
gymnasium.register("GfpShortCube-v0", entry_point=short_cube)
from gfp.evaluate import evaluate

policy = lambda obs, key: np.zeros((len(obs), 5), np.float32)
result = evaluate(policy, "GfpShortCube-v0", episodes=2, workers=0, video_path=sys.argv[1])
print(json.dumps(result))
"""


@pytest.mark.slow
def test_evaluation_with_video_prints_no_library_warnings(tmp_path):
    """glfw's display note, gymnasium's Box casting notes and render-mode note, and JAX's fork
    notice (the video encoder's subprocess) stay out of stderr, outside the CLI too."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "PYTHONWARNINGS")}  # fmt: skip
    env |= {"MUJOCO_GL": "egl", "PYTHONPATH": str(root)}
    video = tmp_path / "actor.mp4"
    proc = subprocess.run([sys.executable, "-c", _EVALUATE_WITH_VIDEO, str(video)], cwd=root,
                          env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["length"] == 3
    assert video.stat().st_size > 0
    for note in ("DISPLAY", "precision lowered", "Casting input", "os.fork()", "render_mode",
                 "Warning"):  # fmt: skip
        assert note not in proc.stderr, proc.stderr


# ---- h. one-line errors: bad numbers, a closed pipe, a device out of memory -------------------
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "RUN", "--episodes", "0"], "--episodes must be >= 1, got 0"),
        (["eval", "RUN", "--episodes", "-3"], "--episodes must be >= 1, got -3"),
        (["eval", "RUN", "--seed", "-1"], "--seed -1 is out of range"),
        (["train", "--seed", str(2**31)], f"--seed {2**31} is out of range"),
        (["train", "--seed", "-1"], "--seed -1 is out of range"),
        (["train", "--seeds", f"0,{2**40}"], f"--seeds {2**40} is out of range"),
        (["train", "--seed", "1", "--seeds", "0,1"], "--seed 1 and --seeds 0,1 exclude each other"),
        (["train", "--seeds", ""], "--seeds is empty"),
        (["train", "--resume", "RUN", "--seed", str(2**31)], "is out of range"),
    ],
)
def test_bad_numbers_are_one_line_before_anything_is_written(argv, message, tmp_path,
                                                              monkeypatch, capsys):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    (tmp_path / "RUN").mkdir()
    line = one_line_error(argv, capsys)
    assert message in line, line
    assert [p.name for p in tmp_path.iterdir()] == ["RUN"] and not any((tmp_path / "RUN").iterdir())


def test_the_largest_seed_is_accepted(tmp_path, monkeypatch):
    import gfp.cli as cli

    made = {}
    monkeypatch.setattr("gfp.job.make_train_job", lambda *a, **k: made.update(k) or "job")
    main_args = cli._parse(["train", "--seed", str(2**31 - 1)])
    assert cli.train_job(main_args) == ("job", True) and made["seeds"] == [2**31 - 1]


@pytest.mark.parametrize("argv", [["train", "--help"], ["--help"], ["presets", "antmaze-large"]])
def test_output_into_a_closed_pipe_ends_quietly(argv):
    """`gfp train --help | head -1`: the reader has gone before gfp writes (its end of the pipe
    closed first, so the write fails whatever the pipe's buffer), and gfp exits without a
    traceback, as a process SIGPIPE stopped (128 + 13)."""
    import os
    import signal
    import subprocess
    import sys

    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", "gfp.cli", *argv], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=300)  # fmt: skip
    finally:
        os.close(write)
    assert proc.stderr == "", proc.stderr
    assert proc.returncode == 128 + signal.SIGPIPE


def test_xla_out_of_memory_is_one_line_naming_the_batch_size_and_the_bytes():
    """A real RESOURCE_EXHAUSTED from XLA (an allocation of 4 TiB) becomes a ConfigError naming
    the batch size, the seeds and the memory XLA asked for; other runtime errors pass through."""
    import jax
    import jax.numpy as jnp

    from gfp.errors import ConfigError
    from gfp.run import out_of_memory_error

    with pytest.raises(jax.errors.JaxRuntimeError) as caught:
        jnp.zeros((2**40,), jnp.float32).block_until_ready()
    assert "RESOURCE_EXHAUSTED" in str(caught.value)
    error = out_of_memory_error(caught.value, batch_size=4096, seeds=2)
    assert isinstance(error, ConfigError) and error.exit_code == 2
    text = str(error)
    assert "\n" not in text and "RESOURCE_EXHAUSTED" not in text
    assert "--batch-size 4096" in text and "2 seeds" in text and "4096 GiB" in text, text
    assert out_of_memory_error(RuntimeError("INTERNAL: something else"), 256, 1) is None
