"""Runs: load the data, build the agent, train a job's seeds side by side, evaluate, and write one
run directory per seed. This is what `gfp train` and `gfp eval` call, and the Python API.

`run_training(job)` reads as its stages (`Training`): open the run directories and record the
configuration; restore checkpoints on resume (refusing an edited config.json); train with the
logging, evaluation and checkpoint callbacks (the offline phase of gfp.engine); fine-tune online
(job.online_steps > 0, gfp.engine.online: the same callbacks, exploration episodes in explore.csv,
the replay buffer's new rows in append-only segments beside each checkpoint); write the final
parameters and summaries. metrics.csv and eval.csv carry a `phase` column (offline/online) beside
the global step.
"""

from __future__ import annotations

import dataclasses
import platform
import re
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import numpy as np

from gfp.agents import make_agent
from gfp.agents.base import Agent, ObsSpec, TrainState
from gfp.agents.configs import config_from_dict
from gfp.data.checks import check_env_matches, check_same_dataset, dataset_fingerprint
from gfp.data.frame_layout import is_pixels
from gfp.data.load import Dataset, load_dataset
from gfp.engine.chunk import init_states, unstack
from gfp.engine.driver import LogSums, OfflinePhase, Phase, drive, train
from gfp.engine.frames import check_settings
from gfp.engine.placement import agent_sampler
from gfp.engine.replay import online_rows
from gfp.engine.sequence import check_online, horizon_of
from gfp.errors import ConfigError, DivergenceError, Interrupted, WriteError
from gfp.evaluate import evaluate, evaluation_seed
from gfp.io import os_reason
from gfp.job import DEFAULT_EPISODES, TrainJob, changed_keys, job_record, resume_hint, run_defining
from gfp.rundir import (
    CHECKPOINT,
    PARAMS,
    PARAMS_BEST,
    CsvLog,
    ReplaySegment,
    RunDir,
    restore_state,
    stack_states,
)
from gfp.signals import interruptible, stop_on_signals


