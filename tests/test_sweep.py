"""gfp sweep and gfp tune: specs, planning against what a folder holds, status from files, datasets
made ready once, user presets; and on a local Ray (marked slow): a sweep that finishes with every
row in results.csv, survives a SIGKILLed worker with bit-identical parameters, retrains nothing
when run again, records a diverged run as failed while the others complete, and a tiny tuning.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from gfp import presets
from gfp.cli import main
from gfp.errors import ConfigError, DataError
from gfp.job import job_record
from gfp.sweep.plan import FAILED, WORKER, Plan, PlannedRun, make_plan, write_sweep_file
from gfp.sweep.spec import (
    Block,
    SweepSpec,
    block_from_fields,
    load_spec,
    parse_grid_arg,
    parse_seeds,
)
from gfp.sweep.status import Scanner, format_line, format_status
from tests.conftest import TINY_TASK

TINY = {"actor_hidden_dims": ["16x16"], "value_hidden_dims": ["16x16"], "batch_size": ["16"]}


def block(**fields) -> Block:
    base = {"tasks": TINY_TASK, "agents": "bc", "seeds": "0,1", "preset": "cpu", "steps": 300}
    return block_from_fields({**base, **fields}, "test")


# ---- specs --------------------------------------------------------------------------------------
def test_seeds_and_grid_arguments():
    assert parse_seeds("0-3,8") == [0, 1, 2, 3, 8]
    assert parse_seeds([100, 101]) == [100, 101]
    assert parse_grid_arg("gfp.alpha=0.3,1,3") == ("gfp.alpha", ["0.3", "1", "3"])
    for bad in ("3-1", "a", "1,,2"):
        with pytest.raises(ConfigError, match="seed"):
            parse_seeds(bad)
    with pytest.raises(ConfigError, match="KEY=V1,V2"):
        parse_grid_arg("alpha")
    with pytest.raises(ConfigError, match="empty value"):
        parse_grid_arg("alpha=1,")


def test_grid_keys_are_checked_against_each_agent():
    b = block(agents="gfp,fql,bc", grid={"gfp.alpha": [1, 3], "fql.alpha": [10], "lr": [1e-3]})
    grids = b.grid_for_agents()
    assert grids["gfp"] == {"alpha": [1, 3], "lr": [1e-3]}
    assert grids["fql"] == {"alpha": [10], "lr": [1e-3]}
    assert grids["bc"] == {"lr": [1e-3]}
    with pytest.raises(ConfigError, match="agent 'bc' has no option 'alpha'.*gfp.alpha"):
        block(agents="gfp,bc", grid={"alpha": [1]})
    with pytest.raises(ConfigError, match="scoped to agent 'fql', which this sweep does not run"):
        block(agents="gfp", grid={"fql.alpha": [1]})
    with pytest.raises(ConfigError, match="has no option 'alfa'"):
        block(agents="gfp", grid={"alfa": [1]})
    with pytest.raises(ConfigError, match="unknown agent 'gpf'"):
        block(agents="gpf")


def test_toml_spec_blocks_share_the_top_level(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text(
        'tasks = ["cube-single-noisy"]\nseeds = "0-2"\npreset = "cpu"\nsteps = 1000\n'
        "grid = { lr = [1e-3] }\n"
        '[[block]]\nagents = ["gfp"]\ngrid = { alpha = [0.3, 1], eta = 1e-3 }\n'
        '[[block]]\nagents = "fql"\nsteps = 500\ngrid = { alpha = [3, 10] }\n'
    )
    spec = load_spec(path, eval_episodes=5, grid={"batch_size": ["64"]})
    gfp_block, fql_block = spec.blocks
    assert gfp_block.seeds == [0, 1, 2] and gfp_block.steps == 1000 and fql_block.steps == 500
    assert gfp_block.grid == {"lr": [1e-3], "alpha": [0.3, 1], "eta": [1e-3], "batch_size": ["64"]}
    assert fql_block.grid == {"lr": [1e-3], "alpha": [3, 10], "batch_size": ["64"]}
    assert gfp_block.eval_episodes == fql_block.eval_episodes == 5
    assert spec.grid_keys == ["lr", "batch_size", "alpha", "eta"]
    path.write_text('tasks = "cube-single-noisy"\nagents = "gfp"\nseeds = [0]\nstep = 5\n')
    with pytest.raises(ConfigError, match="spec.toml: unknown field 'step'"):
        load_spec(path)


@pytest.mark.parametrize(
    "content, says",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "a binary file, not a TOML sweep spec"),
        (
            'tasks = "cube-single-noisy"\nagents = "gfp"  # r\xe9glage\n'.encode("latin-1"),
            "not UTF-8 text (byte 0xe9 on line 2); a TOML sweep spec must be UTF-8",
        ),  # fmt: skip
    ],
)
def test_a_binary_or_non_utf8_spec_is_one_line(tmp_path, capsys, content, says):
    spec = tmp_path / "spec.toml"
    spec.write_bytes(content)
    with pytest.raises(SystemExit) as e:
        main(["sweep", str(spec), "--out", str(tmp_path / "out")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err == f"gfp: error: {spec}: {says}\n"
    assert not (tmp_path / "out").exists()


# ---- planning -----------------------------------------------------------------------------------
def fake_run(job, seed: int, *, finished: bool, seeds=None) -> None:
    """A run directory as gfp train leaves it (config.json; summary.json once finished)."""
    run = job.out if len(job.seeds) == 1 else job.out / f"seed{seed}"
    run.mkdir(parents=True, exist_ok=True)
    record = job_record(job) | {"seed": seed}
    if seeds is not None:
        record["seeds"] = seeds
    (run / "config.json").write_text(json.dumps(record))
    if finished:
        (run / "summary.json").write_text("{}")


def test_plan_layout_is_stable_and_skips_what_the_folder_holds(tmp_path):
    spec = SweepSpec([block(grid={"lr": ["1e-3", "3e-4"], **TINY})])
    plan = make_plan(spec, tmp_path)
    assert [len(u.job.seeds) for u in plan.units] == [2, 2]
    assert len(plan.runs) == 4 and plan.grid_keys == ["lr", *TINY]
    a, b = plan.units
    assert a.config_dir.parent == tmp_path / TINY_TASK / "bc" and a.config_dir != b.config_dir
    assert a.job.run_dirs() == [a.config_dir / "seed0", a.config_dir / "seed1"]
    assert [u.config_dir for u in make_plan(spec, tmp_path).units] == [a.config_dir, b.config_dir]
    assert a.job.config.lr == 1e-3 and a.job.config.actor_hidden_dims == (16, 16)
    # configuration a finished; b has an unfinished run of seeds 0,1
    for s in (0, 1):
        fake_run(a.job, s, finished=True)
    fake_run(b.job, 0, finished=True)
    fake_run(b.job, 1, finished=False)
    again = make_plan(spec, tmp_path)
    assert [(u.config_dir, u.job.seeds, u.resume) for u in again.units] == [
        (b.config_dir, [0, 1], True)
    ]
    # more seeds: only the new ones run (a single new seed is its own run directory)
    more = make_plan(SweepSpec([block(seeds="0,1,2", grid={"lr": ["1e-3", "3e-4"], **TINY})]),
                     tmp_path)  # fmt: skip
    new = [(u.config_dir, u.job.seeds, u.job.out) for u in more.units if not u.resume]
    assert new == [
        (a.config_dir, [2], a.config_dir / "seed2"),
        (b.config_dir, [2], b.config_dir / "seed2"),
    ]
    # a failed seed is left alone, unless retried
    (b.config_dir / "seed1" / FAILED).write_text('{"error": "x"}')
    assert make_plan(spec, tmp_path).units == []
    retried = make_plan(spec, tmp_path, retry_failed=True).units
    assert [(u.job.seeds, u.clear) for u in retried] == [([1], [b.config_dir / "seed1"])]


def test_config_folders_are_named_after_their_values_and_found_by_id(tmp_path):
    from gfp.results import config_id
    from gfp.sweep.plan import NAME_MAX, config_dirname

    spec = SweepSpec([block(grid={"lr": ["1e-3", "3e-4"], "batch_size": ["16"], **TINY})])
    a, b = make_plan(spec, tmp_path).units
    cid = config_id(TINY_TASK, "bc", job_record(a.job)["agent_config"], 300)
    assert a.config_dir.name == f"lr=0.001-{cid}"  # the swept key only; the fixed ones are in cid
    assert b.config_dir.name.startswith("lr=0.0003-")
    assert {r.config_id for r in make_plan(spec, tmp_path).runs} >= {cid}
    # unsafe characters and long names stay one bounded, file-system safe folder name
    name = config_dirname({"encoder": "a/b c", "dims": (256,) * 40}, "0123456789")
    assert name.startswith("encoder=a_b_c") and name.endswith("-0123456789")
    assert len(name) <= NAME_MAX + 11 and "/" not in name and " " not in name
    assert config_dirname({}, "0123456789") == "0123456789"
    # a folder an older sweep made (the id alone) is found and resumed; so is one another block's
    # grid named otherwise (lr fixed here: named after every grid key, same configuration)
    old = tmp_path / "old"
    legacy = old / TINY_TASK / "bc" / cid
    fake_run(dataclasses.replace(a.job, out=legacy), 0, finished=True)
    fake_run(dataclasses.replace(a.job, out=legacy), 1, finished=False)
    (unit, _) = make_plan(spec, old).units
    assert unit.config_dir == legacy and unit.resume
    alone = SweepSpec([block(grid={"lr": ["1e-3"], "batch_size": ["16"], **TINY})])
    assert [u.config_dir for u in make_plan(alone, old).units] == [legacy]
    assert (
        make_plan(alone, tmp_path / "new")
        .units[0]
        .config_dir.name.startswith("lr=0.001,batch_size=16,actor_hidden_dims=16x16,")
    )


def test_a_folder_holds_one_setting_per_configuration(tmp_path):
    plan = make_plan(SweepSpec([block(grid=TINY)]), tmp_path)
    fake_run(plan.units[0].job, 0, finished=False)
    with pytest.raises(ConfigError, match="seed 0 .* with other settings \\(eval_episodes\\)"):
        make_plan(SweepSpec([block(grid=TINY, eval_episodes=7)]), tmp_path)


def test_bad_grid_value_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys):
    import gfp.sweep.executor as executor

    def never(*a, **k):
        raise AssertionError("nothing may run")

    monkeypatch.setattr(executor, "execute", never)
    out = tmp_path / "sweep"
    argv = ["sweep", "--tasks", TINY_TASK, "--agents", "gfp", "--seeds", "0", "--grid",
            "alpha=0.3,-1", "--out", str(out)]  # fmt: skip
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "alpha=-1" in err and "alpha = -1.0 is out of range (must be >= 0)" in err
    assert not out.exists()


def test_without_ray_the_sweep_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(SystemExit) as e:
        main(["sweep", "--tasks", TINY_TASK, "--agents", "bc", "--seeds", "0", "--out",
              str(tmp_path)])  # fmt: skip
    assert e.value.code == 2
    assert "pip install 'gfp[sweep]'" in capsys.readouterr().err


# ---- status from files --------------------------------------------------------------------------
def test_status_counts_runs_and_estimates_the_time_left(tmp_path):
    from gfp.sweep.worker import _proc_start

    runs = [PlannedRun(tmp_path / "t" / "bc" / "c" / f"seed{s}", "t", "bc", "c", s, 1000, {})
            for s in range(5)]  # fmt: skip
    write_sweep_file(Plan(tmp_path, runs, [], []), "test")
    done, failed, running, dead, pending = (r.path for r in runs)
    for p in (done, failed, running, dead):
        p.mkdir(parents=True)
    (done / "summary.json").write_text("{}")
    (failed / FAILED).write_text(json.dumps({"error": "training diverged at step 7"}))
    for p in (running, dead):
        (p / "metrics.csv").write_text("step,loss,time/updates_per_s\n200,1.0,50\n400,0.5,100\n4")
    me = {"host": os.uname().nodename, "pid": os.getpid(), "proc_start": _proc_start(os.getpid())}
    (running / WORKER).write_text(json.dumps(me))
    (dead / WORKER).write_text(json.dumps(me | {"proc_start": "1"}))  # the pid was reused
    snap = Scanner(tmp_path).scan()
    assert snap.counts == {"done": 1, "running": 1, "failed": 1, "pending": 2}
    assert snap.updates_per_s == 100
    assert snap.updates_left == 600 + 600 + 1000
    assert snap.eta_s == pytest.approx(22.0)
    assert format_line(snap) == (
        "1/5 done, 1 running, 1 failed, 2 pending | 100 updates/s | ETA 0m22s"
    )
    text = format_status(tmp_path)
    assert "seed1: training diverged at step 7" in text
    assert f"seed2  step 400/1000  100/s  {me['host']}:{me['pid']}" in text  # running
    assert "resumes them from their checkpoints):\n  t/bc/c/seed3  step 400/1000" in text


def test_the_progress_line_shows_the_latest_evaluation(tmp_path):
    from gfp.sweep.worker import _proc_start

    runs = [PlannedRun(tmp_path / "t" / "bc" / "c" / f"seed{s}", "t", "bc", "c", s, 1000, {})
            for s in range(3)]  # fmt: skip
    write_sweep_file(Plan(tmp_path, runs, [], []), "test")
    done, running, stopped = (r.path for r in runs)
    header = "step,actor/success,actor/return,vabc/success,eval_seconds\n"
    evals = {
        done: header + "500,0.2,1,0.1,3\n1000,0.6,2,0.3,3\n",
        running: header + "200,0.1,1,0.1,3\n400,0.4,1,0.5,3\n600,0.9",  # half a row: not yet
        stopped: header + "800,1.0,1,1.0,3\n",  # newest file, but not done or running
    }
    for i, (p, text) in enumerate(evals.items()):
        p.mkdir(parents=True)
        (p / "eval.csv").write_text(text)
        os.utime(p / "eval.csv", (1e9 + i, 1e9 + i))
    (done / "summary.json").write_text("{}")
    me = {"host": os.uname().nodename, "pid": os.getpid(), "proc_start": _proc_start(os.getpid())}
    (running / WORKER).write_text(json.dumps(me))
    line = format_line(Scanner(tmp_path).scan())
    assert line.endswith(" | last eval: actor success 0.4 at step 400 (t/bc/c/seed1)")
    (running / WORKER).unlink()  # it stopped: the done run's evaluation is the latest
    assert format_line(Scanner(tmp_path).scan()).endswith(
        " | last eval: actor success 0.6 at step 1000 (t/bc/c/seed0)"
    )
    # a task scored by return (no success): the return is shown
    (done / "eval.csv").write_text("step,actor/success,actor/return\n1000,nan,12.5\n")
    assert "last eval: actor return 12.5 at step 1000" in format_line(Scanner(tmp_path).scan())


# ---- datasets -----------------------------------------------------------------------------------
def test_datasets_are_made_once_before_the_runs(tmp_path, tiny_ogbench_dir, monkeypatch):
    import gfp.datagen.generate as generate
    from gfp.sweep.datasets import prepare_datasets

    calls = []

    def fake_generate(name, episodes, out_dir, **kw):
        calls.append((name, episodes))
        for f in Path(tiny_ogbench_dir).glob("*.npz"):
            shutil.copy(f, Path(out_dir) / f.name)

    monkeypatch.setattr(generate, "generate", fake_generate)
    data = tmp_path / "data"
    data.mkdir()
    plan = make_plan(SweepSpec([block(tasks="cube-single-noisy", dataset_dir=str(data))]),
                     tmp_path / "sweep")  # fmt: skip
    assert len(plan.units) == 5  # five tasks, one dataset
    assert prepare_datasets([u.job for u in plan.units], tmp_path, episodes=3, log=print) == 1
    assert calls == [("cube-single-noisy-v0", 3)]
    assert prepare_datasets([u.job for u in plan.units], tmp_path, log=print) == 0  # recorded
    stuck = make_plan(SweepSpec([block(tasks="antmaze-large-navigate-singletask-task1-v0",
                                       dataset_dir=str(data))]), tmp_path / "s2")  # fmt: skip
    with pytest.raises(DataError, match="cannot be generated offline.*download"):
        prepare_datasets([u.job for u in stuck.units], tmp_path, log=print)
    assert len(calls) == 1


# ---- user presets and tuning ---------------------------------------------------------------------
def test_user_preset_rows_apply_with_their_source(tmp_path, monkeypatch):
    from gfp.sweep.tune import write_winner

    table = tmp_path / "presets.csv"
    monkeypatch.setenv(presets.USER_PRESETS_ENV, str(table))
    task2 = "cube-single-noisy-singletask-task2-v0"
    with pytest.raises(ConfigError, match="unknown preset 'tuned'"):
        presets.resolve("gfp", task2, "tuned")
    write_winner(table, "tuned", "gfp", "cube-single-noisy", {"alpha": 3.0, "eta": 1e-2},
                 "gfp tune X 2026-01-01: 0.5", "grid")  # fmt: skip
    write_winner(table, "tuned", "gfp", "cube-single-noisy", {"alpha": 0.1, "eta": 1e-4},
                 "gfp tune Y 2026-01-02: 0.6", "grid")  # fmt: skip
    config, sources = presets.resolve("gfp", task2, "tuned")
    assert (config.alpha, config.eta) == (0.1, 1e-4)
    assert sources["alpha"] == "gfp tune Y 2026-01-02: 0.6"
    paper, _ = presets.resolve("gfp", task2, "paper")
    assert config.gamma == paper.gamma and config.target_agg == paper.target_agg
    other, _ = presets.resolve("gfp", "scene-play-singletask-task1-v0", "tuned")
    assert other.alpha == presets.resolve("gfp", "scene-play-singletask-task1-v0")[0].alpha
    assert len(table.read_text().splitlines()) == 3  # header + the second winner's two rows
    by_file, _ = presets.resolve("gfp", task2, str(table))
    assert by_file.alpha == 0.1
    with pytest.raises(ConfigError, match="does not apply to agent 'fql'"):
        presets.resolve("fql", task2, "tuned")
    table.write_text(table.read_text().replace("tuned,", "paper,"))
    with pytest.raises(ConfigError, match="a user preset needs a name of its own"):
        presets.resolve("gfp", task2, "tuned")


def test_tuning_score_is_last_three_evals_over_seeds_then_tasks(tmp_path):
    from gfp.sweep.tune import best, score_settings

    runs, rows = [], []
    succ = {("t1", 1.0): [0.0, 0.2, 0.4, 0.6], ("t2", 1.0): [0.1, 0.1, 0.1, 0.1],
            ("t1", 0.1): [0.9, 0.9, 0.9, 0.0], ("t2", 0.1): [0.0, 0.0, 0.0, 0.3]}  # fmt: skip
    for (task, alpha), values in succ.items():
        for seed in (100, 101):
            path = tmp_path / task / f"a{alpha}" / f"seed{seed}"
            runs.append(PlannedRun(path, task, "gfp", "c", seed, 40, {"alpha": alpha}))
            for i, v in enumerate(values, start=1):
                rows.append(
                    {
                        "run_dir": str(path),
                        "policy": "actor",
                        "step": 10 * i,
                        "finished": True,
                        "benchmark": "ogbench",
                        "success": v + seed % 2,
                    }
                )
                rows.append(rows[-1] | {"policy": "vabc", "success": 5.0})  # fmt: skip
    scores = {s.values["alpha"]: s.score for s in score_settings(rows, Plan(tmp_path, runs, [], []),
                                                                 ["alpha"])}  # fmt: skip
    # alpha 1: t1 (0.2+0.4+0.6)/3 = 0.4, t2 0.1; +0.5 for the seed average -> 0.75
    assert scores[1.0] == pytest.approx(0.75)
    assert scores[0.1] == pytest.approx((0.6 + 0.1) / 2 + 0.5)
    # the last three evaluations decide (the final ones alone would favour alpha 1)
    assert best(score_settings(rows, Plan(tmp_path, runs, [], []), ["alpha"])).values == {
        "alpha": 0.1
    }
    unfinished = [r | {"finished": False} if "a0.1" in r["run_dir"] else r for r in rows]
    scored = score_settings(unfinished, Plan(tmp_path, runs, [], []), ["alpha"])
    assert math.isnan(next(s.score for s in scored if s.values["alpha"] == 0.1))


def test_tuning_refuses_evaluation_seeds(tmp_path):
    from gfp.sweep.executor import Options
    from gfp.sweep.tune import run_tune

    with pytest.raises(ConfigError, match=r"tuning seeds \[3\] are evaluation seeds"):
        run_tune("cube-single-noisy", "gfp", block(seeds="3,100"), Options(), out=tmp_path,
                 presets_file=tmp_path / "p.csv")  # fmt: skip


# ---- on a local Ray -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A local Ray of 2 CPUs for this module; its workers share one XLA compilation cache."""
    import ray  # the sweep extra, which dev includes

    cache = str(tmp_path_factory.mktemp("jax_cache"))
    old = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = cache  # the workers inherit it from the raylet
    import logging

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)  # fmt: skip
    yield ray
    ray.shutdown()
    if old is None:
        os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
    else:
        os.environ["JAX_COMPILATION_CACHE_DIR"] = old


