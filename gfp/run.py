"""Experiments: resolve a configuration, load data, train (one or many seeds), evaluate, and write
one run directory per seed. This is what `gfp train` and `gfp eval` call, and the Python API.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import platform
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from gfp.agents import AGENTS, Agent, TrainState, make_agent
from gfp.data.load import Dataset, load_dataset
from gfp.errors import ConfigError, DataError, DivergenceError, Interrupted, WriteError
from gfp.evaluate import evaluate
from gfp.rundir import CHECKPOINT, RunDir, os_reason
from gfp.train import LogSums, init_states, to_device, train, unstack

DEFAULT_TASK = "cube-single-noisy-singletask-task1-v0"
# The built-in default job generates this many episodes of the default task on first use.
DEFAULT_EPISODES = 100
CPU_STEPS = 40_000
# `gfp train` checkpoints this often unless told otherwise (see gfp.cli.Train.checkpoint_every).
DEFAULT_CHECKPOINT_EVERY = 10_000


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
    """Python API: train `agent` on `dataset` for every seed (vmapped); returns the stacked
    states. Keyword arguments go to `gfp.train.train` (callbacks, checkpoint_every, stop, ...)."""
    if states is None:
        states = init_states(agent, seeds)
    return train(agent, to_device(dataset.train, agent.batch_keys), states, steps=steps, **kwargs)


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
    checkpoint_every: int = 0  # 0: only at the end (and on SIGINT/SIGTERM)
    resume: bool = False  # continue the run in `out` from its checkpoints
    recorded: dict[str, Any] | None = None  # a resumed run's config.json

    def run_dirs(self) -> list[Path]:
        if len(self.seeds) == 1:
            return [self.out]
        return [self.out / f"seed{s}" for s in self.seeds]


@contextlib.contextmanager
def stop_on_signals() -> Iterator[dict[str, int | None]]:
    """While training: SIGINT/SIGTERM only set a flag (the loop checkpoints at the next chunk
    boundary and stops); a second one stops at once, without a checkpoint."""
    flag: dict[str, int | None] = {"signum": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signal handlers can only be installed from the main thread
        return
    signums = (signal.SIGINT, signal.SIGTERM)
    old = {s: signal.getsignal(s) for s in signums}

    def handler(signum: int, frame: Any) -> None:
        if flag["signum"] is not None:
            for s, h in old.items():
                signal.signal(s, h)
            os.kill(os.getpid(), signum)  # the default action (SIGINT: KeyboardInterrupt)
            return
        flag["signum"] = signum
        print(
            f"\ngfp: {signal.Signals(signum).name} received: writing a checkpoint at the end of "
            "the current chunk, then stopping (send it again to stop at once, without one)",
            file=sys.stderr,
            flush=True,
        )

    for s in signums:
        signal.signal(s, handler)
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def check_env_matches(dataset: Dataset) -> None:
    """The dataset's observation/action shapes must be the evaluation environment's (ConfigError
    naming the mismatch otherwise); checked before anything is compiled. OGBench data is skipped:
    its loader already compared the arrays with the task's environment."""
    if dataset.env_name is None or dataset.source == "ogbench":
        return
    from gfp.evaluate import make_env

    with warnings.catch_warnings():  # e.g. gymnasium's float32 notes: keep the error one line
        warnings.simplefilter("ignore")
        try:
            env = make_env(dataset.env_name)
        except Exception as e:
            reason = " ".join(str(e).split()) or type(e).__name__
            raise ConfigError(
                f"cannot create the evaluation environment {dataset.env_name!r} of "
                f"{dataset.name!r}: {reason}"
            ) from e
        try:
            want = {"observations": env.observation_space.shape, "actions": env.action_space.shape}
        finally:
            env.close()
    problems = [
        f"{key} have shape {tuple(dataset.train[key].shape[1:])} in the dataset but "
        f"{tuple(shape)} in the environment"
        for key, shape in want.items()
        if shape is not None and tuple(dataset.train[key].shape[1:]) != tuple(shape)
    ]
    if problems:
        raise ConfigError(
            f"dataset {dataset.name!r} does not match its environment {dataset.env_name!r}: "
            + "; ".join(problems)
        )


def dataset_fingerprint(dataset: Dataset) -> str:
    """A cheap checksum of the training data (shapes, actions, rewards, masks): a resumed run must
    train on the same data."""
    h = hashlib.sha256()
    for key in ("observations", "actions", "rewards", "masks"):
        x = np.ascontiguousarray(dataset.train[key])
        h.update(f"{key}{x.shape}{x.dtype}".encode())
        if key != "observations":
            h.update(x.tobytes())
    return h.hexdigest()[:16]