def ensure_default_dataset(task: str, dataset_dir: Path, episodes: int = DEFAULT_EPISODES) -> None:
    """Generate the default task's dataset with OGBench's oracles if it is not there yet."""
    from gfp.datagen.generate import generate
    from gfp.tasks import dataset_file_stem

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
    states. Keyword arguments go to `gfp.engine.driver.drive` (callbacks, checkpoint_every, stop,
    ...)."""
    if states is None:
        states = init_states(agent, seeds)
    return train(agent, agent_sampler(dataset.train, agent), states, steps=steps, **kwargs)


def evaluate_policies(
    agent: Agent,
    params: Any,
    env_name: str,
    *,
    episodes: int,
    seed: int = 0,
    policies: Sequence[str] | None = None,
    video_dir: Path | None = None,
    success_timing: str | None = None,
    task: str | None = None,
) -> dict[str, float]:
    """Evaluate each of the agent's policies; keys are prefixed by the policy name. `task`: the
    task whose reference returns normalise the score (a Minari dataset's environment id has none
    of its own); `success_timing`: see `gfp.evaluate.make_env`."""
    from gfp.data.scores import normalized_score

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
            success_timing=success_timing,
            frame_stack=agent.config.frame_stack,  # pixel tasks: the frames it was trained on
        )
        score = normalized_score(task, result["return"]) if task else None
        if score is not None:
            result["normalized_score"] = score
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


EXPLORE_LOG = "explore.csv"  # one row per online exploration episode


def new_replay_rows(collector: Any, i: int, saved_end: int | None) -> ReplaySegment:
    """Seed i's replay segment for a checkpoint: the online rows added since the last checkpoint's
    segments end (`saved_end`; None: none yet, or its rows were inside it), from the oldest row
    the buffer still holds at most. The newest row of each environment (its next action comes
    with the next step, gfp/engine/online.py) is written again, so its final form is saved."""
    buffers, added = collector.buffers, collector.added[i]
    keep_from = max(0, added - buffers.capacity)
    start = keep_from if saved_end is None else max(keep_from, saved_end - collector.n_envs)
    counters = {"size": int(buffers.size[i]), "pointer": int(buffers.pointer[i]), "added": added}
    return ReplaySegment(online_rows(buffers, i, start, added), start, added, keep_from, counters)


class Training:
    """One job's run, stage by stage (`run_training` calls them in order)."""

    def __init__(self, job: TrainJob):
        self.job = job
        self.dataset = load_dataset(
            job.task,
            job.dataset_dir,
            obs_keys=job.obs_keys,
            reward=job.reward,
            val_episodes=job.val_episodes,
        )
        if job.no_eval:  # no environment: neither evaluated nor checked against the data
            print(f"gfp: no_eval: training {job.task} without environment evaluation")
        else:
            check_env_matches(self.dataset)
        if job.recorded is not None:
            check_same_dataset(self.dataset, job.recorded)
        self.agent = make_agent(
            job.agent,
            job.config,
            obs_spec=ObsSpec.of_data(self.dataset.train),
            action_dim=self.dataset.act_dim,
        )
        # Checked here as well as by the offline phase: before any run directory or config.json
        # is written.
        check_settings(job.config, is_pixels(self.dataset.train["observations"]))
        if job.online_steps and self.dataset.env_name is None:
            raise ConfigError(
                f"online fine-tuning needs an environment, and the dataset {self.dataset.name!r} "
                "names none"
            )
        if job.online_steps:  # h-step windows need one environment's rows in order
            check_online(horizon_of(job.config), job.online_envs)
        if job.online_steps and self.agent.obs_spec.dtype == "uint8":
            raise ConfigError(
                f"online fine-tuning takes state observations; {self.dataset.name!r} has images "
                "(pixel tasks are offline only for now)"
            )
        self._validation_setup()  # before any run directory is opened: its refusals write nothing
        self.dirs = [
            RunDir(
                p,
                overwrite=job.overwrite,
                resume=job.resume,
                offline_steps=job.steps,
                wandb=job.wandb,
            )
            for p in job.run_dirs()
        ]
        for run in self.dirs:
            if not job.resume:  # a new run (RunDir refused or cleared an earlier one)
                (run.path / EXPLORE_LOG).unlink(missing_ok=True)
        self.explore = [CsvLog(run.path / EXPLORE_LOG) for run in self.dirs]
        self.online_saved: list[tuple[Any, dict[str, Any]] | None] = [None] * len(self.dirs)
        self.t0 = time.perf_counter()

    def _validation_setup(self) -> None:
        """Validation metrics (gfp.engine.validation) at every evaluation where the data has a
        validation split and no environment evaluates the run, or --val-episodes asked for one;
        --select-by's column, refused up front when the run does not compute it."""
        from gfp.engine.validation import SELECT_BY, Validation, select_column

        job, val = self.job, self.dataset.val
        self.environment = self.dataset.env_name is not None and not job.no_eval
        wanted = not self.environment or bool(job.val_episodes)
        wanted = wanted or bool(job.select_by and "val_" in job.select_by)
        self.validation = Validation(self.agent, val) if val is not None and wanted else None
        self.select: tuple[str, bool] | None = None
        if job.select_by:
            column = select_column(
                job.select_by, self.agent, self.environment, self.validation is not None
            )
            self.select = (column, SELECT_BY[column.rpartition("/")[2]])
        self.best: list[dict[str, Any] | None] = [None] * len(job.seeds)

    def close(self) -> None:
        for run in self.dirs:
            run.close()

    # ---- stage 1: the configuration ------------------------------------------------------------
    def write_configs(self) -> None:
        """config.json per seed (a resumed run keeps the one it has)."""
        for seed, run in zip(self.job.seeds, self.dirs, strict=True):
            if not self.job.resume or not (run.path / "config.json").exists():
                run.write_config(run_config(self.job, seed, self.dataset))

    # ---- stage 2: the starting states ----------------------------------------------------------
    def restore(self) -> TrainState:
        """Fresh states, with each seed that has a checkpoint restored from it (its logs cut back to
        it). A checkpoint made with other run-defining settings than config.json's is refused,
        naming the keys that changed."""
        job = self.job
        ckpts = [run.load_checkpoint() if job.resume else None for run in self.dirs]
        record = job_record(job)
        for run, ckpt in zip(self.dirs, ckpts, strict=True):
            if ckpt is None:
                continue
            made_with = ckpt[1].get("config")
            if made_with is not None and made_with != run_defining(record):
                keys = ", ".join(changed_keys(made_with, record)) or "config_hash"
                raise ConfigError(
                    f"{run.path / 'config.json'}: edited since the checkpoint at step "
                    f"{ckpt[1]['step']} was written ({keys}); a resumed run keeps its settings: "
                    "undo the edit, or start a new run with another --out"
                )
            if int(ckpt[1]["step"]) > job.total_steps:
                raise ConfigError(
                    f"{run.path / 'config.json'}: steps {job.total_steps} is before the checkpoint "
                    f"at step {ckpt[1]['step']}"
                )
        if job.resume:
            for run, explore, ckpt in zip(self.dirs, self.explore, ckpts, strict=True):
                run.rewind(ckpt[1] if ckpt else None)
                online = ckpt[1].get("online") if ckpt else None
                explore.truncate(online["explore_bytes"] if online else 0)
        metas = [ckpt[1] if ckpt else None for ckpt in ckpts]
        self.saved_at = [int(m["step"]) if m else None for m in metas]  # last checkpoint per seed
        self.at = [s or 0 for s in self.saved_at]  # where each seed starts
        self.wall_before = [float(m.get("wall_seconds", 0.0)) if m else 0.0 for m in metas]
        self.log_sums = [LogSums.from_json(m.get("log_sums")) if m else LogSums() for m in metas]
        self.best = [m.get("best") if m else None for m in metas]  # --select-by's, so far
        if job.resume:
            where = ", ".join(
                f"seed {s}: step {a}" for s, a in zip(job.seeds, self.at, strict=True)
            )
            print(f"gfp: resuming {job.out} ({where} of {job.steps})")
        states = init_states(self.agent, job.seeds)
        if any(ckpts):
            host = jax.device_get(states)
            per_seed = [unstack(host, i) for i in range(len(job.seeds))]
            for i, (run, ckpt) in enumerate(zip(self.dirs, ckpts, strict=True)):
                if ckpt is not None:
                    state_dict = dict(ckpt[0])
                    if "online" in state_dict:  # an online-phase checkpoint: its replay rows
                        self.online_saved[i] = (state_dict.pop("online"), ckpt[1]["online"])
                    per_seed[i] = restore_state(
                        per_seed[i], state_dict, run.checkpoint_file or run.path / CHECKPOINT
                    )
            states = stack_states(per_seed)
        return states

    # ---- stage 3: training, with its callbacks -------------------------------------------------
    def on_log(self, step: int, rows: list[dict[str, float] | None]) -> None:
        for run, row in zip(self.dirs, rows, strict=True):
            if row is not None:
                run.log_metrics(step, row)

    def on_eval(self, step: int, states: TrainState) -> dict[str, float] | None:
        """Each seed's evaluation row in eval.csv: success (and return, ...) in the environment,
        the validation metrics (gfp.engine.validation) where the run has them; --select-by's
        best parameters kept."""
        if not self.environment and self.validation is None:
            return None
        val_rows = self.validation(states) if self.validation is not None else None
        shown: dict[str, float] = {}
        for i, (seed, run) in enumerate(zip(self.job.seeds, self.dirs, strict=True)):
            if step <= self.at[i]:
                continue  # this seed is ahead (resumed from a later checkpoint): already done
            params = jax.device_get(unstack(states, i).params)
            row: dict[str, float] = {}
            if self.environment:
                t_eval = time.perf_counter()
                eval_seed = evaluation_seed(seed, step)
                row = evaluate_policies(
                    self.agent,
                    params,
                    self.dataset.env_name,
                    episodes=self.job.eval_episodes,
                    seed=eval_seed,
                    success_timing=self.job.success_timing,
                    task=self.job.task,
                )
                row["eval_seconds"] = time.perf_counter() - t_eval
                row["eval_seed"] = eval_seed
            if val_rows is not None:
                row |= val_rows[i]
            run.log_eval(step, row)
            self.keep_best(i, step, row, params)
            # the progress bar picks each policy's score of these (gfp.engine.driver), or the
            # validation errors
            scores = ("success", "normalized_score")
            shown = {k: v for k, v in row.items() if k.endswith(scores)} or {
                k: v for k, v in row.items() if k in ("val_td_error", "val_flow_loss")
            }
        return shown

    def keep_best(self, i: int, step: int, row: Mapping[str, float], params: Any) -> None:
        """--select-by: seed index i's parameters as params_best.msgpack when this evaluation's
        metric improves on the best so far (kept in the checkpoints, so a resumed run keeps it)."""
        from gfp.engine.validation import improves

        if self.select is None or self.select[0] not in row:
            return
        column, lower = self.select
        value = float(row[column])
        if improves(value, self.best[i], lower):
            self.dirs[i].save_params(params, PARAMS_BEST)
            self.best[i] = {"metric": column, "step": step, "value": value}

    def on_checkpoint(
        self, step: int, states: TrainState, sums: list[LogSums], collector: Any = None
    ) -> None:
        """Each seed's checkpoint; in the online phase with its replay rows and counters
        (`collector.payload`) and the length of its explore.csv."""
        host = jax.device_get(states)
        made_with = run_defining(job_record(self.job))
        for i, (seed, run) in enumerate(zip(self.job.seeds, self.dirs, strict=True)):
            if step <= self.at[i]:
                continue
            meta = {
                "step": step,
                "seed": seed,
                "log_sums": sums[i].to_json(),
                "wall_seconds": self.wall_before[i] + time.perf_counter() - self.t0,
                "config": made_with,
                **({"best": self.best[i]} if self.best[i] is not None else {}),
            }
            state = flax.serialization.to_state_dict(unstack(host, i))
            replay = None
            if collector is not None:
                online = collector.counters(i)
                meta["online"] = {**online, "explore_bytes": self.explore[i].sync()}
                replay = new_replay_rows(collector, i, run.replay_end)
            try:
                run.save_checkpoint(state, meta, replay)
            except WriteError as e:
                kept = (
                    f"the previous checkpoint (step {self.saved_at[i]}) is intact"
                    if self.saved_at[i] is not None
                    else "there is no earlier checkpoint"
                )
                raise WriteError(
                    f"could not write the step-{step} checkpoint {run.path / CHECKPOINT}: "
                    f"{os_reason(e.__cause__)}; {kept}; training stopped"
                ) from e
            self.saved_at[i] = step

    def drive(
        self,
        phase: Phase,
        states: TrainState,
        at: Sequence[int],
        end: int,
        log_sums: Sequence[LogSums],
        on_checkpoint: Any,
    ) -> TrainState:
        """Advance one phase of the run to `end` with the logging, evaluation and checkpoint
        callbacks; Interrupted after a checkpoint on SIGINT/SIGTERM, DivergenceError naming the
        seed and the checkpoint kept."""
        job = self.job
        with stop_on_signals() as flag:
            try:
                states = drive(
                    phase,
                    states,
                    at=at,
                    end=end,
                    log_every=job.log_every,
                    eval_every=job.eval_every,
                    checkpoint_every=job.checkpoint_every,
                    on_log=self.on_log,
                    on_eval=self.on_eval,
                    on_checkpoint=on_checkpoint,
                    stop=lambda: flag["signum"] is not None,
                    log_sums=log_sums,
                    progress=job.progress,
                )
            except DivergenceError as e:
                raise self._diverged(e) from None
        self._check_stopped(flag, states)
        return states

    def train(self, states: TrainState) -> TrainState:
        """All offline updates, to job.steps."""
        if min(self.at) >= self.job.steps:
            return states  # every seed is past the offline phase (resumed online)
        sampler = agent_sampler(
            self.dataset.train,
            self.agent,
            self.job.data_placement,
            cache_dir=self.job.out,
            log=lambda line: print(f"gfp: {line}"),
        )
        phase = OfflinePhase(self.agent, sampler)
        return self.drive(phase, states, self.at, self.job.steps, self.log_sums, self.on_checkpoint)

    def _diverged(self, e: DivergenceError) -> DivergenceError:
        """`e` naming the seed and the checkpoint that is kept."""
        i = e.seed_index
        kept = (
            f"the last good checkpoint (step {self.saved_at[i]}) is kept in {self.dirs[i].path}"
            if self.saved_at[i] is not None
            else f"no checkpoint had been written to {self.dirs[i].path} yet"
        )
        err = DivergenceError(f"{e} (seed {self.job.seeds[i]}); {kept}")
        err.step, err.terms, err.seed_index = e.step, e.terms, i
        return err

    def _check_stopped(self, flag: Mapping[str, int | None], states: TrainState) -> None:
        """Interrupted if a signal stopped the run before its last step (checkpoint written)."""
        total = self.job.total_steps
        step = int(np.asarray(jax.device_get(states.step)).min())
        if flag["signum"] is not None and step < total:
            name = signal.Signals(flag["signum"]).name
            raise Interrupted(
                f"stopped by {name} at step {step} of {total}, checkpoint written; continue "
                f"with: gfp train --resume {self.job.out}",
                flag["signum"],
            )

    # ---- stage 3b: online fine-tuning ----------------------------------------------------------
    def online_agent(self) -> Agent:
        """The agent of the online phase: the offline one, or GFP with eta = job.eta_online (the
        config is static in the jitted update, so this is a second compiled update)."""
        job = self.job
        if job.eta_online is None:
            return self.agent
        config = dataclasses.replace(job.config, eta=job.eta_online)
        env_action_dim = getattr(self.agent, "env_action_dim", self.agent.action_dim)
        return make_agent(
            job.agent, config, obs_spec=self.agent.obs_spec, action_dim=env_action_dim
        )

    def on_episode(self, i: int, row: dict[str, float]) -> None:
        """One finished exploration episode of seed index i: a row of its explore.csv."""
        self.explore[i].write(row)
        figures = {key: row[key] for key in ("return", "success", "length")}
        self.dirs[i].log_scalars(row["step"], figures, "explore/")

    def online(self, states: TrainState) -> TrainState:
        """job.online_steps environment steps after the offline ones, each followed by one update
        (gfp.engine.online: the collector is the phase), with the callbacks of `train`."""
        from gfp.engine.online import Collector
        from gfp.evaluate import EnvPool, default_workers, env_spec

        job = self.job
        at = [max(a, job.steps) for a in self.at]
        if job.online_steps == 0 or min(at) >= job.total_steps:
            return states  # offline only, or every seed already done (killed in `finish`)
        agent = self.online_agent()
        size = self.dataset.size
        capacity = job.buffer_size if job.balanced_sampling else max(job.buffer_size, size + 1)
        # Seeds past the offline phase continue their checkpoint's partial log interval; the
        # others logged a row at job.steps, where the offline phase ended.
        sums = [
            s if a > job.steps else LogSums() for s, a in zip(self.log_sums, self.at, strict=True)
        ]
        # The environments evaluation uses (same success timing), one pool slot per seed and env.
        spec = env_spec(self.dataset.env_name, job.success_timing)
        pool = EnvPool(spec, default_workers(len(job.seeds) * job.online_envs))
        try:
            collector = Collector(
                agent,
                pool,
                agent_sampler(self.dataset.train, agent).data,
                seeds=job.seeds,
                n_envs=job.online_envs,
                capacity=capacity,
                balanced=job.balanced_sampling,
                reward_shift=self.dataset.reward_shift,
                saved=self.online_saved,
                policy=agent.policies[0],
                on_episode=self.on_episode,
            )
            for line in collector.restarted:
                print(f"gfp: {line}")
            on_checkpoint = lambda step, st, s: self.on_checkpoint(step, st, s, collector)  # noqa: E731
            return self.drive(collector, states, at, job.total_steps, sums, on_checkpoint)
        finally:
            pool.close()

    # ---- stage 4: final parameters, videos, summaries ------------------------------------------
    def online_summary(self, i: int) -> dict[str, Any]:
        """Seed index i's figures of each phase: 'offline/...' from the evaluations up to the
        offline steps (the last one at their end), 'online/...' from those after them, and
        'explore/...' the means over its exploration episodes."""
        job, evals = self.job, self.dirs[i].evals.read()
        out: dict[str, Any] = {"online_steps": job.online_steps}
        for phase, rows in (
            ("offline", [r for r in evals if int(r["step"]) <= job.steps]),
            ("online", [r for r in evals if int(r["step"]) > job.steps]),
        ):
            out |= {f"{phase}/{k}": v for k, v in summarize(rows, self.agent.policies).items()}
        episodes = self.explore[i].read()
        out["explore/episodes"] = len(episodes)
        for key in ("return", "success"):
            vals = [float(r[key]) for r in episodes if r.get(key) not in (None, "", "nan")]
            if vals:
                out[f"explore/{key}"] = float(np.mean(vals))
        return out

    def finish(self, states: TrainState) -> list[dict[str, Any]]:
        job, summaries = self.job, []
        for i, run in enumerate(self.dirs):
            if run.finished:  # a resumed multi-seed run killed while writing the summaries
                summaries.append(run.read_summary())
                continue
            params = jax.device_get(unstack(states, i).params)
            run.save_params(params)
            env_name = self.dataset.env_name
            if job.video and env_name and not job.no_eval:
                evaluate_policies(
                    self.agent,
                    params,
                    env_name,
                    episodes=1,
                    video_dir=run.path,
                    seed=job.seeds[i],
                    success_timing=job.success_timing,
                )
                run.log_videos(job.total_steps, self.agent.policies)
            summary = {
                "task": job.task,
                "agent": job.agent,
                "seed": job.seeds[i],
                "steps": job.steps,
                **({"no_eval": True} if job.no_eval else {}),
                "wall_seconds": self.wall_before[i] + time.perf_counter() - self.t0,
            }
            if job.online_steps:  # every score key names its phase: never the two averaged
                summary |= self.online_summary(i)
            else:  # 'offline/...', and the unphased keys of before (the same values) kept
                figures = summarize(run.evals.read(), self.agent.policies)
                summary |= {f"offline/{k}": v for k, v in figures.items()} | figures
            if job.select_by and self.best[i] is not None:  # what params_best.msgpack holds
                summary["best"] = self.best[i]
            run.write_summary(summary)
            summaries.append(summary)
        return summaries


