"""Experiments: resolve a configuration, load data, train (one or many seeds), evaluate, and write
one run directory per seed. This is what `gfp train` and `gfp eval` call, and the Python API.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from gfp.agents import AGENTS, Agent, TrainState, make_agent
from gfp.data.load import Dataset, load_dataset
from gfp.errors import ConfigError
from gfp.evaluate import evaluate
from gfp.rundir import RunDir
from gfp.train import init_states, to_device, train, unstack

DEFAULT_TASK = "cube-single-noisy-singletask-task1-v0"
# The built-in default job generates this many episodes of the default task on first use.
DEFAULT_EPISODES = 100
CPU_STEPS = 20_000


def default_data_dir() -> Path:
    """Where the built-in default job caches its generated dataset (GFP_DATA_DIR overrides)."""
    return Path(os.environ.get("GFP_DATA_DIR", Path.home() / ".cache" / "gfp" / "data"))


def paper_steps(task: str) -> int:
    """Gradient steps of the paper's protocol: 500K on D4RL and pixel tasks, else 1M (GFP.md 4)."""
    d4rl = task.endswith(("-v1", "-v2")) and not task.startswith("D4RL/")
    return 500_000 if d4rl or task.startswith("visual-") else 1_000_000


def resolve_config(
    agent: str, task: str | None, preset: str = "paper", overrides: Mapping[str, Any] | None = None
):
    """Agent config for `task` under `preset` with `overrides` on top; returns (config, sources)."""
    from gfp import presets

    return presets.resolve(agent, task, preset, overrides)


def ensure_default_dataset(task: str, dataset_dir: Path, episodes: int = DEFAULT_EPISODES) -> None:
    """Generate the default task's dataset with OGBench's oracles if it is not there yet."""
    from gfp.data.generate import dataset_file_stem, generate

    stem = dataset_file_stem(task)
    if not (dataset_dir / f"{stem}.npz").exists():
        print(f"gfp: generating {episodes} episodes of {stem} into {dataset_dir} (first use only)")
        generate(stem, episodes, dataset_dir)


def fit(
    agent: Agent,
    dataset: Dataset,
    *,
    steps: int,
    seeds: Sequence[int] = (0,),
    states: TrainState | None = None,
    **kwargs: Any,
) -> TrainState:
    """Python API: train `agent` on `dataset` for every seed (vmapped); returns the stacked states."""
    if states is None:
        states = init_states(agent, seeds)
    return train(agent, to_device(dataset.train), states, steps=steps, **kwargs)


def evaluate_policies(
    agent: Agent,
    params: Any,
    env_name: str,
    *,
    episodes: int,
    seed: int = 0,
    policies: Sequence[str] | None = None,
    video_dir: Path | None = None,
) -> dict[str, float]:
    """Evaluate each of the agent's policies; keys are prefixed by the policy name."""
    row: dict[str, float] = {}
    for policy in policies or agent.policies:
        fn = agent.policy_fn(policy)
        video = video_dir / f"{policy}.mp4" if video_dir is not None else None
        result = evaluate(
            lambda obs, key, fn=fn: fn(params, obs, key),
            env_name,
            episodes=episodes,
            seed=seed,
            video_path=video,
        )
        row |= {f"{policy}/{k}": v for k, v in result.items()}
    return row


def summarize(evals: list[dict[str, str]], policies: Sequence[str]) -> dict[str, Any]:
    """Final score and the mean of the last three evaluations (the paper's OGBench protocol)."""
    out: dict[str, Any] = {}
    for policy in policies:
        for metric in ("success", "normalized_score", "return"):
            key = f"{policy}/{metric}"
            vals = [float(r[key]) for r in evals if r.get(key) not in (None, "", "nan")]
            if vals:
                out[f"{key}_final"] = vals[-1]
                out[f"{key}_last3"] = float(np.mean(vals[-3:]))
    return out


@dataclasses.dataclass
class TrainJob:
    """Everything `gfp train` needs, already validated."""

    task: str
    agent: str
    config: Any
    sources: dict[str, str]
    steps: int
    seeds: list[int]
    out: Path
    dataset_dir: Path | None
    preset: str
    eval_every: int
    eval_episodes: int
    log_every: int
    overwrite: bool = False
    video: bool = False
    progress: bool = True

    def run_dirs(self) -> list[Path]:
        if len(self.seeds) == 1:
            return [self.out]
        return [self.out / f"seed{s}" for s in self.seeds]