def _check_same_dataset(dataset: Dataset, recorded: dict[str, Any]) -> None:
    rec = recorded.get("dataset", {})
    now = {
        "size": dataset.size,
        "obs_dim": dataset.obs_dim,
        "act_dim": dataset.act_dim,
        "fingerprint": dataset_fingerprint(dataset),
    }
    diff = [f"{k} {rec[k]} -> {v}" for k, v in now.items() if k in rec and rec[k] != v]
    if diff:
        raise ConfigError(
            f"the dataset of {recorded['task']!r} changed since the run started "
            f"({', '.join(diff)}); a resumed run must train on the same data"
        )


def restore_state(template: TrainState, state_dict: Any, where: Path) -> TrainState:
    """A checkpoint's state dict as a TrainState shaped like `template` (one seed, host arrays);
    DataError if it is not this agent's state."""
    try:
        state = flax.serialization.from_state_dict(template, state_dict)
    except (KeyError, ValueError, TypeError) as e:
        raise DataError(f"{where}: the checkpoint does not fit this agent ({e})") from e
    leaves = jax.tree.leaves(state)
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(template)[0], leaves, strict=True):
        b = np.asarray(b)
        if a.shape != b.shape or a.dtype != b.dtype:
            raise DataError(
                f"{where}: checkpoint array {jax.tree_util.keystr(path)} is {b.dtype}"
                f"{list(b.shape)}, the agent needs {a.dtype}{list(a.shape)}"
            )
    return jax.tree.map(np.asarray, state)


def _stack(states: Sequence[TrainState]) -> TrainState:
    return jax.tree.map(lambda *xs: jnp.asarray(np.stack(xs)), *states)


