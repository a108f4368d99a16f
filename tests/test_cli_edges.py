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