def run_training(job: TrainJob) -> list[dict[str, Any]]:
    """Train job.seeds side by side and write one run directory per seed; returns the summaries."""
    dataset = load_dataset(job.task, job.dataset_dir)
    agent = make_agent(
        job.agent, job.config, obs_dim=dataset.obs_dim, action_dim=dataset.act_dim
    )
    dirs = [RunDir(p, overwrite=job.overwrite) for p in job.run_dirs()]
    for seed, run in zip(job.seeds, dirs, strict=True):
        run.write_config(run_config(job, seed, dataset))

    def on_log(step: int, rows: list[dict[str, float]]) -> None:
        for run, row in zip(dirs, rows, strict=True):
            run.log_metrics(step, row)

    def on_eval(step: int, states: TrainState) -> dict[str, float] | None:
        if dataset.env_name is None:
            return None
        shown: dict[str, float] = {}
        for i, (seed, run) in enumerate(zip(job.seeds, dirs, strict=True)):
            params = jax.device_get(unstack(states, i).params)
            t0 = time.perf_counter()
            row = evaluate_policies(
                agent, params, dataset.env_name, episodes=job.eval_episodes, seed=seed
            )
            row["eval_seconds"] = time.perf_counter() - t0
            run.log_eval(step, row)
            shown = {k: v for k, v in row.items() if k.endswith("success")} or shown
        return shown

    t0 = time.perf_counter()
    states = fit(
        agent,
        dataset,
        steps=job.steps,
        seeds=job.seeds,
        log_every=job.log_every,
        eval_every=job.eval_every,
        on_log=on_log,
        on_eval=on_eval,
        progress=job.progress,
    )
    wall = time.perf_counter() - t0
    summaries = []
    for i, run in enumerate(dirs):
        params = jax.device_get(unstack(states, i).params)
        run.save_params(params)
        if job.video and dataset.env_name:
            evaluate_policies(
                agent, params, dataset.env_name, episodes=1, video_dir=run.path, seed=job.seeds[i]
            )
        summary = {
            "task": job.task,
            "agent": job.agent,
            "seed": job.seeds[i],
            "steps": job.steps,
            "wall_seconds": wall,
            **summarize(run.evals.read(), agent.policies),
        }
        run.write_summary(summary)
        run.close()
        summaries.append(summary)
    return summaries


def run_config(job: TrainJob, seed: int, dataset: Dataset) -> dict[str, Any]:
    """config.json: the fully resolved configuration, where each value came from, and versions."""
    import flax
    import optax

    import gfp

    return {
        "task": job.task,
        "agent": job.agent,
        "seed": seed,
        "steps": job.steps,
        "preset": job.preset,
        "eval_every": job.eval_every,
        "eval_episodes": job.eval_episodes,
        "log_every": job.log_every,
        "dataset_dir": str(job.dataset_dir) if job.dataset_dir else None,
        "dataset": {
            "name": dataset.name,
            "source": dataset.source,
            "env_name": dataset.env_name,
            "size": dataset.size,
            "obs_dim": dataset.obs_dim,
            "act_dim": dataset.act_dim,
        },
        "agent_config": dataclasses.asdict(job.config),
        "agent_config_sources": job.sources,
        "versions": {
            "gfp": gfp.__version__,
            "jax": jax.__version__,
            "flax": flax.__version__,
            "optax": optax.__version__,
            "python": platform.python_version(),
            "device": str(jax.devices()[0]),
        },
    }


def load_run(run_dir: str | Path) -> tuple[Agent, Any, dict[str, Any]]:
    """Rebuild the agent of a finished run and load its final parameters."""
    run = RunDir(run_dir, create=False)
    if not (run.path / "params.msgpack").exists():
        raise ConfigError(f"{run.path} has no params.msgpack: not a finished gfp run directory")
    cfg = run.read_config()
    cls = AGENTS[cfg["agent"]]
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    values = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in cfg["agent_config"].items()
        if k in fields
    }
    agent = cls(cls.Config(**values), cfg["dataset"]["obs_dim"], cfg["dataset"]["act_dim"])
    return agent, run.load_params(), cfg
