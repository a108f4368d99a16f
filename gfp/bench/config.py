"""Sizes, repetitions and targets of a benchmark run."""

from __future__ import annotations

import dataclasses

GIB = 1024**3

# The required fields of the JSON object, and the target of each (issue 5).
TARGETS: dict[str, tuple[str, float]] = {
    "gfp_over_fql_time": ("<=", 1.15),
    "flop_efficiency": (">=", 0.80),
    "fused_over_perstep_tiny": (">=", 1.5),
    "fused_over_perstep_min": (">=", 1.0),
    "vmap4_over_1": ("<=", 4.2),
    "eval_vectorized_speedup": (">=", 2.0),
    "datagen_transitions_per_s": (">=", 400.0),
    "peak_rss_gib": ("<", 4.0),
}
REQUIRED_FIELDS = (
    "gfp_over_fql_time",
    "flop_efficiency",
    "fused_over_perstep_tiny",
    "vmap4_over_1",
    "eval_vectorized_speedup",
    "datagen_transitions_per_s",
    "peak_rss_gib",
)


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Sizes and repetitions of one benchmark run (`QUICK`, `FULL`, or a toy one in tests)."""

    obs_dim: int = 28  # cube-single
    action_dim: int = 5
    batch_size: int = 256
    flow_steps: int = 10
    dataset_size: int = 1_000_000  # synthetic transitions, for the update timings
    paper_hidden: tuple[int, ...] = (512, 512, 512, 512)
    reps: int = 5  # interleaved repetitions of each timed case
    update_k: int = 8  # fused updates per timed call at paper size (GFP vs FQL, FLOPs)
    gfp_mean: bool = True  # also time GFP with the y_VaBC target
    matmul_seconds: float = 0.05  # rough length of each matmul timing loop
    # fused vs per-step: name -> (hidden dims, updates per timed window)
    fused_sizes: tuple[tuple[str, tuple[int, ...], int], ...] = (
        ("tiny", (64, 64), 400),
        ("cpu", (256, 256), 60),
        ("4x256", (256, 256, 256, 256), 20),
        ("paper", (512, 512, 512, 512), 8),
    )
    # vmapped seeds: name -> (hidden dims, updates per seed per timed window)
    vmap_sizes: tuple[tuple[str, tuple[int, ...], int], ...] = (
        ("paper", (512, 512, 512, 512), 8),
        ("cpu", (256, 256), 60),
    )
    vmap_seeds: tuple[int, ...] = (4,)  # seed counts timed against 1 seed
    scan_only_sizes: tuple[str, ...] = ("tiny", "paper")  # also time ScanOnly (a reference)
    eval_env: str = "cube-single-noisy-singletask-task1-v0"
    eval_episodes: int = 50
    eval_num_envs: int = 10
    eval_reps: int = 1
    datagen_name: str = "cube-single-noisy-v0"
    datagen_episodes: int = 8
    datagen_length: int = 1001
    datagen_workers: int | None = None  # None: one per core
    memory_dataset_size: int = 1_000_000
    memory_hidden: tuple[int, ...] = (512, 512, 512, 512)
    memory_steps: int = 8


FULL = BenchConfig()
QUICK = dataclasses.replace(
    FULL,
    reps=3,
    update_k=4,
    gfp_mean=False,
    fused_sizes=(("tiny", (64, 64), 200), ("paper", (512, 512, 512, 512), 4)),
    vmap_sizes=(("paper", (512, 512, 512, 512), 4),),
    scan_only_sizes=("tiny",),
    eval_episodes=20,
    datagen_episodes=2,
    memory_steps=4,
)


def for_accelerator(cfg: BenchConfig) -> BenchConfig:
    """On a GPU an update takes milliseconds: many more updates per timed call, and 8 vmapped
    seeds (issue 5, target 8: 1M updates in < 15 minutes, 8 seeds in < 2x the time of one)."""
    more = 25 if cfg.update_k < 8 else 50
    return dataclasses.replace(
        cfg,
        update_k=cfg.update_k * more,
        fused_sizes=tuple((n, h, k * more) for n, h, k in cfg.fused_sizes),
        vmap_sizes=((cfg.vmap_sizes[0][0], cfg.vmap_sizes[0][1], cfg.vmap_sizes[0][2] * more),),
        vmap_seeds=(4, 8),
    )
