"""Q-chunking (QC; Li, Zhou, Levine 2025) in gfp's tables: the `qc` preset resolves QC's values
with their sources, a sweep over horizon=1,5 builds both jobs, QC's released numbers load as
shipped, and `gfp report --paper` places them beside our fql and qc columns on QC's tasks."""

from __future__ import annotations

import csv

import pytest

from gfp import presets
from gfp.agents.configs import CONFIGS
from gfp.errors import ConfigError
from gfp.report import published as pub
from gfp.report import render
from gfp.report.main import online_tables, print_published
from gfp.report.scores import collect
from gfp.report.tables import per_env_table, per_task_tables
from gfp.sweep.plan import make_plan
from gfp.sweep.spec import SweepSpec, block_from_fields, parse_grid_arg
from tests.conftest import TINY_TASK
from tests.test_report import result_row

TASK = "cube-triple-play-singletask-task2-v0"  # the README's example task
QC_TASKS = {
    f"{env}-singletask-task{i}-v0" for env in presets.QC_ENVS for i in range(1, 6)
}  # fmt: skip


@pytest.fixture(autouse=True)
def real_registry(monkeypatch):
    if "qc" not in CONFIGS or "horizon" not in {f for f in CONFIGS["fql"].__dataclass_fields__}:
        pytest.skip("the qc agent and the horizon option are not in gfp/agents/configs.py")
    monkeypatch.setattr(presets, "_configs", lambda: CONFIGS)


# ---- the qc preset --------------------------------------------------------------------------
def test_qc_preset_gives_qc_fql_its_values_and_sources():
    config, sources = presets.resolve("fql", TASK, "qc")
    assert (config.horizon, config.action_chunking, config.alpha) == (5, True, 100.0)
    assert (config.batch_size, config.gamma) == (256, 0.99)
    assert sources["alpha"] == "QC README (QC-FQL command: --agent.alpha=100)"
    assert sources["horizon"] == "QC README (QC-FQL command: --horizon_length=5)"
    assert sources["batch_size"] == "QC code agents/acfql.py get_config"
    # without the preset, the GFP paper's FQL values (Tab. 13: alpha 300, batch 1024), one step
    paper, _ = presets.resolve("fql", TASK)
    assert (paper.horizon, paper.alpha, paper.batch_size) == (1, 300.0, 1024)
    text = presets.format_presets("fql", TASK, "qc")
    assert "replaces 300 (paper Tab. 13)" in text and "replaces 1024 (paper Tab. 13)" in text
    # elsewhere QC's code default, said to be unchecked against QC's appendix
    other, other_sources = presets.resolve("fql", "scene-play-singletask-task1-v0", "qc")
    assert other.alpha == 100.0 and "get_config (alpha=100)" in other_sources["alpha"]
    assert "was not checked here" in presets.format_presets("fql", "scene-play", "qc")


def test_qc_preset_gives_qc_its_best_of_n_and_gfp_a_stated_choice():
    config, sources = presets.resolve("qc", TASK, "qc")
    assert (config.horizon, config.action_chunking, config.num_samples) == (5, True, 32)
    assert sources["num_samples"] == "QC README (QC command: --agent.actor_num_samples=32)"
    gfp, gfp_sources = presets.resolve("gfp", TASK, "qc")
    assert (gfp.horizon, gfp.action_chunking) == (5, True)
    assert gfp_sources["horizon"].startswith("gfp choice")
    # GFP's own paper values stay (Tabs. 5 and 13)
    assert (gfp.alpha, gfp.eta, gfp.batch_size) == (1.0, 1e-5, 1024)
    assert gfp_sources["alpha"] == "paper Tab. 13"
    with pytest.raises(ConfigError, match="does not apply to agent 'iql'"):
        presets.resolve("iql", TASK, "qc")


