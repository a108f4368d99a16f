"""Benchmark the online fine-tuning loop (gfp/engine/online.py) in online steps per second.

One online step is one environment step plus one update (E environments step in parallel and E
updates follow, so steps/s counts both). Measured as `gfp train --online-steps` runs it: the
cpu-preset agent on cube-single-noisy task1, the replay buffer starting as the dataset with the
default capacity (DEFAULT_BUFFER_SIZE), the Collector of gfp.engine.online with its worker pool.
Compilation and the first steps are excluded (warm-up); the agent is untrained (speed does not
depend on it). For context it also times the two parts alone: the environment steps (the same pool,
the same actions) and the jitted collection step (add + E updates + next actions) on fixed inputs.

Wall-clock, so load on the machine lowers it: the load average is printed with the figures.

    .venv/bin/python benchmarks/bench_online.py                     # E = 1 and E = 2, 300 steps
    .venv/bin/python benchmarks/bench_online.py --envs 1 --steps 1000 --json
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import jax
import numpy as np

from gfp.agents import make_agent
from gfp.agents.base import ObsSpec
from gfp.data.load import load_dataset
from gfp.engine.chunk import init_states
from gfp.engine.online import Collector
from gfp.engine.placement import make_sampler
from gfp.evaluate import EnvPool, default_workers, env_spec
from gfp.job import default_data_dir
from gfp.presets import resolve
from gfp.settings import DEFAULT_BUFFER_SIZE

TASK = "cube-single-noisy-singletask-task1-v0"


def measure(dataset, agent, n_envs: int, steps: int, warmup: int, capacity: int) -> dict:
    """Online steps/s of the collection loop, and of its environment and device parts alone."""
    pool = EnvPool(env_spec(dataset.env_name, "post"), default_workers(n_envs))  # gfp train default
    try:
        col = Collector(
            agent,
            pool,
            make_sampler(dataset.train, agent.batch_keys).data,
            seeds=[0],
            n_envs=n_envs,
            capacity=capacity,
            balanced=False,
            reward_shift=dataset.reward_shift,
        )
        states = col.reset(init_states(agent, [0]))
        for _ in range(warmup // n_envs):  # compiles, fills the pipes
            states = col.step(states, [True], 0)[0]
        t0 = time.perf_counter()
        for _ in range(steps // n_envs):
            states = col.step(states, [True], 0)[0]
        loop = time.perf_counter() - t0

        # the environments alone: the same pool stepped with the pending actions
        jobs = [(j, col.actions[0, j]) for j in range(n_envs)]
        t0 = time.perf_counter()
        for _ in range(steps // n_envs):
            for k, (_, _, term, trunc, _) in pool.step(jobs):
                if term or trunc:
                    pool.reset([(k, 0)])
        env = time.perf_counter() - t0

        # the device part alone: the jitted collection step on fixed rows
        e = n_envs
        rows = {k: np.zeros((1, e, *s), d) for k, (s, d) in col.specs.items()}
        fill, active = np.full((1, e), -1, np.int32), np.ones(1, bool)
        obs = col.observations()
        t0 = time.perf_counter()
        for _ in range(steps // n_envs):
            states, col.buffers, *out = col.collect(
                states, col.buffers, col.offline, rows, fill, active, obs
            )
            jax.device_get(out)
        device = time.perf_counter() - t0
    finally:
        pool.close()
    n = steps // n_envs * n_envs
    return {
        "online_envs": n_envs,
        "steps": n,
        "online_steps_per_s": n / loop,
        "env_only_steps_per_s": n / env,
        "device_only_steps_per_s": n / device,
        "workers": default_workers(n_envs),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--envs", default="1,2", help="comma-separated values of --online-envs")
    p.add_argument("--steps", type=int, default=300, help="timed online steps per setting")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--agent", default="gfp")
    p.add_argument("--preset", default="cpu")
    p.add_argument("--dataset-dir", type=Path, default=default_data_dir())
    p.add_argument("--buffer-size", type=int, default=DEFAULT_BUFFER_SIZE)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    a = p.parse_args()
    warnings.simplefilter("ignore")

    dataset = load_dataset(TASK, a.dataset_dir)
    config, _ = resolve(a.agent, TASK, a.preset, None)
    agent = make_agent(
        a.agent,
        config,
        obs_spec=ObsSpec.of(dataset.train["observations"]),
        action_dim=dataset.act_dim,
    )
    capacity = max(a.buffer_size, dataset.size + 1)
    load_before = os.getloadavg()
    results = [
        measure(dataset, agent, int(e), a.steps, a.warmup, capacity) for e in a.envs.split(",")
    ]
    report = {
        "task": TASK,
        "agent": a.agent,
        "preset": a.preset,
        "dataset_rows": dataset.size,
        "buffer_capacity": capacity,
        "cores": len(os.sched_getaffinity(0)),
        "device": str(jax.devices()[0]),
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
        "results": results,
    }
    if a.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{TASK}, {a.agent} {a.preset} preset, buffer {capacity} rows, {report['cores']} cores, "
        f"load {load_before[0]:.1f} -> {report['load_avg_after'][0]:.1f}"
    )
    for r in results:
        print(
            f"  E={r['online_envs']} ({r['workers']} workers): {r['online_steps_per_s']:7.1f} "
            f"online steps/s   (environments alone {r['env_only_steps_per_s']:7.1f}/s, "
            f"device step alone {r['device_only_steps_per_s']:7.1f}/s)"
        )


if __name__ == "__main__":
    main()
