"""Offline-to-online fine-tuning: after the offline updates the agent acts in its environment, its
transitions join a replay buffer on the device, and training goes on (the FQL and GFP reference
protocol, `gfp train --online-steps M`).

Each online step (E = `online_envs` = 1, the reference protocol): the policy samples an action at
the current observation with its exploration noise (`Agent.explore_action`, the reference's
temperature 1: the flow agents draw z as at evaluation, ReBRAC adds clipped Gaussian noise to its
deterministic actor, IQL and BC sample their Gaussian), the environment steps, the
transition is added to the buffer (mask 0 only when the environment *terminated*: a time-limit
truncation keeps mask 1; the D4RL antmaze reward shift of the dataset applies to online rewards
too), a finished episode is reset, then one update samples its minibatch from the buffer. The
buffer starts as the offline dataset (capacity max(buffer_size, dataset size + 1); once full the
oldest rows are overwritten), or, with balanced sampling, holds only online rows and each minibatch
is half dataset, half buffer. With E > 1, E environments step in parallel (worker processes of the
evaluation pool, gfp.evaluate.EnvPool) and E updates follow each collection step: still one update
per environment step, and the global step (offline steps + environment steps) counts updates.

The online phase is a sampler plus a collection step: the replay buffer and its sampler are in
gfp.engine.replay; `Collector` is the phase that gfp.engine.driver.drive advances, one collection
step (E environment steps, E updates) per boundary, so logging, evaluation, checkpoints, signals
and divergence work as offline. ONE jitted call per collection step, with the train states and
buffers donated (updated in place, never copied), inserts the E rows, runs the E updates (the
offline chunk's scan, gfp.engine.chunk.scan_updates, over the replay sampler) and samples the next
actions; the host only steps the environments.

Checkpoints hold the buffer's online rows and the counters (`Collector.payload`: per environment
its episode and where it started, the pending actions and the rest of the current chunk); `gfp.run`
writes the rows added since the previous checkpoint as a replay segment beside it (gfp.rundir). A
resumed run continues each environment's interrupted episode exactly: the environment is reset with
that episode's seed and the episode's actions, read back from the buffer, are stepped again; the
simulation is deterministic, so the observations it reproduces equal the buffer's bit for bit
(checked at every step), and with the pending actions restored the run goes on as if never stopped
(a run killed with SIGKILL resumes to the final parameters and buffer of an uninterrupted one).
Where the replay does not reproduce the buffer (another machine, another simulator version) the
interrupted episode ends there instead and the next starts with a fresh reset; its rows stay in the
buffer (real transitions; the cut keeps mask 1, like a time limit), and resuming says so. Either
way the buffer of a run killed and resumed holds exactly one row per environment step, none twice.

For ReBRAC (which reads `next_actions`) a row's next action is the action taken at its
next_observation, written into the row when that action is taken; at an episode's end, and for the
newest row of each environment until then, the row's own action stands in (as in
gfp.engine.samplers.next_actions).

Action chunks (an agent config's `horizon` h > 1: Q-chunking, Li, Zhou and Levine, NeurIPS 2025,
Sec. 4: the chunk is executed open loop). The policy's output at an observation is a chunk of
`agent.chunk_len` actions; each environment keeps a queue of them: when it is empty the newest
chunk (the actions sampled at the environment's current observation) fills it, each environment
step pops one, and an episode's end (or a reset, or a resumed run) empties it, so a chunk never
runs into the next episode. The buffer's rows are the single environment steps, with `terminals`
(terminated or truncated) so that the replay sampler's h-step windows see the episodes' ends
(gfp.engine.replay); a resumed run's interrupted episode ends with terminals = 1 at its last row
(the cut, like a time limit: mask 1), recorded in the counters (`cuts`) so every later resume
marks it again. Windows need one environment's rows in order, so h > 1 collects with one
environment per seed (online_envs > 1 is refused: gfp.engine.sequence.check_online).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gfp.agents.base import Agent, Batch, TrainState, where_tree
from gfp.engine.chunk import chunk_health, over_seeds, scan_updates
from gfp.engine.replay import (
    ReplaySampler,
    add_rows,
    create_buffers,
    fill_next_actions,
    held_rows,
    restore_rows,
)
from gfp.engine.sequence import check_online, data_keys, horizon_of
from gfp.errors import DataError


# ---- the jitted collection step ------------------------------------------------------------------
def make_collect_step(agent: Agent, sampler: ReplaySampler, policy: str = "actor") -> Callable:
    """f(states, buffers, offline, rows, fill_at, active, obs) -> (states, buffers, metrics,
    health, actions), all seeds at once (leading seed axis; `offline` shared): per seed, write
    next actions at `fill_at`, add the E `rows`, run E updates from `sampler` (metrics: their
    mean; health: gfp.engine.chunk.chunk_health), then sample the actions at `obs` (E
    observations). A seed whose `active` is false is left unchanged. States and buffers are
    donated."""

    def add(buffer, rows, fill_at, active):
        return add_rows(fill_next_actions(buffer, fill_at, rows["actions"]), rows, active)

    def train_and_act(state, data, active, obs):
        e = obs.shape[0]  # one update per environment step
        new, metrics = scan_updates(agent, sampler, state, data, None, e)
        health = chunk_health(new, metrics, e)
        rng, act_rng = jax.random.split(new.rng)
        new = new.replace(rng=rng)
        actions = agent.act(new.params, obs, act_rng, policy, explore=True)
        return where_tree(active, new, state), jax.tree.map(jnp.mean, metrics), health, actions

    def step(states, buffers, offline, rows, fill_at, active, obs):
        # The buffers are always updated under vmap: slicing one seed out of a donated buffer
        # and stacking it back makes XLA copy it (all `capacity` rows) on every step.
        buffers = jax.vmap(add)(buffers, rows, fill_at, active)
        data = {"buffer": buffers, "offline": offline}
        out = over_seeds(train_and_act, (states, data, active, obs), (0, sampler.data_axes, 0, 0))
        states, metrics, health, actions = out
        return states, buffers, metrics, health, actions

    return jax.jit(step, donate_argnums=(0, 1))


def make_first_actions(agent: Agent, policy: str = "actor") -> Callable:
    """f(states, obs) -> (states, actions): the actions at the first observations (per seed: E of
    them), drawing their noise from each state's key as the collection step does."""

    def one(state: TrainState, obs: jax.Array):
        rng, act_rng = jax.random.split(state.rng)
        return state.replace(rng=rng), agent.act(state.params, obs, act_rng, policy, explore=True)

    return jax.jit(jax.vmap(one))