def test_what_qc_does_that_the_preset_cannot_set_is_shown():
    scene = presets.format_presets("qc", "scene-play-singletask-task1-v0", "qc")
    assert "sparse rewards (README: --sparse=True)" in scene
    assert "1M offline steps, then 1M online steps" in scene
    quad = presets.format_presets("fql", "cube-quadruple-play-singletask-task3-v0", "qc")
    assert "100M-transition dataset" in quad and "--dataset-dir" in quad
    assert "then the qc preset's values for it" in quad  # not a GFP paper env, yet resolved
    assert presets.resolve("fql", "cube-quadruple-play-singletask-task3-v0", "qc")[0].horizon == 5
    assert "sparse" not in presets.format_presets("fql", TASK, "qc")
    assert "not set by" not in presets.format_presets("fql", TASK, "paper")


def test_cpu_preset_takes_a_horizon_flag():
    config, sources = presets.resolve("fql", TASK, "cpu", {"horizon": "5"})
    assert config.horizon == 5 and sources["horizon"] == "flag"
    assert config.actor_hidden_dims == (128, 128)
    qc, _ = presets.resolve("qc", TASK, "cpu", {"horizon": 1})
    assert qc.horizon == 1 and qc.value_hidden_dims == (128, 128)


# ---- gfp sweep --grid horizon=1,5 -----------------------------------------------------------
def test_grid_over_horizon_builds_a_job_per_horizon(tmp_path):
    key, values = parse_grid_arg("horizon=1,5")
    tiny = {"actor_hidden_dims": ["16x16"], "value_hidden_dims": ["16x16"], "batch_size": ["16"]}
    block = block_from_fields(
        {
            "tasks": TINY_TASK,
            "agents": "fql,qc",
            "seeds": "0",
            "preset": "cpu",
            "steps": 300,
            "grid": {key: values, **tiny},
        },
        "test",
    )
    plan = make_plan(SweepSpec([block]), tmp_path)
    built = sorted((u.job.agent, u.job.config.horizon) for u in plan.units)
    assert built == [("fql", 1), ("fql", 5), ("qc", 1), ("qc", 5)]
    assert "horizon" in plan.grid_keys
    dirs = {u.config_dir.name for u in plan.units}
    assert len(dirs) == 4 and all("horizon" in d for d in dirs)


# ---- QC's published numbers ---------------------------------------------------------------------
def test_qc_published_file_holds_its_tasks_and_methods():
    rows = pub.load_qc()
    assert {q.key for q in rows if q.kind == "task"} == QC_TASKS
    assert set(pub.qc_domains()) == set(presets.QC_ENVS)
    assert {q.method for q in rows} == set(pub.QC_METHODS)
    assert {q.source.split()[0] for q in rows} == {"ColinQiyangLi/qc@48283b4"}
    for q in rows:
        assert q.step == {"offline": 1_000_000, "online": 2_000_000}[q.phase]
        assert 0 <= q.ci_low <= q.mean + 1e-9 and q.mean <= q.ci_high + 1e-9 <= 100 + 1e-9
    for method in ("QC", "QC-FQL", "FQL"):  # the offline-to-online methods: both phases
        for task in QC_TASKS:
            assert pub.qc_task_value(task, method, "offline") is not None
            assert pub.qc_task_value(task, method, "online") is not None
    assert not [
        q for q in rows if q.method in ("RLPD", "RLPD-AC", "SUPE-GT") and q.phase != "online"
    ]
    # spot values of plot_data/ogbench-individual.pkl at 1M and 2M steps (x 100)
    assert pub.qc_task_value(TASK, "QC", "online").printed == "89.0 [81.5, 93.5]"
    assert pub.qc_task_value(TASK, "QC-FQL", "offline").printed == "0.5 [0.0, 1.5]"
    notes = {q.key: q.note for q in rows if q.kind == "domain" and q.method == "QC"}
    assert "sparse" in notes["scene-play"] and "100M" in notes["cube-quadruple-play"]
    with open(pub.QC_DATA_PATH, newline="") as f:
        assert tuple(next(csv.reader(f))) == pub.QC_COLUMNS