SCHEDULE = {"steps": 300, "eval_every": 150, "eval_episodes": 1, "log_every": 50,
            "checkpoint_every": 50}  # fmt: skip


def sweep_block(data_dir, **fields) -> Block:
    return block(dataset_dir=str(data_dir), **SCHEDULE, **fields)


def kill_after_first_checkpoint(run: Path, record: dict) -> threading.Thread:
    """Kill (SIGKILL) the worker training `run` once it has a checkpoint and is not finished."""

    def watch():
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if (run / "checkpoint.msgpack").exists() and (run / WORKER).exists():
                if (run / "summary.json").exists():
                    return
                pid = json.loads((run / WORKER).read_text())["pid"]
                os.kill(pid, signal.SIGKILL)
                record.update(pid=pid, finished=(run / "summary.json").exists())
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_sweep_finishes_survives_sigkill_and_retrains_nothing(local_ray, tiny_ogbench_dir,
                                                               tmp_path):  # fmt: skip
    from gfp.results import read_results_csv
    from gfp.sweep import Options, run_sweep

    spec = SweepSpec([sweep_block(tiny_ogbench_dir, agents="bc,flow_bc",
                                  grid={"lr": ["1e-3", "3e-4"], **TINY})])  # fmt: skip
    out = tmp_path / "sweep"
    victim = next(u for u in make_plan(spec, out).units if u.job.agent == "bc"
                  and u.job.config.lr == 1e-3)  # fmt: skip
    killed: dict = {}
    watcher = kill_after_first_checkpoint(victim.config_dir / "seed0", killed)
    outcome = run_sweep(spec, out, Options(progress=False))
    watcher.join(timeout=1)
    assert killed.get("pid") and killed["finished"] is False, "the worker was not killed mid-run"
    log = (victim.config_dir / "worker.log").read_text()
    assert "resuming seeds [0, 1]" in log and log.count("gfp sweep worker pid") == 2
    assert outcome.counts == {"done": 8, "running": 0, "failed": 0, "pending": 0}
    rows = read_results_csv(out / "results.csv")
    got = sorted((r["agent"], r["lr"], r["seed"], r["step"]) for r in rows)
    assert got == sorted((a, lr, s, t) for a in ("bc", "flow_bc") for lr in (1e-3, 3e-4)
                         for s in (0, 1) for t in (150, 300))  # fmt: skip
    assert all(r["finished"] and r["policy"] == "actor" for r in rows)
    # the same command again: nothing is trained, nothing rewritten
    params = sorted(out.rglob("params.msgpack"))
    stamps = [p.stat().st_mtime_ns for p in params]
    again = run_sweep(spec, out, Options(progress=False))
    assert again.tasks == 0 and again.counts["done"] == 8
    assert [p.stat().st_mtime_ns for p in params] == stamps
    # the killed run's parameters equal those of an uninterrupted run of the same job
    ref = tmp_path / "reference"
    alone = SweepSpec([sweep_block(tiny_ogbench_dir, grid={"lr": ["1e-3"], **TINY})])
    assert run_sweep(alone, ref, Options(progress=False)).counts["done"] == 2
    # the same configuration's folder there (found by its id: its name lists that sweep's grid)
    (theirs_dir,) = (ref / victim.config_dir.parent.relative_to(out)).glob(
        f"*{victim.config_dir.name.rsplit('-', 1)[-1]}"
    )
    for seed in (0, 1):
        mine = victim.config_dir / f"seed{seed}" / "params.msgpack"
        theirs = theirs_dir / f"seed{seed}" / "params.msgpack"
        assert mine.read_bytes() == theirs.read_bytes()