def run_training(job: TrainJob) -> list[dict[str, Any]]:
    """Train job.seeds side by side and write one run directory per seed; returns the summaries.

    With `job.resume`, every seed continues from its own checkpoint (from scratch if it has none),
    its logs cut back to that checkpoint; the result is bit-identical to an uninterrupted run on
    CPU. Raises DivergenceError (the last good checkpoint is kept), WriteError (the previous file
    is intact) or Interrupted (SIGINT/SIGTERM: a checkpoint was written first).
    """
    dataset = load_dataset(job.task, job.dataset_dir)
    check_env_matches(dataset)
    if job.recorded is not None:
        _check_same_dataset(dataset, job.recorded)
    agent = make_agent(job.agent, job.config, obs_dim=dataset.obs_dim, action_dim=dataset.act_dim)
    dirs = [RunDir(p, overwrite=job.overwrite, resume=job.resume) for p in job.run_dirs()]
    if job.resume and all(run.finished for run in dirs):
        print(f"gfp: {job.out} is already finished ({job.steps} steps); nothing to do")
        return [run.read_summary() for run in dirs]
    for seed, run in zip(job.seeds, dirs, strict=True):
        if not job.resume or not (run.path / "config.json").exists():
            run.write_config(run_config(job, seed, dataset))
    ckpts = [run.load_checkpoint() if job.resume else None for run in dirs]
    if job.resume:
        for run, ckpt in zip(dirs, ckpts, strict=True):
            run.rewind(ckpt[1] if ckpt else None)
    metas = [ckpt[1] if ckpt else None for ckpt in ckpts]
    saved_at = [int(m["step"]) if m else None for m in metas]  # last checkpoint per seed
    at = [s or 0 for s in saved_at]  # where each seed starts
    if job.resume:
        where = ", ".join(f"seed {s}: step {a}" for s, a in zip(job.seeds, at, strict=True))
        print(f"gfp: resuming {job.out} ({where} of {job.steps})")

    states = init_states(agent, job.seeds)
    if any(ckpts):
        host = jax.device_get(states)
        per_seed = [unstack(host, i) for i in range(len(job.seeds))]
        for i, (run, ckpt) in enumerate(zip(dirs, ckpts, strict=True)):
            if ckpt is not None:
                per_seed[i] = restore_state(per_seed[i], ckpt[0], run.path / CHECKPOINT)
        states = _stack(per_seed)
    wall_before = [float(m.get("wall_seconds", 0.0)) if m else 0.0 for m in metas]
    log_sums = [LogSums.from_json(m.get("log_sums")) if m else LogSums() for m in metas]
    t0 = time.perf_counter()

    def on_log(step: int, rows: list[dict[str, float] | None]) -> None:
        for run, row in zip(dirs, rows, strict=True):
            if row is not None:
                run.log_metrics(step, row)

    def on_eval(step: int, states: TrainState) -> dict[str, float] | None:
        if dataset.env_name is None:
            return None
        shown: dict[str, float] = {}
        for i, (seed, run) in enumerate(zip(job.seeds, dirs, strict=True)):
            if step <= at[i]:
                continue  # this seed is ahead (resumed from a later checkpoint): already done
            params = jax.device_get(unstack(states, i).params)
            t_eval = time.perf_counter()
            row = evaluate_policies(
                agent, params, dataset.env_name, episodes=job.eval_episodes, seed=seed
            )
            row["eval_seconds"] = time.perf_counter() - t_eval
            run.log_eval(step, row)
            shown = {k: v for k, v in row.items() if k.endswith("success")} or shown
        return shown

    def on_checkpoint(step: int, states: TrainState, sums: list[LogSums]) -> None:
        host = jax.device_get(states)
        for i, (seed, run) in enumerate(zip(job.seeds, dirs, strict=True)):
            if step <= at[i]:
                continue
            meta = {
                "step": step,
                "seed": seed,
                "log_sums": sums[i].to_json(),
                "wall_seconds": wall_before[i] + time.perf_counter() - t0,
            }
            state = flax.serialization.to_state_dict(unstack(host, i))
            try:
                run.save_checkpoint(state, meta)
            except WriteError as e:
                kept = (
                    f"the previous checkpoint (step {saved_at[i]}) is intact"
                    if saved_at[i] is not None
                    else "there is no earlier checkpoint"
                )
                raise WriteError(
                    f"could not write the step-{step} checkpoint {run.path / CHECKPOINT}: "
                    f"{os_reason(e.__cause__)}; {kept}; training stopped"
                ) from e
            saved_at[i] = step

    try:
        with stop_on_signals() as flag:
            try:
                states = fit(
                    agent,
                    dataset,
                    steps=job.steps,
                    states=states,
                    log_every=job.log_every,
                    eval_every=job.eval_every,
                    checkpoint_every=job.checkpoint_every,
                    on_log=on_log,
                    on_eval=on_eval,
                    on_checkpoint=on_checkpoint,
                    stop=lambda: flag["signum"] is not None,
                    log_sums=log_sums,
                    progress=job.progress,
                )
            except DivergenceError as e:
                i = e.seed_index
                kept = (
                    f"the last good checkpoint (step {saved_at[i]}) is kept in {dirs[i].path}"
                    if saved_at[i] is not None
                    else f"no checkpoint had been written to {dirs[i].path} yet"
                )
                err = DivergenceError(f"{e} (seed {job.seeds[i]}); {kept}")
                err.step, err.terms, err.seed_index = e.step, e.terms, i
                raise err from None
        step = int(np.asarray(jax.device_get(states.step)).min())
        if flag["signum"] is not None and step < job.steps:
            name = signal.Signals(flag["signum"]).name
            raise Interrupted(
                f"stopped by {name} at step {step} of {job.steps}, checkpoint written; continue "
                f"with: gfp train --resume {job.out}",
                flag["signum"],
            )
        summaries = []
        for i, run in enumerate(dirs):
            if run.finished:  # a resumed multi-seed run killed while writing the summaries
                summaries.append(run.read_summary())
                continue
            params = jax.device_get(unstack(states, i).params)
            run.save_params(params)
            if job.video and dataset.env_name:
                evaluate_policies(
                    agent,
                    params,
                    dataset.env_name,
                    episodes=1,
                    video_dir=run.path,
                    seed=job.seeds[i],
                )
            summary = {
                "task": job.task,
                "agent": job.agent,
                "seed": job.seeds[i],
                "steps": job.steps,
                "wall_seconds": wall_before[i] + time.perf_counter() - t0,
                **summarize(run.evals.read(), agent.policies),
            }
            run.write_summary(summary)
            summaries.append(summary)
    finally:
        for run in dirs:
            run.close()
    return summaries


def config_from_record(agent: str, values: dict[str, Any]) -> Any:
    """The agent Config recorded in a config.json (lists back to tuples; unknown keys dropped)."""
    cls = AGENTS[agent]
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    kept = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in fields}
    return cls.Config(**kept)


def run_config(job: TrainJob, seed: int, dataset: Dataset) -> dict[str, Any]:
    """config.json: the fully resolved configuration, where each value came from, and versions."""
    import flax
    import optax

    import gfp

    return {
        "task": job.task,
        "agent": job.agent,
        "seed": seed,
        "seeds": job.seeds,
        "steps": job.steps,
        "preset": job.preset,
        "eval_every": job.eval_every,
        "eval_episodes": job.eval_episodes,
        "log_every": job.log_every,
        "checkpoint_every": job.checkpoint_every,
        "dataset_dir": str(job.dataset_dir) if job.dataset_dir else None,
        "dataset": {
            "name": dataset.name,
            "source": dataset.source,
            "env_name": dataset.env_name,
            "size": dataset.size,
            "obs_dim": dataset.obs_dim,
            "act_dim": dataset.act_dim,
            "fingerprint": dataset_fingerprint(dataset),
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
    config = config_from_record(cfg["agent"], cfg["agent_config"])
    agent = cls(config, cfg["dataset"]["obs_dim"], cfg["dataset"]["act_dim"])
    return agent, run.load_params(), cfg