def test_qc_method_names_follow_the_chunking():
    assert pub.qc_method("fql", 5, True) == "QC-FQL"
    assert pub.qc_method("fql", 5, False) == "FQL-n"
    assert pub.qc_method("fql", 1, True) == "FQL"
    assert pub.qc_method("qc", 5, True) == "QC"
    assert pub.qc_method("qc", 1, True) is None  # QC's BFN draws N = 4
    assert pub.qc_method("gfp", 5, True) is None and pub.qc_method("fql", None, None) is None


# ---- gfp report --paper --------------------------------------------------------------------------
def _rows(task, phase="offline", total=10**6, **extra):
    out = []
    for seed in range(2):
        for agent, v in (("fql", 0.4), ("qc", 0.6)):
            row = result_row(task, agent, "actor", seed, total, v, total_steps=total, **extra)
            out.append({**row, "phase": phase})
    return out


def test_report_places_qc_numbers_beside_our_chunked_fql_and_qc():
    data = collect(_rows(TASK, horizon=5, action_chunking=True))
    (table,) = per_task_tables(data, paper=True)
    # horizon 5: QC's QC-FQL and QC beside ours, not the GFP paper's (1-step) FQL
    assert table.header == ["FQL", "FQL (QC paper: QC-FQL)", "QC", "QC (QC paper: QC)"]
    _, qc_fql, our_qc, qc = table.rows[0].cells
    assert qc_fql.paper and qc_fql.printed == "0.5 [0.0, 1.5]" and qc_fql.check is None
    assert qc.printed == pub.qc_task_value(TASK, "QC", "offline").printed
    assert our_qc.bold and not qc_fql.bold and not qc.bold  # published values never compete
    assert "Q-chunking's published success" in table.caption
    md = render.markdown(table)
    assert "FQL (QC paper: QC-FQL)" in md and "0.5 [0.0, 1.5]" in md
    env = per_env_table(data, paper=True)
    assert env.header == table.header
    assert env.rows[0].cells[1].printed == "0.5 [0.0, 1.5]"  # one task: its value


def test_report_one_step_fql_gets_both_papers_and_online_gets_qcs_online_numbers():
    data = collect(_rows(TASK, horizon=1, action_chunking=True))
    (table,) = per_task_tables(data, paper=True)
    assert table.header[:3] == ["FQL", "FQL (paper)", "FQL (QC paper: FQL)"]
    assert "QC (QC paper: QC)" not in table.header  # our qc at horizon 1 is not QC's
    assert table.rows[0].cells[2].printed == pub.qc_task_value(TASK, "FQL", "offline").printed
    online = collect(_rows(TASK, "online", 2 * 10**6, horizon=5), "online")
    (on_env, on_task) = online_tables(online, paper=True)
    assert on_task.header == ["FQL", "FQL (QC paper: QC-FQL)", "QC", "QC (QC paper: QC)"]
    assert on_task.rows[0].cells[1].printed == "89.1 [84.5, 93.0]"  # QC-FQL at 2M steps
    assert "(paper)" not in " ".join(on_env.header)  # the GFP paper has no online tables
    # a task QC does not report, or an unknown horizon: no QC column
    other = collect(_rows("cube-double-noisy-singletask-task1-v0", horizon=5))
    assert "QC paper" not in " ".join(per_task_tables(other, paper=True)[0].header)
    unknown = collect(_rows(TASK))  # run directories that are not on this machine
    assert "QC paper" not in " ".join(per_task_tables(unknown, paper=True)[0].header)


def test_paper_alone_prints_qcs_tables_labelled(capsys):
    print_published()
    out = capsys.readouterr().out
    assert "Published results (Q-chunking" in out
    assert "after 1M offline steps" in out and "after 1M offline + 1M online steps" in out
    assert "| Average (QC's 25 tasks) | 51.0 [49.7, 52.3] |" in out
