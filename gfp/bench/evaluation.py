"""Target 5: the vectorised evaluation against one environment at a time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gfp.bench.config import BenchConfig
from gfp.bench.paths import make_bench_agent
from gfp.bench.timing import interleave, log, summary


def bench_eval(cfg: BenchConfig) -> dict[str, Any]:
    """Target 5: the vectorised evaluation against one environment at a time."""
    import jax

    from gfp.evaluate import close_env_pools, default_workers, evaluate

    agent = make_bench_agent("gfp", cfg.paper_hidden, cfg)
    params = agent.init(jax.random.PRNGKey(0)).params
    fn = agent.policy_fn("actor")

    def policy(obs, key):
        return fn(params, obs, key)

    for n in (1, cfg.eval_num_envs):  # compile the policy for both batch sizes outside the timing
        np.asarray(policy(np.zeros((n, cfg.obs_dim), np.float32), jax.random.PRNGKey(0)))
    episodes = cfg.eval_episodes
    out: dict[str, Any] = {
        "env": cfg.eval_env,
        "episodes": episodes,
        "num_envs": cfg.eval_num_envs,
        "workers": default_workers(cfg.eval_num_envs),
        "policy": "GFP one-step actor, 4x512, untrained (every episode runs to the time limit)",
    }

    def run(num_envs: int, cold: bool) -> Callable[[], Any]:
        def go():
            if cold:
                close_env_pools()
            return evaluate(policy, cfg.eval_env, episodes=episodes, num_envs=num_envs, seed=0)

        return go

    log(f"timing evaluation: {episodes} episodes of {cfg.eval_env}, one env vs a pool (cold, warm)")
    cases = {}
    for name, n in (("single", 1), ("vec", cfg.eval_num_envs)):
        # each warm run reuses the pool its cold run (which closed every other pool) just built
        cases |= {name: run(n, cold=True), f"{name}_warm": run(n, cold=False)}
    results: dict[str, Any] = {}
    windows = interleave(cases, cfg.eval_reps, block=2, outputs=results)
    close_env_pools()
    for name, ws in windows.items():
        out[name] = summary(ws)
        out[name]["steps_per_s"] = results[name]["length"] * episodes / out[name]["wall_s"]
    out["speedup"] = out["single_warm"]["wall_s"] / out["vec_warm"]["wall_s"]
    out["speedup_cold"] = out["single"]["wall_s"] / out["vec"]["wall_s"]
    return out