def _seed_mask(mask: np.ndarray, like: jax.Array) -> jax.Array:
    """A per-seed bool `mask` shaped to broadcast against `like` (leading seed axis)."""
    return jnp.asarray(mask).reshape(mask.shape + (1,) * (like.ndim - 1))


# ---- the host side: environments and counters; the phase the driver advances ----------------
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
    resumed: bool = False  # restored mid-episode from a checkpoint: `reset` leaves it running
    taken: list = dataclasses.field(default_factory=list)  # the current episode's actions so far


class Collector:
    """The online phase: the environments, buffers and counters of every seed (`n_envs` envs
    each; environment slot i * n_envs + j of `pool` is seed i's env j), advanced by
    gfp.engine.driver.drive one collection step per boundary.

    `saved[i]`: seed i's checkpoint payload (`payload`), or None to start with an empty online
    part. `reward_shift` is added to every online reward (the dataset's own shift).
    `on_episode(seed index, row)` is called for each finished exploration episode, as it ends."""

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
        on_episode: Callable[[int, dict[str, Any]], None] | None = None,
    ):
        self.agent, self.pool, self.seeds, self.n_envs = agent, pool, list(seeds), n_envs
        self.reward_shift = float(reward_shift)
        self.horizon = horizon = horizon_of(agent.config)
        check_online(horizon, n_envs)
        # The open loop's chunks: the policy's output holds chunk_len actions of the environment.
        self.chunk_len = int(getattr(agent, "chunk_len", 1))
        self.env_action_dim = int(getattr(agent, "env_action_dim", agent.action_dim))
        keys = list(data_keys(agent.batch_keys, horizon))
        missing = [k for k in keys if k not in initial]
        if missing:
            raise DataError(f"the online phase's initial data lacks {missing} (horizon {horizon})")
        initial = {k: initial[k] for k in keys}
        self.on_episode = on_episode
        start = {k: x[:0] for k, x in initial.items()} if balanced else initial
        buffers = create_buffers(start, capacity, len(self.seeds))
        out = agent.batch_keys if horizon > 1 else None
        self.sampler = ReplaySampler(buffers, initial if balanced else {}, balanced, horizon, out)
        self.specs = {k: (x.shape[1:], x.dtype) for k, x in initial.items()}
        self.added = [0] * len(self.seeds)
        self.slots = [[EnvSlot() for _ in range(n_envs)] for _ in self.seeds]
        # Per environment, the actions of the current chunk still to execute (open loop).
        self.queues = [[collections.deque() for _ in range(n_envs)] for _ in self.seeds]
        # Per seed, the online rows ending an episode a resume interrupted (horizon > 1).
        self.cuts: list[list[int]] = [[] for _ in self.seeds]
        self.restarted: list[str] = []  # what resuming did to partial episodes (for a message)
        # Per seed, the pending actions a checkpoint saved (None: sample them at reset).
        self.pending: list[np.ndarray | None] = [None] * len(self.seeds)
        self.actions: np.ndarray | None = None
        for i, item in enumerate(saved):
            if item is not None:
                self._restore(i, *item)
        self.collect = make_collect_step(agent, self.sampler, policy)
        self.first = make_first_actions(agent, policy)

    @property
    def buffers(self) -> Any:
        return self.sampler.buffers

    @buffers.setter
    def buffers(self, value: Any) -> None:
        self.sampler.buffers = value

    # -- the phase gfp.engine.driver.drive advances --
    def begin(self, states: TrainState, at: Sequence[int]) -> TrainState:
        return self.reset(states)

    def boundaries(self, start: int, end: int, every: Sequence[int], at: Sequence[int]):
        return range(start + self.n_envs, end + 1, self.n_envs)  # one per collection step

    def advance(self, states, before, step, active):
        states, metrics, health, episodes = self.step(states, active, before)
        for i, row in episodes:
            if self.on_episode:
                self.on_episode(i, row)
        return states, metrics, health

    # -- checkpoints --
    def payload(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Seed i's part of a checkpoint: (arrays: the held online rows, JSON: the counters)."""
        return {"rows": held_rows(self.buffers, i, self.added[i])}, self.counters(i)

    def counters(self, i: int) -> dict[str, Any]:
        """Seed i's counters of `payload`, without its rows (gfp.run writes those in segments)."""
        out = {
            "added": self.added[i],
            "capacity": self.buffers.capacity,
            "base": self.buffers.base,
            "envs": [
                {
                    "episode": s.episode,
                    "start": s.start,
                    "queue": [np.asarray(a).tolist() for a in self.queues[i][j]],
                    # The episode's actions the buffer no longer holds (it began before the
                    # oldest held row), so that a resume can replay it; usually none.
                    "lost": [np.asarray(a).tolist() for a in s.taken[: self._lost(i, j)]],
                }
                for j, s in enumerate(self.slots[i])
            ],
        }
        if self.actions is not None:  # float32 -> JSON -> float32 is exact
            out["pending"] = np.asarray(self.actions[i]).tolist()
        if "terminals" in self.buffers.data:
            out["cuts"] = list(self.cuts[i])
        return out

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
        exact = "pending" in meta  # checkpoints before the exact resume lack the pending actions
        for j, (slot, env) in enumerate(zip(self.slots[i], meta["envs"], strict=True)):
            episode, start = int(env["episode"]), int(env["start"])
            if exact and self._replay(i, j, episode, start, arrays["rows"], env):
                continue
            exact = False
            # The interrupted episode ends here (its rows stay); the next one starts afresh.
            slot.episode, slot.start = episode + 1, added
            kept = len(self._episode_rows(j, start, added))
            if kept:
                self.restarted.append(
                    f"seed {self.seeds[i]} env {j}: episode {episode} restarted, its {kept} "
                    "transitions so far kept"
                )
                if "terminals" in self.buffers.data:  # one env (check_online): its last row
                    self.cuts[i].append(added - 1)
        if exact:
            self.pending[i] = np.asarray(meta["pending"], np.float32)
        if "terminals" in self.buffers.data:
            self._mark_cuts(i, [int(c) for c in meta.get("cuts", ())] + self.cuts[i])

    def _lost(self, i: int, j: int) -> int:
        """How many of seed i's environment j's current-episode rows the buffer has overwritten."""
        first = max(0, self.added[i] - self.buffers.capacity)
        return sum(k < first for k in self._episode_rows(j, self.slots[i][j].start, self.added[i]))

    def _episode_rows(self, j: int, start: int, added: int) -> list[int]:
        """Online row indices of environment j's transitions in [start, added): a collection step
        adds row added + j for environment j, so its rows are those = j modulo n_envs."""
        return [k for k in range(start, added) if k % self.n_envs == j]

    def _replay(
        self,
        i: int,
        j: int,
        episode: int,
        start: int,
        rows: Mapping[str, np.ndarray],
        saved: Mapping[str, Any],
    ) -> bool:
        """Bring seed i's environment j back to where the checkpoint left it: reset it with the
        interrupted episode's seed and step the episode's actions again (from the buffer, or the
        checkpoint's `lost` ones the buffer overwrote), checking every observation the buffer
        holds. True if it did (the slot then continues the episode); False, with the environment
        left to `reset`, if an action is missing or the simulation gives another observation."""
        slot, added, seed = self.slots[i][j], self.added[i], self.seeds[i]
        first = max(0, added - self.buffers.capacity)  # online index of rows[...][0]
        steps = self._episode_rows(j, start, added)
        lost = [np.asarray(a, np.float32) for a in saved.get("lost", [])]
        if sum(k < first for k in steps) != len(lost):
            return False  # overwritten rows whose actions the checkpoint does not have
        shape, dtype = self.specs["observations"]

        def held(key: str, index: int) -> np.ndarray | None:
            return rows[key][index - first] if index >= first else None

        def same(ob: Any, want: np.ndarray | None) -> bool:
            return want is None or np.array_equal(np.asarray(ob, dtype).reshape(shape), want)

        k = i * self.n_envs + j
        ((_, ob),) = self.pool.reset([(k, reset_seed(seed, j, episode))])
        if steps and not same(ob, held("observations", steps[0])):
            return False
        ret, taken = 0.0, []
        for n, index in enumerate(steps):
            action = lost[n] if index < first else rows["actions"][index - first]
            ((_, (ob, reward, terminated, truncated, _)),) = self.pool.step([(k, action)])
            if not same(ob, held("next_observations", index)) or terminated or truncated:
                return False
            ret += float(reward)
            taken.append(action)
        slot.episode, slot.start, slot.obs, slot.taken = episode, start, ob, taken
        slot.ret, slot.length = ret, len(steps)
        slot.prev = (self.buffers.base + steps[-1]) % self.buffers.capacity if steps else -1
        slot.resumed = True
        self.queues[i][j].extend(np.asarray(a, np.float32) for a in saved.get("queue", []))
        if steps:
            self.restarted.append(
                f"seed {seed} env {j}: episode {episode} resumed where it stopped ({len(steps)} "
                "steps replayed, every observation equal to the buffer's)"
            )
        return True

    def _mark_cuts(self, i: int, cuts: Sequence[int]) -> None:
        """terminals = 1 at seed i's online rows `cuts` (interrupted episodes' last rows) that the
        buffer still holds; those are the cuts its counters keep."""
        cap, added = self.buffers.capacity, self.added[i]
        held = sorted({c for c in cuts if added - cap <= c < added})
        self.cuts[i] = held
        if held:
            pos = jnp.asarray((self.buffers.base + np.asarray(held)) % cap)
            t = self.buffers.data["terminals"]
            data = {**self.buffers.data, "terminals": t.at[i, pos].set(1.0)}
            self.buffers = self.buffers.replace(data=data)

    # -- environment steps --
    def reset(self, states: TrainState) -> TrainState:
        """Start every environment's current episode and sample the first actions."""
        jobs = []
        for i, seed in enumerate(self.seeds):
            for j, slot in enumerate(self.slots[i]):
                if slot.resumed:  # continues its interrupted episode (`_replay`)
                    slot.resumed = False
                    continue
                jobs.append((i * self.n_envs + j, reset_seed(seed, j, slot.episode)))
                slot.ret, slot.length, slot.prev, slot.taken = 0.0, 0, -1, []
                self.queues[i][j].clear()
        for k, ob in self.pool.reset(jobs):
            self.slots[k // self.n_envs][k % self.n_envs].obs = ob
        new, actions = self.first(states, self.observations())
        actions = np.array(actions)  # a writable copy
        # A seed resumed exactly takes the actions its checkpoint saved and keeps its key, as the
        # uninterrupted run had them at this step; the others sample theirs.
        kept = np.array([p is not None for p in self.pending])
        for i, p in enumerate(self.pending):
            if p is not None:
                actions[i] = p.reshape(actions[i].shape)
        self.pending = [None] * len(self.seeds)
        self.actions = actions
        if kept.any():
            new = new.replace(rng=jnp.where(_seed_mask(kept, states.rng), states.rng, new.rng))
        return new

    def observations(self) -> np.ndarray:
        """The current observation of every environment, (seeds, envs, *shape)."""
        shape, dtype = self.specs["observations"]
        return np.stack(
            [np.stack([np.asarray(s.obs, dtype).reshape(shape) for s in slots])
             for slots in self.slots]
        )  # fmt: skip

    def next_action(self, i: int, j: int) -> np.ndarray:
        """The action seed i's environment j executes now: the next of its chunk's queue, which an
        empty queue first fills with the chunk sampled at the current observation (the policy's
        output as (chunk_len, A), oldest first). chunk_len 1: that output itself."""
        queue = self.queues[i][j]
        if not queue:
            queue.extend(self.actions[i, j].reshape(self.chunk_len, self.env_action_dim))
        return queue.popleft()

    def step(self, states: TrainState, active: Sequence[bool], step: int) -> tuple:
        """One collection step at global step `step` for the seeds that are `active`: step their
        environments with the pending actions, then the jitted add + E updates + next actions.
        Returns (states, metrics, health, finished episodes [(seed index, row)])."""
        e = self.n_envs
        assert self.actions is not None, "reset() first"
        rows = {k: np.zeros((len(self.seeds), e, *shape), dtype) for k, (shape, dtype) in
                self.specs.items()}  # fmt: skip
        fill_at = np.full((len(self.seeds), e), -1, np.int32)
        taken = {(i, j): self.next_action(i, j) for i, a in enumerate(active) if a
                 for j in range(e)}  # fmt: skip
        jobs = [(i * e + j, action) for (i, j), action in taken.items()]
        resets, episodes = [], []
        for k, (ob, reward, terminated, truncated, success) in self.pool.step(jobs):
            i, j = divmod(k, e)
            slot, index, action = self.slots[i][j], self.added[i] + j, taken[i, j]
            row = {
                "observations": slot.obs,
                "actions": action,
                "rewards": reward + self.reward_shift,
                "masks": 0.0 if terminated else 1.0,
                "terminals": 1.0 if terminated or truncated else 0.0,
                "next_observations": ob,
                "next_actions": action,  # its own until the next one is known
            }
            for key in rows:
                rows[key][i, j] = np.asarray(row[key], rows[key].dtype).reshape(rows[key].shape[2:])
            fill_at[i, j] = slot.prev
            slot.ret, slot.length = slot.ret + float(reward), slot.length + 1
            slot.taken.append(rows["actions"][i, j].copy())
            if terminated or truncated:
                episodes.append((i, {"step": step + j + 1, "env": j, "episode": slot.episode,
                                     "return": slot.ret, "success": success,
                                     "length": slot.length}))  # fmt: skip
                slot.episode, slot.start = slot.episode + 1, index + 1
                slot.ret, slot.length, slot.prev, slot.taken = 0.0, 0, -1, []
                self.queues[i][j].clear()  # the rest of the chunk is not executed
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
            self.sampler.offline,
            rows,
            fill_at,
            np.asarray(active),
            self.observations(),
        )
        metrics, health, actions = jax.device_get((metrics, health, actions))
        # A seed sitting out keeps its pending actions (those of its unchanged state).
        self.actions = np.where(np.asarray(active)[:, None, None], actions, self.actions)
        return states, metrics, health, episodes