@interruptible(resume_hint)  # a signal before or after the training loop: one line, 130/143
def run_training(job: TrainJob) -> list[dict[str, Any]]:
    """Train job.seeds side by side and write one run directory per seed; returns the summaries.

    With `job.resume`, every seed continues from its own checkpoint (from scratch if it has none),
    its logs cut back to that checkpoint; the result is bit-identical to an uninterrupted run on
    CPU. Raises DivergenceError (the last good checkpoint is kept), WriteError (the previous file
    is intact) or Interrupted (SIGINT/SIGTERM: a checkpoint was written first).
    """
    run = Training(job)
    try:
        if job.resume and all(d.finished for d in run.dirs):
            print(f"gfp: {job.out} is already finished ({job.steps} steps); nothing to do")
            return [d.read_summary() for d in run.dirs]
        run.write_configs()
        states = run.restore()
        states = run.train(states)
        states = run.online(states)
        return run.finish(states)
    except jax.errors.JaxRuntimeError as e:
        error = out_of_memory_error(e, job.config.batch_size, len(job.seeds))
        if error is None:
            raise
        raise error from None
    finally:
        run.close()


def out_of_memory_error(error: Exception, batch_size: int, seeds: int) -> ConfigError | None:
    """XLA's RESOURCE_EXHAUSTED (an allocation larger than the device's memory, e.g. for a
    --batch-size too large) as one line naming the batch size and the memory XLA asked for;
    None for any other error."""
    text = str(error)
    if "RESOURCE_EXHAUSTED" not in text:
        return None
    found = re.search(r"allocat\w*\s+(\d+)\s*bytes", text)
    asked = ""
    if found:
        gib = int(found[1]) / 2**30
        asked = f"{gib:.1f}".removesuffix(".0") + " GiB" if gib >= 0.1 else f"{found[1]} bytes"
        asked = f" ({asked} asked for)"
    where = str(jax.devices()[0])
    return ConfigError(
        f"out of device memory on {where}{asked} with --batch-size {batch_size} and {seeds} "
        f"seed{'s' * (seeds != 1)} trained side by side; try a smaller --batch-size or fewer "
        "--seeds"
    )


