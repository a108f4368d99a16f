"""Target 7: peak RSS of `gfp train`'s path on a 1M-transition dataset, in its own process."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from typing import Any

from gfp.bench.config import GIB, BenchConfig
from gfp.bench.paths import make_bench_agent, synthetic_transitions


def peak_rss_gib() -> float:
    """This process's peak resident set size so far, in GiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


_PROBE_FIELDS = ("obs_dim", "action_dim", "batch_size", "flow_steps", "memory_dataset_size",
                 "memory_hidden", "memory_steps")  # fmt: skip


def memory_probe(args: dict[str, Any]) -> dict[str, Any]:
    """Target 7, run in its own process: a synthetic dataset of `memory_dataset_size`
    transitions, then GFP trained on it through gfp.run.fit (the `gfp train` path); returns the
    peak RSS. `args` holds the _PROBE_FIELDS of a BenchConfig."""
    import jax

    from gfp.data.load import Dataset
    from gfp.run import fit

    cfg = BenchConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in args.items()})
    t0 = time.perf_counter()
    train = synthetic_transitions(cfg.memory_dataset_size, cfg.obs_dim, cfg.action_dim)
    rss_data = peak_rss_gib()
    ds = Dataset(train=train, val=None, name="synthetic", source="npz", env_name=None)
    agent = make_bench_agent("gfp", cfg.memory_hidden, cfg)
    steps = cfg.memory_steps
    states = fit(agent, ds, steps=steps, seeds=[0], log_every=max(1, steps // 2), progress=False)
    jax.block_until_ready(states)
    return {
        "dataset_transitions": cfg.memory_dataset_size,
        "dataset_gib": sum(v.nbytes for v in train.values()) / GIB,
        "hidden": list(cfg.memory_hidden),
        "steps": steps,
        "peak_rss_after_dataset_gib": rss_data,
        "peak_rss_gib": peak_rss_gib(),
        "seconds": time.perf_counter() - t0,
    }


def start_memory_probe(cfg: BenchConfig) -> subprocess.Popen:
    """`memory_probe` in a new process (it compiles while this one does); see finish_..."""
    args = json.dumps({k: getattr(cfg, k) for k in _PROBE_FIELDS})
    code = (
        "import json; from gfp.bench.memory import memory_probe; "
        f"print(json.dumps(memory_probe(json.loads({args!r}))))"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish_memory_probe(proc: subprocess.Popen) -> dict[str, Any]:
    """Wait for the probe; its result (RuntimeError with its stderr if it failed)."""
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe failed (exit {proc.returncode}):\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])
