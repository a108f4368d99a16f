"""`gfp bench`: the speed benchmark suite (training, evaluation, data generation, memory).

Every ratio is measured side by side in one run: the cases are interleaved A, B, B, A, A, B, ...
(which cancels a linear drift of the machine's load) and the median of each case is compared.
Every timed window records its wall time, this process's CPU time and the CPU time that OTHER
processes used meanwhile (from /proc/stat, in cores), so a result taken on a busy machine can be
recognised. What is measured, target by target (issue 5; BENCHMARKS.md has the latest results):

1. `gfp_over_fql_time`: time of one GFP update (standard target) over one FQL update, at paper
   size (obs 28, action 5, 4x512 networks, batch 256, M = 10), both on the fused path below.
   GFP with y_VaBC (target_agg='mean') is reported beside it (`gfp_mean_over_fql_time`).
2. `flop_efficiency`: achieved FLOP rate of the GFP update (matmul FLOPs counted analytically,
   `analytic_flops`, cross-checked with the update's jaxpr and XLA's cost analysis) over the
   rate of the same matmuls timed alone (every dot_general of the update's jaxpr, same shapes
   and dimension numbers, each in a jitted loop).
3. `fused_over_perstep_*`: the fused path (`gfp.engine.chunk.Chunk`: K updates per lax.scan
   call, batches sampled on the device) against the common per-step path (one jitted update per
   Python call, batch sampled with numpy on the host and passed in); per-step time / fused time.
4. `vmap4_over_1`: 4 seeds vmapped in one fused call (what `gfp train --seeds 0,1,2,3` runs)
   over 1 seed, same number of updates per seed.
5. `eval_vectorized_speedup`: `gfp.evaluate.evaluate` with its default pool (10 environments,
   stepped by worker processes, one batched policy call per step) against one environment at a
   time (num_envs=1, in this process), 50 episodes of cube-single, with the environments kept
   from a previous call (warm: every evaluation during `gfp train` after the first). The cold
   figure (environments built inside the timed call, what a one-off `gfp eval` pays once) is
   reported beside it as `eval_vectorized_speedup_cold`.
6. `datagen_transitions_per_s`: `gfp data generate` end to end with one worker per core.
7. `peak_rss_gib`: peak RSS of a separate process that builds a 1M-transition dataset and
   trains GFP at paper size on it through `gfp.run.fit` (the `gfp train` path).

`run_bench(quick)` returns one JSON-able dict; `format_report` renders it. `--quick` keeps every
measurement but with fewer repetitions, fewer fused updates and 20 evaluation episodes.

Modules: `config` (sizes, targets), `timing` (measured windows, interleaving), `paths` (the bench
agents, synthetic data, the fused and per-step training paths), `flops` (FLOP counts, matmul
rates), `training`, `evaluation`, `datagen` and `memory` (one section each), `report` (the text
report) and `suite` (all of it, `main`).
"""

from __future__ import annotations

from gfp.bench.config import FULL, GIB, QUICK, REQUIRED_FIELDS, TARGETS, BenchConfig
from gfp.bench.datagen import bench_datagen, datagen_throughput
from gfp.bench.evaluation import bench_eval
from gfp.bench.flops import (
    MatmulRate,
    analytic_flops,
    dot_flops,
    dot_ops,
    flop_check,
    update_args,
    xla_flops,
)
from gfp.bench.memory import memory_probe
from gfp.bench.paths import (
    Fused,
    PerStep,
    ScanOnly,
    make_bench_agent,
    synthetic_transitions,
    to_device,
)
from gfp.bench.report import format_report
from gfp.bench.suite import main, run_bench
from gfp.bench.timing import Window, interleave, own_cpu_seconds, summary, timed

__all__ = [
    "FULL",
    "GIB",
    "QUICK",
    "REQUIRED_FIELDS",
    "TARGETS",
    "BenchConfig",
    "Fused",
    "MatmulRate",
    "PerStep",
    "ScanOnly",
    "Window",
    "analytic_flops",
    "bench_datagen",
    "bench_eval",
    "datagen_throughput",
    "dot_flops",
    "dot_ops",
    "flop_check",
    "format_report",
    "interleave",
    "main",
    "make_bench_agent",
    "memory_probe",
    "own_cpu_seconds",
    "run_bench",
    "summary",
    "synthetic_transitions",
    "timed",
    "to_device",
    "update_args",
    "xla_flops",
]