@pytest.mark.slow
def test_a_diverged_run_is_recorded_failed_and_the_others_complete(local_ray, tiny_ogbench_dir,
                                                                    tmp_path, capsys):  # fmt: skip
    out = tmp_path / "sweep"
    argv = ["sweep", "--tasks", TINY_TASK, "--agents", "bc", "--seeds", "0", "--preset", "cpu",
            "--grid", "lr=1e30,1e-3", "--grid", "actor_hidden_dims=16x16", "--grid",
            "value_hidden_dims=16x16", "--steps", "100", "--log-every", "50", "--eval-every",
            "0", "--eval-episodes", "1", "--dataset-dir", str(tiny_ogbench_dir), "--out",
            str(out)]  # fmt: skip
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 1
    assert "1 of 2 runs failed" in capsys.readouterr().err
    failed = [json.loads(p.read_text()) for p in out.rglob(FAILED)]
    assert len(failed) == 1 and failed[0]["kind"] == "DivergenceError"
    assert (
        failed[0]["error"].startswith("training diverged at step")
        and "\n" not in failed[0]["error"]
    )
    done = list(out.rglob("summary.json"))
    assert len(done) == 1 and json.loads((done[0].parent / "config.json").read_text())[
        "agent_config"]["lr"] == 1e-3  # fmt: skip
    assert "training diverged" in format_status(out)