def run_config(job: TrainJob, seed: int, dataset: Dataset) -> dict[str, Any]:
    """config.json: the job (fully resolved, with where each value came from, and its
    config_hash), the dataset it trains on, and versions."""
    return {
        **job_record(job),
        "seed": seed,
        "dataset": dataset_record(dataset),
        "versions": versions_record(),
    }


def dataset_record(dataset: Dataset) -> dict[str, Any]:
    """config.json's `dataset`: what a run trained on (load_run rebuilds the agent's shapes from
    it; resume and reports compare the fingerprint and size)."""
    obs = dataset.train["observations"]
    state_dim = ObsSpec.of_data(dataset.train).state_dim  # a camera's state beside it, if any
    # What else the loader says a run must keep (LeRobot: the action normalisation and its
    # inverse, so that policies can output robot units); absent for every other source.
    info = {"info": dataset.info} if dataset.info else {}
    return {
        "name": dataset.name,
        "source": dataset.source,
        "env_name": dataset.env_name,
        "size": dataset.size,
        "obs_dim": dataset.obs_dim,
        "obs_shape": list(obs.shape[1:]),
        "obs_dtype": str(obs.dtype),
        **({"obs_state_dim": state_dim} if state_dim else {}),
        "act_dim": dataset.act_dim,
        "fingerprint": dataset_fingerprint(dataset),
        **info,
    }


