"""Offline-to-online fine-tuning: after the offline updates the agent acts in its environment, its
transitions join a replay buffer on the device, and training goes on (the FQL and GFP reference
protocol, `gfp train --online-steps M`).

Each online step (E = `online_envs` = 1, the reference protocol): the one-step actor samples an
action at the current observation (stochastic, as at evaluation), the environment steps, the
transition is added to the buffer (mask 0 only when the environment *terminated*: a time-limit
truncation keeps mask 1; the D4RL antmaze reward shift of the dataset applies to online rewards
too), a finished episode is reset, then one update samples its minibatch from the buffer. The
buffer starts as the offline dataset (capacity max(buffer_size, dataset size + 1); once full the
oldest rows are overwritten), or, with balanced sampling, holds only online rows and each minibatch
is half dataset, half buffer. With E > 1, E environments step in parallel (worker processes of the
evaluation pool, gfp.evaluate.EnvPool) and E updates follow each collection step: still one update
per environment step, and the global step (offline steps + environment steps) counts updates.

Speed: the buffer is a fixed-capacity pytree on the device (`ReplayBuffer`: arrays of `capacity`
rows, the filled size, the insertion pointer, the rows added). ONE jitted call per collection step,
with the train states and buffers donated (updated in place, never copied), inserts the E rows,
runs the E updates (lax.scan) and samples the next actions; the host only steps the environments.

Checkpoints hold the rows added online that the buffer still holds, in insertion order, and the
counters: the buffer is its starting content (the dataset, or nothing) with those rows written back
at their positions. `gfp.run` stores them inside the checkpoint file (one atomic write). A resumed
run restarts each environment's current episode with a fresh reset; the partial episode's rows stay
in the buffer (they were real transitions; the cut keeps mask 1, like a time limit). So the buffer
of a run killed and resumed holds exactly one row per environment step of the run, none twice.

For ReBRAC (which reads `next_actions`) a row's next action is the action taken at its
next_observation, written into the row when that action is taken; at an episode's end, and for the
newest row of each environment until then, the row's own action stands in (as in
gfp.train.next_actions).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from tqdm.auto import tqdm

from gfp.agents.base import Agent, Batch, TrainState, where_tree
from gfp.errors import DataError
from gfp.train import (
    LogSums,
    OnCheckpoint,
    OnEval,
    OnLog,
    chunk_health,
    divergence_error,
    log_rows,
    sample_batch,
)


# ---- the replay buffer (device) ------------------------------------------------------------------
@struct.dataclass
class ReplayBuffer:
    """Transitions on the device: `data[key]` has `capacity` rows (a leading seed axis when
    stacked); rows [0, size) are filled and the next row goes to `pointer`."""

    data: dict[str, jax.Array]
    size: jax.Array  # int32: rows filled
    pointer: jax.Array  # int32: where the next row goes
    added: jax.Array  # int32: rows added since creation (the online rows)
    base: int = struct.field(pytree_node=False)  # rows it was created with (dataset size, or 0)

    @property
    def capacity(self) -> int:
        return int(self.data["actions"].shape[-2])


def create_buffers(initial: Mapping[str, Any], capacity: int, n_seeds: int) -> ReplayBuffer:
    """One buffer per seed (stacked), each starting as the rows of `initial` (the dataset, or
    zero rows for an empty buffer) followed by empty space up to `capacity` rows."""
    initial = {k: jnp.asarray(v) for k, v in initial.items()}
    n = int(initial["actions"].shape[0])
    if not 0 <= n <= capacity:
        raise ValueError(f"{n} initial rows do not fit a buffer of {capacity}")

    def fill(x: jax.Array) -> jax.Array:
        pad = jnp.zeros((capacity - n, *x.shape[1:]), x.dtype)
        return jnp.broadcast_to(jnp.concatenate([x, pad]), (n_seeds, capacity, *x.shape[1:]))

    data = jax.jit(lambda d: jax.tree.map(fill, d))(initial)  # built once, on the device
    count = jnp.full((n_seeds,), n, jnp.int32)
    return ReplayBuffer(data, count, count % capacity, jnp.zeros((n_seeds,), jnp.int32), n)


def add_rows(buffer: ReplayBuffer, rows: Batch, active: jax.Array | bool = True) -> ReplayBuffer:
    """`buffer` (one seed's) with the E rows of `rows` appended at the pointer, in order,
    overwriting the oldest rows once full. With `active` false nothing changes (written this way
    so that it traces to the same in-place scatter)."""
    cap = buffer.capacity
    e = rows["actions"].shape[0]
    pos = (buffer.pointer + jnp.arange(e)) % cap
    n = jnp.where(active, e, 0).astype(jnp.int32)

    def put(x: jax.Array, r: jax.Array) -> jax.Array:
        return x.at[pos].set(jnp.where(active, r.astype(x.dtype), x[pos]))

    data = {k: put(x, rows[k]) for k, x in buffer.data.items()}
    return buffer.replace(
        data=data,
        size=jnp.minimum(buffer.size + n, cap),
        pointer=(buffer.pointer + n) % cap,
        added=buffer.added + n,
    )


def fill_next_actions(buffer: ReplayBuffer, at: jax.Array, actions: jax.Array) -> ReplayBuffer:
    """Write `actions[j]` as the next action of row `at[j]` (skipped where `at[j]` < 0); a no-op
    for buffers without next_actions (agents that do not read them)."""
    if "next_actions" not in buffer.data:
        return buffer
    idx = jnp.where(at >= 0, at, buffer.capacity)  # out of range: dropped
    na = buffer.data["next_actions"].at[idx].set(actions, mode="drop")
    return buffer.replace(data={**buffer.data, "next_actions": na})


def sample_training_batch(
    buffer: ReplayBuffer, offline: Batch, rng: jax.Array, batch_size: int, balanced: bool
) -> Batch:
    """A minibatch from the buffer's filled rows; `balanced`: the first batch_size // 2 rows from
    the offline data, the rest from the buffer (the reference code's balanced sampling)."""
    if not balanced:
        return sample_batch(buffer.data, rng, batch_size, size=buffer.size)
    r_off, r_on = jax.random.split(rng)
    half = batch_size // 2
    a = sample_batch(offline, r_off, half)
    b = sample_batch(buffer.data, r_on, batch_size - half, size=buffer.size)
    return jax.tree.map(lambda x, y: jnp.concatenate([x, y.astype(x.dtype)]), a, b)


def held_positions(base: int, capacity: int, added: int) -> np.ndarray:
    """Buffer positions of the online rows a buffer still holds, oldest first."""
    k = np.arange(max(0, added - capacity), added)
    return (base + k) % capacity


def held_rows(buffers: ReplayBuffer, i: int, added: int) -> dict[str, np.ndarray]:
    """Seed i's online rows still in the buffer, oldest first, on the host (for a checkpoint)."""
    pos = jnp.asarray(held_positions(buffers.base, buffers.capacity, added))
    return {k: np.asarray(x[i, pos]) for k, x in buffers.data.items()}


def restore_rows(
    buffers: ReplayBuffer, i: int, rows: Mapping[str, np.ndarray], added: int
) -> ReplayBuffer:
    """`buffers` with seed i's buffer as it was after `added` online rows, of which `rows` are the
    ones it still held (`held_rows`)."""
    cap, base = buffers.capacity, buffers.base
    pos = held_positions(base, cap, added)
    if set(rows) != set(buffers.data) or any(len(r) != len(pos) for r in rows.values()):
        raise DataError(
            f"the checkpoint's replay rows ({sorted(rows)}, {len(next(iter(rows.values())))} "
            f"rows) do not fit {added} online rows of {sorted(buffers.data)}"
        )
    data = {k: x.at[i, pos].set(jnp.asarray(rows[k], x.dtype)) for k, x in buffers.data.items()}
    return buffers.replace(
        data=data,
        size=buffers.size.at[i].set(min(base + added, cap)),
        pointer=buffers.pointer.at[i].set((base + added) % cap),
        added=buffers.added.at[i].set(added),
    )


# ---- the jitted collection step ------------------------------------------------------------------
def make_collect_step(agent: Agent, balanced: bool, policy: str = "actor") -> Callable:
    """f(states, buffers, offline, rows, fill_at, active, obs) -> (states, buffers, metrics,
    health, actions), all seeds at once (leading seed axis; `offline` shared): per seed, write
    next actions at `fill_at`, add the E `rows`, run E updates (metrics: their mean; health: as
    gfp.train.chunk_health), then sample the actions at `obs` (E observations). A seed whose
    `active` is false is left unchanged. States and buffers are donated."""
    batch_size = agent.config.batch_size

    def add(buffer, rows, fill_at, active):
        return add_rows(fill_next_actions(buffer, fill_at, rows["actions"]), rows, active)

    def train_and_act(state, buffer, offline, active, obs):
        e = obs.shape[0]  # one update per environment step

        def body(state: TrainState, _):
            rng, batch_rng = jax.random.split(state.rng)
            batch = sample_training_batch(buffer, offline, batch_rng, batch_size, balanced)
            return agent.update(state.replace(rng=rng), batch)

        new, metrics = jax.lax.scan(body, state, None, length=e)
        health = chunk_health(new, metrics, e)
        rng, act_rng = jax.random.split(new.rng)
        new = new.replace(rng=rng)
        actions = agent.act(new.params, obs, act_rng, policy)
        return where_tree(active, new, state), jax.tree.map(jnp.mean, metrics), health, actions

    def step(states, buffers, offline, rows, fill_at, active, obs):
        # The buffers are always updated under vmap: slicing one seed out of a donated buffer
        # and stacking it back makes XLA copy it (all `capacity` rows) on every step.
        buffers = jax.vmap(add)(buffers, rows, fill_at, active)
        if states.step.shape[0] > 1:
            out = jax.vmap(train_and_act, in_axes=(0, 0, None, 0, 0))(
                states, buffers, offline, active, obs
            )
        else:  # one seed: no vmap over the update (a smaller program, as gfp.train does)
            one = jax.tree.map(lambda x: x[0], (states, buffers, active, obs))
            out = jax.tree.map(lambda x: x[None], train_and_act(*one[:2], offline, *one[2:]))
        states, metrics, health, actions = out
        return states, buffers, metrics, health, actions

    return jax.jit(step, donate_argnums=(0, 1))


def make_first_actions(agent: Agent, policy: str = "actor") -> Callable:
    """f(states, obs) -> (states, actions): the actions at the first observations (per seed: E of
    them), drawing their noise from each state's key as the collection step does."""

    def one(state: TrainState, obs: jax.Array):
        rng, act_rng = jax.random.split(state.rng)
        return state.replace(rng=rng), agent.act(state.params, obs, act_rng, policy)

    return jax.jit(jax.vmap(one))


# ---- the host side: environments, counters, the loop ------------------------------------------
def reset_seed(seed: int, env: int, episode: int) -> int:
    """The reset seed of a collection episode (distinct from evaluation's seed + i)."""
    return int(np.random.SeedSequence([seed, env, episode, 0x0F1]).generate_state(1)[0])


@dataclasses.dataclass
class EnvSlot:
    """One environment collecting for one seed. `episode` and `start` are saved in checkpoints."""

    episode: int = 0  # index of the current episode
    start: int = 0  # the seed's online row index of the current episode's first transition
    ret: float = 0.0  # its return so far (rewards as the environment gives them)
    length: int = 0
    prev: int = -1  # buffer position of its last row (its next action is still to come), or -1
    obs: Any = None


class Collector:
    """The environments, buffers and counters of an online phase (every seed, `n_envs` envs each;
    environment slot i * n_envs + j of `pool` is seed i's env j).

    `saved[i]`: seed i's checkpoint payload (`payload`), or None to start with an empty online
    part. `reward_shift` is added to every online reward (the dataset's own shift)."""

    def __init__(
        self,
        agent: Agent,
        pool: Any,
        initial: Batch,
        *,
        seeds: Sequence[int],
        n_envs: int,
        capacity: int,
        balanced: bool,
        reward_shift: float = 0.0,
        saved: Sequence[tuple[Mapping[str, np.ndarray], Mapping[str, Any]] | None] = (),
        policy: str = "actor",
    ):
        self.agent, self.pool, self.seeds, self.n_envs = agent, pool, list(seeds), n_envs
        self.balanced, self.reward_shift = balanced, float(reward_shift)
        keys = list(agent.batch_keys)
        initial = {k: initial[k] for k in keys}
        self.offline = initial if balanced else {}
        start = {k: x[:0] for k, x in initial.items()} if balanced else initial
        self.buffers = create_buffers(start, capacity, len(self.seeds))
        self.specs = {k: (x.shape[1:], x.dtype) for k, x in initial.items()}
        self.added = [0] * len(self.seeds)
        self.slots = [[EnvSlot() for _ in range(n_envs)] for _ in self.seeds]
        self.restarted: list[str] = []  # what resuming did to partial episodes (for a message)
        for i, item in enumerate(saved):
            if item is not None:
                self._restore(i, *item)
        self.collect = make_collect_step(agent, balanced, policy)
        self.first = make_first_actions(agent, policy)
        self.actions: np.ndarray | None = None

    # -- checkpoints --
    def payload(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Seed i's part of a checkpoint: (arrays: the held online rows, JSON: the counters)."""
        meta = {
            "added": self.added[i],
            "capacity": self.buffers.capacity,
            "base": self.buffers.base,
            "envs": [{"episode": s.episode, "start": s.start} for s in self.slots[i]],
        }
        return {"rows": held_rows(self.buffers, i, self.added[i])}, meta

    def _restore(self, i: int, arrays: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        want = {"capacity": self.buffers.capacity, "base": self.buffers.base}
        got = {k: meta.get(k) for k in want}
        if got != want or len(meta.get("envs", ())) != self.n_envs:
            raise DataError(
                f"the checkpoint's replay buffer ({got}, {len(meta.get('envs', ()))} envs) is not "
                f"this run's ({want}, {self.n_envs} envs)"
            )
        added = int(meta["added"])
        self.buffers = restore_rows(self.buffers, i, arrays["rows"], added)
        self.added[i] = added
        for j, (slot, env) in enumerate(zip(self.slots[i], meta["envs"], strict=True)):
            # The interrupted episode ends here (its rows stay); the next one starts afresh.
            slot.episode, slot.start = int(env["episode"]) + 1, added
            kept = added - int(env["start"])
            if kept:
                self.restarted.append(
                    f"seed {self.seeds[i]} env {j}: episode {env['episode']} restarted, its {kept} "
                    "transitions so far kept"
                )

    # -- environment steps --
    def reset(self, states: TrainState) -> TrainState:
        """Start every environment's current episode and sample the first actions."""
        jobs = []
        for i, seed in enumerate(self.seeds):
            for j, slot in enumerate(self.slots[i]):
                jobs.append((i * self.n_envs + j, reset_seed(seed, j, slot.episode)))
                slot.ret, slot.length, slot.prev = 0.0, 0, -1
        for k, ob in self.pool.reset(jobs):
            self.slots[k // self.n_envs][k % self.n_envs].obs = ob
        states, actions = self.first(states, self.observations())
        self.actions = np.asarray(actions)
        return states

    def observations(self) -> np.ndarray:
        """The current observation of every environment, (seeds, envs, *shape)."""
        shape, dtype = self.specs["observations"]
        return np.stack(
            [np.stack([np.asarray(s.obs, dtype).reshape(shape) for s in slots])
             for slots in self.slots]
        )  # fmt: skip

    def step(self, states: TrainState, active: Sequence[bool], step: int) -> tuple:
        """One collection step at global step `step` for the seeds that are `active`: step their
        environments with the pending actions, then the jitted add + E updates + next actions.
        Returns (states, metrics, health, finished episodes [(seed index, row)])."""
        e = self.n_envs
        assert self.actions is not None, "reset() first"
        rows = {k: np.zeros((len(self.seeds), e, *shape), dtype) for k, (shape, dtype) in
                self.specs.items()}  # fmt: skip
        fill_at = np.full((len(self.seeds), e), -1, np.int32)
        jobs = [
            (i * e + j, self.actions[i, j]) for i, a in enumerate(active) if a for j in range(e)
        ]
        resets, episodes = [], []
        for k, (ob, reward, terminated, truncated, success) in self.pool.step(jobs):
            i, j = divmod(k, e)
            slot, index = self.slots[i][j], self.added[i] + j
            row = {
                "observations": slot.obs,
                "actions": self.actions[i, j],
                "rewards": reward + self.reward_shift,
                "masks": 0.0 if terminated else 1.0,
                "next_observations": ob,
                "next_actions": self.actions[i, j],  # its own until the next one is known
            }
            for key in rows:
                rows[key][i, j] = np.asarray(row[key], rows[key].dtype).reshape(rows[key].shape[2:])
            fill_at[i, j] = slot.prev
            slot.ret, slot.length = slot.ret + float(reward), slot.length + 1
            if terminated or truncated:
                episodes.append((i, {"step": step + j + 1, "env": j, "episode": slot.episode,
                                     "return": slot.ret, "success": success,
                                     "length": slot.length}))  # fmt: skip
                slot.episode, slot.start = slot.episode + 1, index + 1
                slot.ret, slot.length, slot.prev = 0.0, 0, -1
                resets.append((k, reset_seed(self.seeds[i], j, slot.episode)))
            else:
                slot.prev = (self.buffers.base + index) % self.buffers.capacity
                slot.obs = ob
        for k, ob in self.pool.reset(resets):
            self.slots[k // e][k % e].obs = ob
        for i, a in enumerate(active):
            self.added[i] += e if a else 0
        states, self.buffers, metrics, health, actions = self.collect(
            states,
            self.buffers,
            self.offline,
            rows,
            fill_at,
            np.asarray(active),
            self.observations(),
        )
        metrics, health, actions = jax.device_get((metrics, health, actions))
        # A seed sitting out keeps its pending actions (those of its unchanged state).
        self.actions = np.where(np.asarray(active)[:, None, None], actions, self.actions)
        return states, metrics, health, episodes


def _crossed(before: int, after: int, every: int) -> bool:
    """Whether (before, after] contains a multiple of `every` (> 0)."""
    return every > 0 and after // every > before // every


def run_online(
    collector: Collector,
    states: TrainState,
    *,
    at: Sequence[int],
    end: int,
    log_every: int = 1000,
    eval_every: int = 0,
    checkpoint_every: int = 0,
    on_log: OnLog | None = None,
    on_eval: OnEval | None = None,
    on_checkpoint: OnCheckpoint | None = None,
    on_episode: Callable[[int, dict[str, float]], None] | None = None,
    stop: Callable[[], bool] | None = None,
    log_sums: Sequence[LogSums] | None = None,
    check_finite: bool = True,
    progress: bool = True,
) -> TrainState:
    """Collect and train from min(`at`) to `end` (global steps; seed i starts at at[i] and sits
    out until the others reach it). Callbacks as in gfp.train.train, after each collection step
    whose E steps reach a multiple of the interval (and at the end): on_log, on_eval,
    on_checkpoint (also when `stop()` turns true, after which it returns early); on_episode(seed
    index, row) for each finished exploration episode, as it ends. A non-finite metric or
    parameter raises DivergenceError before the step's callbacks."""
    e = collector.n_envs
    n_seeds, step = len(at), min(at)
    sums = [LogSums.from_json(s.to_json()) for s in log_sums] if log_sums else []
    sums += [LogSums() for _ in range(n_seeds - len(sums))]
    states = collector.reset(states)
    bar = tqdm(total=end, initial=step, unit="step", disable=not progress, dynamic_ncols=True)
    t_step, t0 = step, time.perf_counter()
    try:
        while step < end:
            before, step = step, step + e
            active = [before >= a for a in at]
            states, metrics, health, episodes = collector.step(states, active, before)
            for i in (i for i in range(n_seeds) if active[i]):
                err = divergence_error(before, step, health, i) if check_finite else None
                if err is not None:
                    raise err
                sums[i].add({k: v[i] for k, v in metrics.items()}, e)
            for i, row in episodes:
                if on_episode:
                    on_episode(i, row)
            bar.update(e)
            if on_log and (_crossed(before, step, log_every) or step == end):
                on_log(step, log_rows(sums, active, step - t_step, time.perf_counter() - t0))
                t_step, t0 = step, time.perf_counter()
            if on_eval and (_crossed(before, step, eval_every) or step == end):
                result = on_eval(step, states)
                if result:
                    bar.set_postfix({k: f"{v:.3g}" for k, v in result.items()})
            stopping = stop is not None and stop()
            if on_checkpoint and (
                stopping or step == end or _crossed(before, step, checkpoint_every)
            ):
                on_checkpoint(step, states, sums)
            if stopping:
                break
    finally:
        bar.close()
    return states