@pytest.mark.slow
def test_tune_writes_the_winner_as_a_user_preset(local_ray, tiny_ogbench_dir, tmp_path, capsys):
    table = tmp_path / "presets.csv"
    out = tmp_path / "tune"
    main(["tune", "cube-single-noisy", "--tasks", "task1", "--seeds", "100", "--alphas", "1,0.1",
          "--etas", "1e-2", "--grid", "actor_hidden_dims=16x16", "--grid",
          "value_hidden_dims=16x16", "--grid", "batch_size=16", "--grid", "flow_steps=2",
          "--preset", "cpu", "--steps", "100", "--log-every", "50", "--eval-every", "50",
          "--eval-episodes", "1", "--dataset-dir", str(tiny_ogbench_dir), "--out", str(out),
          "--presets-file", str(table)])  # fmt: skip
    printed = capsys.readouterr().out
    configs = [json.loads(p.read_text()) for p in out.rglob("config.json")]
    settings = sorted((c["agent_config"]["alpha"], c["agent_config"]["eta"]) for c in configs)
    alpha_best = next(a for a, e in settings if e == 1e-2)
    assert settings == sorted([(1.0, 1e-3), (0.1, 1e-3), (alpha_best, 1e-2)])
    assert all(c["seed"] == 100 for c in configs)
    rows = presets.load_user_table(table)
    assert {(r.preset, r.agent, r.tasks, r.key) for r in rows} == {
        ("tuned", "gfp", "cube-single-noisy", "alpha"),
        ("tuned", "gfp", "cube-single-noisy", "eta"),
    }
    assert all(r.source.startswith(f"gfp tune {out} ") for r in rows)
    won = {r.key: r.value for r in rows}
    assert won["alpha"] == alpha_best and f"alpha {won['alpha']:g}, eta {won['eta']:g}" in printed


