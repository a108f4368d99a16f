"""Targets 1-4: GFP vs FQL, FLOP efficiency, fused vs per-step, vmapped seeds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gfp.bench.config import BenchConfig
from gfp.bench.flops import MatmulRate, analytic_flops, flop_check
from gfp.bench.paths import (
    Fused,
    PerStep,
    ScanOnly,
    host_sampling_seconds,
    make_bench_agent,
    synthetic_transitions,
    to_device,
)
from gfp.bench.timing import interleave, log, summary


def bench_training(cfg: BenchConfig) -> dict[str, Any]:
    """Targets 1-4: GFP vs FQL, FLOP efficiency, fused vs per-step, vmapped seeds."""
    import jax

    log(f"synthetic dataset: {cfg.dataset_size} transitions")
    host = synthetic_transitions(cfg.dataset_size, cfg.obs_dim, cfg.action_dim)
    dev = to_device(host)
    jax.block_until_ready(dev)
    res: dict[str, Any] = {"compile_s": {}}

    # ---- compile everything first (no timing runs while compiling) ------------------------
    agents = {
        "fql": make_bench_agent("fql", cfg.paper_hidden, cfg),
        "gfp": make_bench_agent("gfp", cfg.paper_hidden, cfg),
    }
    if cfg.gfp_mean:
        agents["gfp_mean"] = make_bench_agent("gfp", cfg.paper_hidden, cfg, target_agg="mean")
    fused: dict[str, Fused] = {}
    for name, agent in agents.items():
        log(f"compiling the fused {name} update at paper size (K={cfg.update_k})")
        fused[name] = Fused(agent, dev, 1, cfg.update_k)
        res["compile_s"][f"fused/{name}"] = round(fused[name].compile_s, 1)

    sizes: dict[str, tuple[Fused, PerStep]] = {}
    scan_only: dict[str, ScanOnly] = {}
    for size, hidden, k in cfg.fused_sizes:
        agent = make_bench_agent("gfp", hidden, cfg)
        if tuple(hidden) == tuple(cfg.paper_hidden) and k == cfg.update_k:
            f = fused["gfp"]
        else:
            log(f"compiling the fused GFP update, {size} size (K={k})")
            f = Fused(agent, dev, 1, k)
            res["compile_s"][f"fused/gfp/{size}"] = round(f.compile_s, 1)
        log(f"compiling the per-step GFP update, {size} size")
        p = PerStep(agent, host, k)
        res["compile_s"][f"perstep/gfp/{size}"] = round(p.compile_s, 1)
        sizes[size] = (f, p)
        if size in cfg.scan_only_sizes:
            log(f"compiling the one-seed scan without vmap (a reference), {size} size")
            scan_only[size] = ScanOnly(agent, dev, k)

    vmaps: dict[str, tuple[Fused, list[Fused]]] = {}
    for size, hidden, k in cfg.vmap_sizes:
        agent = make_bench_agent("gfp", hidden, cfg)
        one = next(
            (f for s, h, kk in cfg.fused_sizes if tuple(h) == tuple(hidden) and kk == k
             for f in [sizes[s][0]]),
            None,
        )  # fmt: skip
        if one is None:
            log(f"compiling the fused GFP update, {size} size, 1 seed (K={k})")
            one = Fused(agent, dev, 1, k)
        many = []
        for n in cfg.vmap_seeds:
            log(f"compiling the fused GFP update, {size} size, {n} seeds (K={k})")
            many.append(Fused(agent, dev, n, k))
            res["compile_s"][f"fused/gfp/{size}/{n}seeds"] = round(many[-1].compile_s, 1)
        vmaps[size] = (one, many)

    log("FLOP count (analytic, jaxpr, XLA) and the matmul loops of the same shapes")
    paper_perstep = next((p for s, h, _ in cfg.fused_sizes if s == "paper" for p in [sizes[s][1]]),
                         None)  # fmt: skip
    flops = flop_check(agents["gfp"], paper_perstep.compiled if paper_perstep else None)
    rate = 40e9 if jax.default_backend() == "cpu" else 2e13  # sizes the matmul timing loops
    matmul = MatmulRate(flops.pop("ops"), cfg.matmul_seconds, rate)
    fql_flops = sum(analytic_flops(agents["fql"]).values())
    res["flops"] = {
        "gfp_update_analytic": flops["analytic"],
        "gfp_update_jaxpr_dots": flops["jaxpr_dots"],
        "gfp_update_xla": flops["xla"],
        "fql_update_analytic": fql_flops,
        "gfp_over_fql_flops": flops["analytic"] / fql_flops,
        "breakdown": flops["breakdown"],
    }
    if cfg.gfp_mean:
        res["flops"]["gfp_mean_update_analytic"] = sum(analytic_flops(agents["gfp_mean"]).values())
    res["host_sampling_s"] = host_sampling_seconds(host, agents["gfp"].batch_keys, cfg.batch_size)
    return {
        "res": res,
        "fused": fused,
        "sizes": sizes,
        "scan_only": scan_only,
        "vmaps": vmaps,
        "matmul": matmul,
    }


def time_training(cfg: BenchConfig, prep: dict[str, Any]) -> dict[str, Any]:
    """Time what `bench_training` compiled, every comparison interleaved; adds to its results."""
    res, fused, matmul = prep["res"], prep["fused"], prep["matmul"]
    k = cfg.update_k

    log(f"timing GFP vs FQL at paper size: {cfg.reps} interleaved reps of {k} updates each")
    cases: dict[str, Callable[[], Any]] = dict(fused) | {"matmul": matmul}
    windows = interleave(cases, cfg.reps)
    upd = {name: summary(windows[name], k) for name in fused}
    res["update"] = upd
    res["gfp_over_fql_time"] = upd["gfp"]["wall_s"] / upd["fql"]["wall_s"]
    res["gfp_over_fql_cpu_time"] = upd["gfp"]["cpu_s"] / upd["fql"]["cpu_s"]
    if "gfp_mean" in upd:
        res["gfp_mean_over_fql_time"] = upd["gfp_mean"]["wall_s"] / upd["fql"]["wall_s"]
    f = res["flops"]
    ideal = matmul.ideal_seconds()
    achieved = f["gfp_update_analytic"] / upd["gfp"]["wall_s"]
    matmul_rate = f["gfp_update_jaxpr_dots"] / ideal
    res["matmul"] = {
        "ideal_update_s": ideal,
        "rate_gflops": matmul_rate / 1e9,
        "achieved_gflops": achieved / 1e9,
        "by_shape": matmul.table(),
        "foreign_cores": summary(windows["matmul"])["foreign_cores"],
    }
    res["flop_efficiency"] = achieved / matmul_rate
    res["fql_achieved_gflops"] = f["fql_update_analytic"] / upd["fql"]["wall_s"] / 1e9

    res["fused_vs_perstep"] = {}
    for size, (fu, ps) in prep["sizes"].items():
        log(f"timing fused vs per-step, {size}: {cfg.reps} interleaved reps of {fu.k} updates")
        cases = {"fused": fu, "perstep": ps}
        if size in prep["scan_only"]:
            cases["scan_only"] = prep["scan_only"][size]
        w = interleave(cases, cfg.reps)
        a, b = summary(w["fused"], fu.k), summary(w["perstep"], ps.k)
        res["fused_vs_perstep"][size] = {
            "fused": a,
            "perstep": b,
            "speedup": b["wall_s"] / a["wall_s"],
            "cpu_speedup": b["cpu_s"] / a["cpu_s"],
        }
        if "scan_only" in w:
            c = summary(w["scan_only"], fu.k)
            res["fused_vs_perstep"][size] |= {
                "scan_only": c,
                "scan_only_speedup": b["wall_s"] / c["wall_s"],
            }
    speedups = {s: r["speedup"] for s, r in res["fused_vs_perstep"].items()}
    res["fused_over_perstep_tiny"] = speedups.get("tiny")
    res["fused_over_perstep_min"] = min(speedups.values()) if speedups else None

    res["vmap"] = {}
    for size, (one, many) in prep["vmaps"].items():
        counts = [f.seeds for f in many]
        log(f"timing {counts} vmapped seeds vs 1, {size}: {cfg.reps} reps of {one.k} updates")
        w = interleave({"1": one} | {str(f.seeds): f for f in many}, cfg.reps)
        a = summary(w["1"], one.k)
        res["vmap"][size] = {"1 seed": a}
        for f in many:
            b = summary(w[str(f.seeds)], f.k)
            res["vmap"][size] |= {
                f"{f.seeds} seeds": b,
                f"ratio {f.seeds}": b["wall_s"] / a["wall_s"],
            }
    for n in (4, 8):
        res[f"vmap{n}_over_1"] = next(
            (v[f"ratio {n}"] for v in res["vmap"].values() if f"ratio {n}" in v), None
        )
    return res
