"""The benchmark suite's machinery at toy sizes (no timing assertions): the analytic FLOP count
against the update's jaxpr and XLA's cost analysis, and `gfp bench`'s JSON object."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys

import pytest

from gfp import bench

TOY = dataclasses.replace(
    bench.FULL,
    dataset_size=4096,
    paper_hidden=(8, 8),
    flow_steps=3,
    batch_size=32,
    reps=1,
    update_k=2,
    gfp_mean=False,
    matmul_seconds=0.001,
    fused_sizes=(("tiny", (8, 8), 2),),  # same as paper_hidden/update_k: no extra compile
    vmap_sizes=(("tiny", (8, 8), 2),),
    vmap_seeds=(4,),
    obs_dim=3,  # Pendulum: cheap to build and to step
    action_dim=1,
    eval_env="Pendulum-v1",
    eval_episodes=2,
    eval_num_envs=2,
    datagen_episodes=1,
    datagen_length=20,
    datagen_workers=1,
    memory_dataset_size=4096,
    memory_hidden=(8, 8),
    memory_steps=2,
)


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("gfp", {}),
        ("gfp", {"target_agg": "mean", "guidance_agg": "min"}),
        ("gfp", {"time_embedding": "scalar", "layer_norm": False}),
        ("fql", {}),
    ],
)
def test_analytic_flops_match_the_jaxpr(name, overrides):
    """Every matmul of one update is accounted for: the analytic count equals the FLOPs of the
    dot_generals JAX hands to XLA (scan lengths included), exactly."""
    cfg = dataclasses.replace(TOY, obs_dim=7, action_dim=3)
    agent = bench.make_bench_agent(name, (16, 12, 16), cfg, **overrides)
    ops = bench.dot_ops(agent.update, *bench.update_args(agent, cfg.batch_size))
    analytic = bench.analytic_flops(agent)
    assert sum(bench.dot_flops(k) * n for k, n in ops.items()) == sum(analytic.values())
    assert all(v > 0 for v in analytic.values())


def test_analytic_flops_against_xla_cost_analysis():
    """XLA counts every op (elementwise too), so it sits a little above the matmul count. (The
    backend's optimisations are off: they do not change the count, only the compile time.)"""
    cfg = dataclasses.replace(TOY, batch_size=64)
    agent = bench.make_bench_agent("gfp", (64, 64), cfg)
    check = bench.flop_check(agent, xla_backend_optimization_level=0)
    assert check["analytic"] == check["jaxpr_dots"]
    assert check["xla"] is not None
    assert check["analytic"] <= check["xla"] <= 1.5 * check["analytic"]


def test_paper_size_flop_ratio():
    """GFP adds two target-critic passes (4 member forwards) to FQL's update: Q(s, a) and
    Q(s, a_theta) inside g (gfp.agents.gfp)."""
    gfp = bench.analytic_flops(bench.make_bench_agent("gfp", (512,) * 4, bench.FULL))
    fql = bench.analytic_flops(bench.make_bench_agent("fql", (512,) * 4, bench.FULL))
    assert 1.10 < sum(gfp.values()) / sum(fql.values()) < 1.20


@pytest.mark.slow  # compiles every program of the suite: a minute idle, several under load
def test_suite_json_has_every_field(tmp_path):
    """`run_bench` end to end at toy sizes (in a subprocess, with XLA's backend optimisations
    off so the toy programs compile fast): every required field is there and finite, the report
    renders, and the JSON round-trips."""
    code = (
        "import json, sys; from tests.test_bench import TOY; import gfp.bench as b; "
        "json.dump(b.run_bench(cfg=TOY), open(sys.argv[1], 'w'), default=str)"
    )
    env = dict(os.environ, XLA_FLAGS="--xla_backend_optimization_level=0")
    out = tmp_path / "bench.json"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        [sys.executable, "-c", code, str(out)], cwd=root, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    for field in bench.REQUIRED_FIELDS:
        assert isinstance(result[field], int | float), field
        assert math.isfinite(result[field]) and result[field] > 0, field
    assert set(bench.TARGETS) <= set(result["targets"])
    flops = result["training"]["flops"]
    assert flops["gfp_update_analytic"] == flops["gfp_update_jaxpr_dots"] <= flops["gfp_update_xla"]
    assert "GFLOP" in bench.format_report(result)


def test_interleave_alternates_blocks_and_keeps_their_order():
    """A B B A ... by blocks: a cold run is always followed by its warm rerun (bench_eval)."""
    ran = []
    cases = {n: (lambda n=n: ran.append(n) or n.upper()) for n in ("a", "a_w", "b", "b_w")}
    outputs = {}
    windows = bench.interleave(cases, 3, block=2, outputs=outputs)
    assert ran == ["a", "a_w", "b", "b_w", "b", "b_w", "a", "a_w", "a", "a_w", "b", "b_w"]
    assert outputs == {"a": "A", "a_w": "A_W", "b": "B", "b_w": "B_W"}
    assert {n: len(w) for n, w in windows.items()} == {"a": 3, "a_w": 3, "b": 3, "b_w": 3}
    assert all(w.wall >= 0 and w.cpu >= 0 and w.foreign >= 0 for ws in windows.values() for w in ws)


def test_datagen_throughput_reports_rates_and_load(tmp_path):
    """The datagen figure of `gfp bench` and benchmarks/bench_datagen.py, at a toy size."""
    r = bench.datagen_throughput("cube-single-noisy-v0", 1, 20, workers=1, seed=0)
    assert r["rows"] == 40 and r["workers"] == 1  # 1 train + 1 val episode of 20 rows
    assert r["transitions_per_s"] == pytest.approx(40 / r["seconds"], rel=0.05)
    assert r["transitions_per_cpu_s"] == pytest.approx(40 / r["cpu_seconds"], rel=0.05)
    assert r["cpu_seconds"] > 0 and r["foreign_cores"] >= 0 and r["loadavg1"] >= 0
