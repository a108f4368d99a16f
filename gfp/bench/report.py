"""The human-readable report of a `run_bench` result."""

from __future__ import annotations

from typing import Any


def format_report(r: dict[str, Any]) -> str:
    """The human-readable report of `run_bench`'s result."""
    t, ev, dg, mem = r["training"], r["evaluation"], r["datagen"], r["memory"]
    f, mm = t["flops"], t["matmul"]
    lines = [
        f"gfp bench{' --quick' if r['quick'] else ''}: {r['machine']['cpu']}, "
        f"{r['machine']['cpu_count']} cores, {r['machine']['device']}, {r['date']}, "
        f"{r['seconds']:.0f} s; load average {r['loadavg_start']} -> {r['loadavg_end']}",
        "",
        "Targets (medians of interleaved repetitions; 'other load': cores other processes used):",
    ]
    for name, tgt in r["targets"].items():
        v = tgt["value"]
        mark = {True: "ok", False: "MISSED", None: "n/a"}[tgt["met"]]
        lines.append(
            f"  {name:28s} {v if v is None else f'{v:10.3f}'}  target {tgt['target']:8s} {mark}"
        )
    lines += ["", "Training updates at paper size (per update; fused path, 1 seed):"]
    for name, u in t["update"].items():
        lines.append(
            f"  {name:9s} {u['wall_s'] * 1e3:8.1f} ms wall  {u['cpu_s'] * 1e3:8.1f} ms CPU  "
            f"other load {u['foreign_cores']:.2f} cores, loadavg {u['loadavg1']}"
        )
    lines.append(
        f"  GFP/FQL time {t['gfp_over_fql_time']:.3f} (CPU time {t['gfp_over_fql_cpu_time']:.3f}); "
        f"FLOPs {f['gfp_over_fql_flops']:.3f}"
        + (f"; GFP y_VaBC/FQL {t['gfp_mean_over_fql_time']:.3f}" if "gfp_mean_over_fql_time" in t
           else "")
    )  # fmt: skip
    lines += ["", "Matmul FLOPs of one GFP update (analytic):"]
    for name, v in f["breakdown"].items():
        lines.append(f"  {v / 1e9:8.3f} GFLOP  {name}")
    xla = f["gfp_update_xla"]
    lines.append(
        f"  {f['gfp_update_analytic'] / 1e9:8.3f} GFLOP  total (jaxpr dot_generals "
        f"{f['gfp_update_jaxpr_dots'] / 1e9:.3f}; XLA cost analysis, all ops, "
        f"{'n/a' if xla is None else f'{xla / 1e9:.3f}'}); FQL {f['fql_update_analytic'] / 1e9:.3f}"
    )
    lines.append(
        f"  achieved {mm['achieved_gflops']:.1f} GFLOP/s; the same matmuls alone "
        f"{mm['rate_gflops']:.1f} GFLOP/s ({mm['ideal_update_s'] * 1e3:.1f} ms); efficiency "
        f"{t['flop_efficiency']:.1%}"
    )
    lines.append("  matmul shapes by share of FLOPs (lhs x rhs, count, GFLOP/s alone):")
    for row in mm["by_shape"][:8]:
        lines.append(
            f"    {row['lhs']} x {row['rhs']} contract {row['contract']} x{row['count']}: "
            f"{row['gflop']:.3f} GFLOP at {row['gflops']:.1f} GFLOP/s"
        )
    lines += [
        "",
        "Fused (K per lax.scan, batches sampled on the device) vs per-step (numpy batch):",
    ]
    for size, v in t["fused_vs_perstep"].items():
        lines.append(
            f"  {size:6s} fused {v['fused']['wall_s'] * 1e3:8.2f} ms  per-step "
            f"{v['perstep']['wall_s'] * 1e3:8.2f} ms  speedup {v['speedup']:.2f}x "
            f"(CPU time {v['cpu_speedup']:.2f}x), other load {v['fused']['foreign_cores']:.2f}"
        )
        if "scan_only" in v:
            lines.append(
                f"         reference, one-seed scan without vmap: "
                f"{v['scan_only']['wall_s'] * 1e3:8.2f} ms, {v['scan_only_speedup']:.2f}x per-step"
            )
    lines.append(
        f"  host work of the per-step path: {t['host_sampling_s'] * 1e3:.3f} ms per numpy batch"
    )
    lines += ["", "Vmapped seeds (time per fused call, same updates per seed):"]
    for size, v in t["vmap"].items():
        a = v["1 seed"]
        line = f"  {size:6s} 1 seed {a['wall_s'] * 1e3:8.1f} ms"
        for key, b in v.items():
            if key.endswith(" seeds"):
                n = key.split()[0]
                line += f";  {key} {b['wall_s'] * 1e3:8.1f} ms, ratio {v['ratio ' + n]:.2f}"
        lines.append(line + f" (other load {a['foreign_cores']:.2f})")
    lines += [
        "",
        f"Evaluation, {ev['episodes']} episodes of {ev['env']} ({ev['policy']}):",
    ]
    for name in ("single", "vec", "single_warm", "vec_warm"):
        v = ev[name]
        lines.append(
            f"  {name:12s} {v['wall_s']:7.1f} s  {v['steps_per_s']:7.0f} env steps/s, "
            f"other load {v['foreign_cores']:.2f}"
        )
    lines.append(
        f"  speedup {ev['speedup']:.2f}x warm (the target's figure), "
        f"{ev['speedup_cold']:.2f}x cold "
        f"({ev['num_envs']} envs, {ev['workers']} worker processes)"
    )
    lines += [
        "",
        f"Data generation: {dg['name']}, {dg['rows']} transitions, {dg['workers']} workers: "
        f"{dg['transitions_per_s']:.0f}/s ({dg['transitions_per_cpu_s']:.0f} per CPU-second), "
        f"other load {dg['foreign_cores']:.2f}",
        "",
        f"Memory: {mem['dataset_transitions']} transitions ({mem['dataset_gib']:.2f} GiB) + GFP "
        f"training {'x'.join(map(str, mem['hidden']))}: peak RSS {mem['peak_rss_gib']:.2f} GiB "
        f"(after the dataset {mem['peak_rss_after_dataset_gib']:.2f}); this process "
        f"{r['bench_peak_rss_gib']:.2f} GiB",
    ]
    return "\n".join(lines)