@pytest.mark.slow
def test_every_node_must_see_the_sweep_folder(local_ray, tmp_path):
    from gfp.sweep.executor import check_shared_storage, invisible_nodes

    check_shared_storage(local_ray, tmp_path)  # one node, which sees it
    assert list(tmp_path.iterdir()) == []  # the probe is gone
    missing = invisible_nodes(local_ray, tmp_path / "elsewhere")
    assert len(missing) == 1 and os.uname().nodename in missing[0]


@pytest.mark.slow
def test_ctrl_c_checkpoints_running_runs_and_stops(tiny_ogbench_dir, tmp_path):
    import subprocess

    out = tmp_path / "sweep"
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    argv = ["sweep", "--tasks", TINY_TASK, "--agents", "bc", "--seeds", "0", "--preset", "cpu",
            "--grid", "actor_hidden_dims=16x16", "--grid", "value_hidden_dims=16x16",
            "--steps", "1000000", "--log-every", "50", "--eval-every", "0", "--eval-episodes",
            "1", "--dataset-dir", str(tiny_ogbench_dir), "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "gfp.cli", *argv], env=env, cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 600
    while not list(out.rglob("metrics.csv")):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no training within 10 minutes"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-3000:]
    assert "sweep stopped: running runs wrote a checkpoint" in err
    assert "Token authentication" not in err  # Ray's warning when its auth mode is left unset
    (run,) = [p.parent for p in out.rglob("config.json")]
    from gfp.rundir import RunDir

    step = RunDir(run, create=False).checkpoint_step()
    assert step is not None and 0 < step < 1_000_000
    assert not (run / "summary.json").exists() and not (run / FAILED).exists()
    assert "1 pending" in format_status(out) and (out / "results.csv").exists()


# ---- one budget per task (issue 20, item 2) ------------------------------------------------------
def test_a_sweep_folder_keeps_one_budget_per_task(tmp_path):
    spec = SweepSpec([block(agents="bc", grid=TINY)])
    (unit,) = make_plan(spec, tmp_path).units
    for s in (0, 1):
        fake_run(unit.job, s, finished=True)
    # another --steps, preset or eval episodes: refused in one line naming the setting
    for fields, setting in (
        ({"steps": 10}, "steps 300 .*this sweep asks steps 10"),
        ({"preset": "paper"}, "preset cpu .*this sweep asks preset paper"),
        ({"eval_episodes": 5}, "eval_episodes 50 .*this sweep asks eval_episodes 5"),
    ):
        other = SweepSpec([block(agents="flow_bc", grid=TINY, **fields)])  # another agent too
        with pytest.raises(ConfigError, match=f"holds {TINY_TASK} runs with {setting}") as e:
            make_plan(other, tmp_path)
        assert "\n" not in str(e.value) and "another --out" in str(e.value)
        assert make_plan(other, tmp_path / "elsewhere").units  # its own folder: fine
    # the same budget: another agent joins; two budgets within one spec are refused too
    assert make_plan(SweepSpec([block(agents="flow_bc", grid=TINY)]), tmp_path).units
    two = SweepSpec([block(grid=TINY), block(agents="flow_bc", grid=TINY, steps=10)])
    with pytest.raises(ConfigError, match="two budgets \\(steps 300 and 10\\)"):
        make_plan(two, tmp_path / "new")
