"""The result store (gfp/results.py): run directories -> results.csv rows, and back."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from gfp.errors import DataError
from gfp.results import (
    RESULT_COLUMNS,
    build_results,
    config_id,
    find_run_dirs,
    infer_grid_keys,
    read_results,
    read_results_csv,
    rows_from_run_dir,
    task_env_benchmark,
    write_results_csv,
)

GFP_HEADER = (
    "step,actor/success,actor/return,actor/length,vabc/success,vabc/return,vabc/length,eval_seconds"
)


def make_run(
    path: Path,
    *,
    task: str = "cube-double-noisy-singletask-task2-v0",
    agent: str = "gfp",
    seed: int = 0,
    steps: int = 3000,
    alpha: float = 1.0,
    eta: float = 1e-3,
    evals: str | None = None,
    finished: bool = True,
    timing: str | None = "post",
) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    cfg = {
        "task": task,
        "agent": agent,
        "seed": seed,
        "steps": steps,
        "preset": "cpu",
        "agent_config": {"alpha": alpha, "eta": eta, "actor_hidden_dims": [128, 128]},
        "dataset": {"env_name": task},
    }
    if timing is not None:
        cfg["success_timing"] = timing
    (path / "config.json").write_text(json.dumps(cfg))
    if evals is None:
        evals = (
            f"{GFP_HEADER}\n1000,0.1,-190.0,200.0,0.0,-200.0,200.0,3.5\n"
            "2000,0.5,-150.0,180.0,0.25,-170.0,190.0,3.1\n"
        )
    (path / "eval.csv").write_text(evals)
    if finished:
        (path / "summary.json").write_text("{}")
    return path


def test_rows_of_a_run_directory(tmp_path):
    run = make_run(tmp_path / "run")
    rows = rows_from_run_dir(run, grid_keys=("alpha", "eta"))
    assert list(rows[0]) == [*RESULT_COLUMNS, "alpha", "eta"]
    assert [(r["step"], r["policy"]) for r in rows] == [
        (1000, "actor"),
        (1000, "vabc"),
        (2000, "actor"),
        (2000, "vabc"),
    ]
    r = rows[2]
    assert r["task"] == "cube-double-noisy-singletask-task2-v0"
    assert (r["env"], r["benchmark"]) == ("cube-double-noisy", "ogbench")
    assert (r["agent"], r["seed"], r["total_steps"], r["finished"]) == ("gfp", 0, 3000, True)
    assert (r["success"], r["return"]) == (0.5, -150.0)
    assert math.isnan(r["normalized_score"])  # OGBench has none
    assert (r["success_timing"], r["alpha"], r["eta"]) == ("post", 1.0, 1e-3)
    assert rows[3]["success"] == 0.25


def test_unknown_columns_and_a_half_written_last_row_are_harmless(tmp_path):
    evals = (
        "step,phase,actor/success,actor/return,actor/length,eval_seconds\n"
        "1000,offline,0.2,-10.0,200,1.0\n"
        "2000,online,0.4,-8.0,200,1.0\n"
        "3000,onl"  # killed while appending
    )
    run = make_run(tmp_path / "r", agent="rebrac", evals=evals, finished=False)
    rows = rows_from_run_dir(run)
    assert [(r["step"], r["policy"], r["success"]) for r in rows] == [
        (1000, "actor", 0.2),
        (2000, "actor", 0.4),
    ]
    assert rows[0]["finished"] is False


def test_a_short_row_in_the_middle_is_an_error_naming_its_line(tmp_path):
    evals = f"{GFP_HEADER}\n1000,0.1,-190.0\n2000,0.5,-150.0,180.0,0.25,-170.0,190.0,3.1\n"
    run = make_run(tmp_path / "r", evals=evals)
    with pytest.raises(DataError, match=r"eval.csv, line 2: 3 fields"):
        rows_from_run_dir(run)


def test_config_id_is_shared_by_seeds_and_changes_with_the_config():
    base = dict(task="t", agent="gfp", agent_config={"alpha": 1.0, "eta": 0.001}, steps=10)
    a = config_id(**base)
    assert len(a) == 10 and int(a, 16) >= 0
    # key order does not matter (canonical JSON)
    assert config_id(**{**base, "agent_config": {"eta": 0.001, "alpha": 1.0}}) == a
    assert config_id(**{**base, "agent_config": {"alpha": 3.0, "eta": 0.001}}) != a
    assert config_id(**{**base, "steps": 20}) != a


def test_seeds_of_one_config_share_the_id(tmp_path):
    make_run(tmp_path / "sweep" / "a" / "seed0", seed=0)
    make_run(tmp_path / "sweep" / "a" / "seed1", seed=1)
    make_run(tmp_path / "sweep" / "b" / "seed0", seed=0, alpha=3.0)
    rows = build_results(tmp_path / "sweep")
    ids = {(Path(r["run_dir"]).parent.name, r["seed"]): r["config_id"] for r in rows}
    assert ids[("a", 0)] == ids[("a", 1)] != ids[("b", 0)]


@pytest.mark.parametrize(
    ("task", "env", "bench"),
    [
        ("cube-double-noisy-singletask-task2-v0", "cube-double-noisy", "ogbench"),
        ("visual-cube-single-play-singletask-task1-v0", "visual-cube-single-play", "ogbench-pixel"),
        ("pointmaze-medium-navigate-singletask-task1-v0", "pointmaze-medium-navigate", "ogbench"),
        ("antmaze-large-play-v2", "antmaze-large-play", "d4rl"),
        ("pen-human-v1", "pen-human", "d4rl"),
        ("D4RL/pen/human-v2", "D4RL/pen/human", "minari"),
        ("mujoco/hopper/simple-v0", "mujoco/hopper/simple", "minari"),
    ],
)
def test_env_key_and_benchmark(task, env, bench):
    assert task_env_benchmark(task) == (env, bench)


def test_find_run_dirs_at_any_depth(tmp_path):
    a = make_run(tmp_path / "s" / "x" / "seed0")
    b = make_run(tmp_path / "s" / "x" / "seed1", seed=1)
    c = make_run(tmp_path / "s" / "deep" / "er" / "run")
    (tmp_path / "s" / ".hidden").mkdir()
    make_run(tmp_path / "s" / ".hidden" / "run")
    assert find_run_dirs(tmp_path / "s") == sorted([a, b, c])
    assert find_run_dirs(a) == [a]


def test_infer_grid_keys_ignores_per_task_presets():
    cfgs = [
        {"task": "t1", "agent": "gfp", "agent_config": {"alpha": 1, "eta": 0.1, "gamma": 0.99}},
        {"task": "t1", "agent": "gfp", "agent_config": {"alpha": 3, "eta": 0.1, "gamma": 0.99}},
        # another task with another preset gamma: not a swept key
        {"task": "t2", "agent": "gfp", "agent_config": {"alpha": 1, "eta": 0.1, "gamma": 0.995}},
    ]
    assert infer_grid_keys(cfgs) == ["alpha"]


def test_results_csv_round_trip(tmp_path):
    make_run(tmp_path / "runs" / "seed0")
    make_run(tmp_path / "runs" / "seed1", seed=1, finished=False, timing=None)
    rows = build_results(tmp_path / "runs", grid_keys=("alpha", "actor_hidden_dims"))
    out = tmp_path / "results.csv"
    write_results_csv(out, rows)
    header = out.read_text().splitlines()[0].split(",")
    assert header == [*RESULT_COLUMNS, "alpha", "actor_hidden_dims"]
    back = read_results_csv(out)
    assert len(back) == len(rows) == 8
    for a, b in zip(rows, back, strict=True):
        for k in a:
            if isinstance(a[k], float) and math.isnan(a[k]):
                assert math.isnan(b[k]), k
            else:
                assert a[k] == b[k], k
    assert back[-1]["finished"] is False and back[-1]["success_timing"] == ""
    assert back[0]["actor_hidden_dims"] == [128, 128]


def test_read_results_from_each_kind_of_source(tmp_path):
    r0 = make_run(tmp_path / "sweep" / "a" / "seed0")
    make_run(tmp_path / "sweep" / "a" / "seed1", seed=1, alpha=3.0)
    from_sweep = read_results(tmp_path / "sweep")
    assert len(from_sweep) == 8 and from_sweep[0]["alpha"] in (1.0, 3.0)  # inferred grid key
    write_results_csv(tmp_path / "results.csv", from_sweep)
    assert len(read_results(tmp_path / "results.csv")) == 8
    # a folder holding only a results.csv (a copied sweep summary)
    (tmp_path / "only").mkdir()
    write_results_csv(tmp_path / "only" / "results.csv", from_sweep)
    assert len(read_results(tmp_path / "only")) == 8
    # one run directory, and the same run given twice, counted once
    assert len(read_results(r0)) == 4
    assert len(read_results([tmp_path / "sweep", r0])) == 8


def test_empty_or_unreadable_sources_are_one_line_errors_naming_them(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no gfp run directories"):
        read_results(tmp_path / "empty")
    with pytest.raises(DataError, match=r"nowhere: no such file"):
        read_results(tmp_path / "nowhere")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(DataError, match=r"bad/config.json: not valid JSON"):
        read_results(bad)
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"x.csv: not a gfp results.csv"):
        read_results(tmp_path / "x.csv")
    fresh = make_run(tmp_path / "fresh", evals="")  # started, not evaluated yet
    with pytest.raises(DataError, match=r"fresh: the runs there have no evaluations yet"):
        read_results(fresh)
    for err in ("empty", "nowhere"):
        with pytest.raises(DataError) as e:
            read_results(tmp_path / err)
        assert "\n" not in str(e.value)


# ---- phases (issue 20, item 1) ----------------------------------------------------------------
ONLINE_EVALS = (
    "step,phase,actor/success,actor/return,actor/length,eval_seconds\n"
    "1000,offline,0.1,-10.0,200,1.0\n"
    "2000,offline,0.2,-9.0,200,1.0\n"
    "3000,offline,0.3,-8.0,200,1.0\n"
    "3500,online,0.9,-2.0,200,1.0\n"
    "4000,online,1.0,-1.0,200,1.0\n"
)


def make_online_run(path: Path, **kw) -> Path:
    run = make_run(path, agent="rebrac", evals=ONLINE_EVALS, **kw)
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(cfg | {"online_steps": 1000}))
    return run


def test_rows_name_their_phase_and_the_phase_budget(tmp_path):
    rows = rows_from_run_dir(make_online_run(tmp_path / "r"))
    assert [(r["step"], r["phase"], r["total_steps"]) for r in rows] == [
        (1000, "offline", 3000),
        (2000, "offline", 3000),
        (3000, "offline", 3000),
        (3500, "online", 4000),
        (4000, "online", 4000),
    ]
    # an eval.csv without the column (offline-only runs): offline; back from results.csv as well
    (plain,) = {r["phase"] for r in rows_from_run_dir(make_run(tmp_path / "p"))}
    assert plain == "offline"
    write_results_csv(tmp_path / "results.csv", rows)
    assert [r["phase"] for r in read_results_csv(tmp_path / "results.csv")] == [
        r["phase"] for r in rows
    ]


def test_a_results_csv_from_before_the_phase_column_reads_as_offline(tmp_path):
    rows = rows_from_run_dir(make_run(tmp_path / "r"))
    text = results_csv_text_without(rows, "phase")
    (tmp_path / "old.csv").write_text(text)
    assert {r["phase"] for r in read_results_csv(tmp_path / "old.csv")} == {"offline"}


def results_csv_text_without(rows, column):
    import csv
    import io

    from gfp.results import results_csv_text

    reader = list(csv.DictReader(io.StringIO(results_csv_text(rows))))
    buf = io.StringIO()
    names = [c for c in reader[0] if c != column]
    w = csv.DictWriter(buf, names, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(reader)
    return buf.getvalue()


@pytest.mark.slow
def test_an_online_run_summary_names_the_phase_of_every_score(tiny_ogbench_dir, tmp_path):
    from gfp.cli import main
    from tests.conftest import TINY_TASK

    out = tmp_path / "run"
    small = ["--actor-hidden-dims", "16", "16", "--value-hidden-dims", "16", "16",
             "--batch-size", "16", "--flow-steps", "2"]  # fmt: skip
    main(["train", "--task", TINY_TASK, "--dataset-dir", str(tiny_ogbench_dir), *small,
          "--steps", "4", "--online-steps", "4", "--eval-every", "2", "--eval-episodes", "1",
          "--out", str(out)])  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    scores = [k for k in summary if k.endswith(("_final", "_last3"))]
    assert scores and all(k.split("/")[0] in ("offline", "online") for k in scores)
    assert "offline/actor/success_last3" in summary and "online/actor/success_last3" in summary
    rows = rows_from_run_dir(out)
    assert {(r["step"], r["phase"]) for r in rows} == {
        (2, "offline"), (4, "offline"), (6, "online"), (8, "online")
    }  # fmt: skip
    # provenance (item 4): the commit in config.json's versions, and in the result rows
    cfg = json.loads((out / "config.json").read_text())
    assert "git_commit" in cfg["versions"]
    assert {r["git_commit"] for r in rows} == {cfg["versions"]["git_commit"] or ""}
    assert {r["dataset_size"] for r in rows} == {str(cfg["dataset"]["size"])}