def versions_record() -> dict[str, Any]:
    """config.json's `versions`: the software (and device) a run was made with."""
    import flax
    import optax

    import gfp

    return {
        "gfp": gfp.__version__,
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "python": platform.python_version(),
        "device": str(jax.devices()[0]),
        "git_commit": git_commit(),
    }


def git_commit() -> str | None:
    """The commit of the gfp checkout this code runs from (with '+dirty' when tracked files are
    modified), or None outside a git checkout (an installed wheel) or without git."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        run = lambda *a: subprocess.run(  # noqa: E731
            ["git", "--no-optional-locks", "-C", str(root), *a],
            capture_output=True,
            text=True,
            timeout=10,
        )
        head = run("rev-parse", "HEAD")
        if head.returncode != 0:
            return None
        dirty = run("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty else "")


def load_run(run_dir: str | Path, best: bool = False) -> tuple[Agent, Any, dict[str, Any]]:
    """Rebuild the agent of a finished run and load its final parameters (`best`: those
    --select-by kept, params_best.msgpack)."""
    run = RunDir(run_dir, create=False)
    if not (run.path / PARAMS).exists():
        raise ConfigError(f"{run.path} has no params.msgpack: not a finished gfp run directory")
    if best and not (run.path / PARAMS_BEST).exists():
        raise ConfigError(
            f"{run.path} has no {PARAMS_BEST}: the run was not trained with --select-by"
        )
    where = run.path / "config.json"
    try:
        cfg = run.read_config()
        agent_name, ds = cfg["agent"], cfg["dataset"]
        config = config_from_dict(agent_name, cfg["agent_config"], f"{where}: agent_config")
        shape = tuple(ds.get("obs_shape") or (ds["obs_dim"],))
        spec = ObsSpec(shape, ds.get("obs_dtype", "float32"), int(ds.get("obs_state_dim", 0)))
        agent = make_agent(agent_name, config, obs_spec=spec, action_dim=ds["act_dim"])
    except (OSError, ValueError) as e:
        raise ConfigError(f"{where}: cannot be read ({e})") from None
    except (KeyError, TypeError) as e:
        raise ConfigError(f"{where}: missing or malformed key {e}") from None
    return agent, run.load_params(PARAMS_BEST if best else PARAMS), cfg
