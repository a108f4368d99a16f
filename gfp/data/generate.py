"""Offline generation of OGBench datasets with the scripted oracles that ship in the ogbench wheel.

OGBench's official datasets live on a web server that is not always reachable. The manipulation
datasets (cube, scene, puzzle) come from scripted oracles and the pointmaze datasets from a BFS
waypoint "expert", and both ship inside the pip package, so they can be regenerated offline.
This module does that with the official protocol and writes the exact official `.npz` layout, so
`ogbench.make_env_and_datasets(task, dataset_dir=DIR)` reads the result without the network.

Generation is sharded per episode: every episode has its own seed derived from (seed, split,
index), is written atomically as its own small shard file, and the shards are merged in episode
order at the end. The output is therefore byte-identical whatever the number of worker
processes, and a killed run resumes from the shards it already finished.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from gfp.errors import ConfigError, DataError

__all__ = [
    "GENERATABLE",
    "NEEDS_EXPERT_PREFIXES",
    "OFFICIAL_SIZES",
    "dataset_file_stem",
    "default_dataset_dir",
    "generate",
]

# Bump when the protocol or the shard content changes, so stale shards of an older version are never
# merged into a new dataset.
_SHARD_FORMAT = 1

_CUBE_COUNTS = ("single", "double", "triple", "quadruple")
_PUZZLE_SIZES = ("3x3", "4x4", "4x5", "4x6")
_MAZE_SIZES = ("medium", "large", "giant", "teleport")

GENERATABLE: tuple[str, ...] = (
    *(f"cube-{n}-{k}-v0" for n in _CUBE_COUNTS for k in ("play", "noisy")),
    *(f"scene-{k}-v0" for k in ("play", "noisy")),
    *(f"puzzle-{s}-{k}-v0" for s in _PUZZLE_SIZES for k in ("play", "noisy")),
    *(f"pointmaze-{m}-{k}-v0" for m in _MAZE_SIZES for k in ("navigate", "stitch")),
)

# Datasets whose official actions come from SAC experts that OGBench downloads separately.
NEEDS_EXPERT_PREFIXES: tuple[str, ...] = ("antmaze-", "humanoidmaze-", "antsoccer-")


def _official_size(name: str) -> tuple[int, int]:
    """(train episodes, episode length) of the official dataset, from OGBench's commands.sh."""
    if name.startswith("pointmaze-"):
        if name.endswith("-stitch-v0"):
            return 5000, 201
        if name.startswith("pointmaze-giant-"):
            return 500, 2001
        return 1000, 1001
    if "-triple-" in name or "-4x5-" in name:
        return 3000, 1001
    if "-quadruple-" in name or "-4x6-" in name:
        return 5000, 1001
    return 1000, 1001


# Official (train episodes, episode length) per dataset; val is a tenth of train. Note that
# pointmaze stitch (201) and giant-navigate (2001) differ from the usual 1001 rows.
OFFICIAL_SIZES: dict[str, tuple[int, int]] = {n: _official_size(n) for n in GENERATABLE}


def dataset_file_stem(task_name: str) -> str:
    """Map an OGBench task name to the stem of its dataset files (same rule as OGBench's loader).

    'cube-double-play-singletask-task3-v0' -> 'cube-double-play-v0',
    'pointmaze-medium-navigate-singletask-v0' -> 'pointmaze-medium-navigate-v0';
    a plain dataset name maps to itself.
    """
    splits = task_name.split("-")
    if "singletask" in splits:
        pos = splits.index("singletask")
        return "-".join(splits[:pos] + splits[-1:])
    if "oraclerep" in splits:
        return "-".join(splits[:-2] + splits[-1:])
    return task_name


def default_dataset_dir() -> Path:
    """The directory OGBench's own loader reads by default (~/.ogbench/data)."""
    from ogbench.utils import DEFAULT_DATASET_DIR

    return Path(os.path.expanduser(DEFAULT_DATASET_DIR))


# --------------------------------------------------------------------------------------------------
# Dataset specs.


@dataclass(frozen=True)
class _Spec:
    name: str  # dataset name, e.g. 'cube-double-play-v0'
    env_id: str  # goal-conditioned env id, e.g. 'cube-double-v0'
    family: str  # 'cube' | 'scene' | 'puzzle' | 'pointmaze'
    kind: str  # 'play' | 'noisy' | 'navigate' | 'stitch'


def _spec(name: str) -> _Spec:
    if name in GENERATABLE:
        parts = name.split("-")
        family, kind = parts[0], parts[-2]
        env_id = "-".join(parts[:-2] + parts[-1:])
        return _Spec(name=name, env_id=env_id, family=family, kind=kind)
    if name.startswith(NEEDS_EXPERT_PREFIXES):
        raise DataError(
            f"{name!r} cannot be generated offline: it needs OGBench's downloaded expert "
            "checkpoints (SAC policies experts/ant, experts/humanoid, experts/antball), which are "
            "not in the ogbench package. Download the official dataset instead "
            f"(ogbench.download_datasets) or copy {name}.npz and {name}-val.npz into the dataset "
            "directory."
        )
    if name.startswith("visual-"):
        hint = " (pixel 'visual-*' datasets are not supported; use the state-based name)"
    else:
        hint = ""
    raise DataError(
        f"unknown dataset {name!r}{hint}; valid choices: {', '.join(GENERATABLE)} "
        "(a '-singletask[-taskN]' task name is also accepted and mapped to its dataset)"
    )


# --------------------------------------------------------------------------------------------------
# Episode collection. The oracles draw from the global np.random, so each episode seeds it.

# Per-dimension scale of the 'noisy' Gaussian action noise (x, y, z, yaw, gripper).
_NOISY_SCALE = np.array([1.0, 1.0, 1.0, 3.0, 10.0])
_P_RANDOM_ACTION = {"cube": 0.1, "scene": 0.1, "puzzle": 0.2}
_POINTMAZE_NOISE = 0.5
_STITCH_CELLS = 4  # stitch goals lie exactly this many maze cells (BFS steps) from the start
_MAX_SCENE_ATTEMPTS = 1000


def _quiet_make(env_id: str, **kwargs: Any) -> Any:
    """gymnasium.make without the harmless glfw 'DISPLAY missing' and Box precision warnings."""
    import gymnasium
    import ogbench  # noqa: F401  (registers the environments)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The unwrapped env: we count steps ourselves, and the wrappers only add per-step overhead.
        return gymnasium.make(env_id, disable_env_checker=True, **kwargs).unwrapped


class _ManipCollector:
    """Cube / scene / puzzle episodes from the plan ('play') or markov ('noisy') oracles."""

    def __init__(self, spec: _Spec) -> None:
        self.spec = spec
        # visualize_info only recolours geoms; turning it off skips work and changes no state.
        self.env = _quiet_make(
            spec.env_id, terminate_at_goal=False, mode="data_collection", visualize_info=False
        )
        self.noisy = spec.kind == "noisy"
        self.p_random = _P_RANDOM_ACTION[spec.family] if self.noisy else 0.0
        self.has_buttons = spec.family in ("scene", "puzzle")
        self.oracles = self._make_oracles()

    def _make_oracles(self) -> dict[str, Any]:
        env, family = self.env, self.spec.family
        if self.noisy:
            from ogbench.manipspace.oracles.markov.button_markov import ButtonMarkovOracle
            from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle
            from ogbench.manipspace.oracles.markov.drawer_markov import DrawerMarkovOracle
            from ogbench.manipspace.oracles.markov.window_markov import WindowMarkovOracle

            kw = dict(env=env, min_norm=0.4)
            if family == "cube":
                return {"cube": CubeMarkovOracle(**kw)}
            if family == "scene":
                return {
                    "cube": CubeMarkovOracle(max_step=100, **kw),
                    "button": ButtonMarkovOracle(**kw),
                    "drawer": DrawerMarkovOracle(**kw),
                    "window": WindowMarkovOracle(**kw),
                }
            return {"button": ButtonMarkovOracle(gripper_always_closed=True, **kw)}

        from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
        from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
        from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
        from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle

        kw = dict(env=env, noise=0.1, noise_smoothing=0.5)
        if family == "cube":
            return {"cube": CubePlanOracle(**kw)}
        if family == "scene":
            return {
                "cube": CubePlanOracle(**kw),
                "button": ButtonPlanOracle(**kw),
                "drawer": DrawerPlanOracle(**kw),
                "window": WindowPlanOracle(**kw),
            }
        return {"button": ButtonPlanOracle(gripper_always_closed=True, **kw)}

    def _p_stack(self) -> float:
        # Probability that a new cube target is on top of another cube, drawn once per episode.
        name = self.spec.name
        if "-single-" in name:
            return 0.0
        if "-double-" in name:
            return np.random.uniform(0.0, 0.25)
        if "-triple-" in name:
            return np.random.uniform(0.05, 0.35)
        if "-quadruple-" in name:
            return np.random.uniform(0.1, 0.5)
        return 0.5  # scene (puzzle ignores it)

    def episode(self, env_seed: int, length: int) -> dict[str, np.ndarray]:
        for attempt in range(_MAX_SCENE_ATTEMPTS):
            # Only the first attempt reseeds the env: a retry continues both RNG streams, so the
            # retried episode is still a pure function of the episode seed.
            rows = self._rollout(env_seed if attempt == 0 else None, length)
            if self.spec.family != "scene" or _scene_healthy(rows["qpos"]):
                return rows
        raise DataError(
            f"{self.spec.name}: no healthy scene episode in {_MAX_SCENE_ATTEMPTS} attempts"
        )

    def _rollout(self, env_seed: int | None, length: int) -> dict[str, np.ndarray]:
        env = self.env
        ob, info = env.reset(seed=env_seed)
        p_stack = self._p_stack()
        if self.noisy:
            noise_std = np.random.uniform(0.0, 0.1) * _NOISY_SCALE  # xi ~ U(0, 0.1) per episode
        agent = self.oracles[info["privileged/target_task"]]
        agent.reset(ob, info)

        obs = np.empty((length, ob.shape[0]), np.float32)
        acts = np.empty((length, 5), np.float32)
        qpos = np.empty((length, env.model.nq), np.float32)
        qvel = np.empty((length, env.model.nv), np.float32)
        buttons = (
            np.empty((length, len(info["button_states"])), np.int64) if self.has_buttons else None
        )
        for t in range(length):
            if self.p_random > 0.0 and np.random.rand() < self.p_random:
                action = np.random.uniform(-1.0, 1.0, size=5)
            else:
                action = np.asarray(agent.select_action(ob, info), dtype=np.float64)
                if self.noisy:
                    action = action + np.random.normal(0.0, noise_std)
            action = np.clip(action, -1.0, 1.0)
            next_ob, _, _, _, info = env.step(action)
            if agent.done:
                # The official protocol hands the new target's info to the new oracle only; the
                # next select_action still sees this step's info, as in OGBench's script.
                agent_ob, agent_info = env.set_new_target(p_stack=p_stack)
                agent = self.oracles[agent_info["privileged/target_task"]]
                agent.reset(agent_ob, agent_info)
            obs[t] = ob
            acts[t] = action
            qpos[t] = info["prev_qpos"]
            qvel[t] = info["prev_qvel"]
            if buttons is not None:
                buttons[t] = info["prev_button_states"]
            ob = next_ob
        rows = {"observations": obs, "actions": acts, "terminals": _terminals(length)}
        rows.update(qpos=qpos, qvel=qvel)
        if buttons is not None:
            rows["button_states"] = buttons
        return rows


def _scene_healthy(qpos: np.ndarray) -> bool:
    """OGBench's scene rule: the cube must stay visible unless it is inside the drawer."""
    y, z = qpos[:, 15], qpos[:, 16]
    too_far_right = y >= 0.29
    too_far_left_outside_drawer = (y <= -0.3) & ((z < 0.06) | (z > 0.08))
    return not bool(too_far_right.any() or too_far_left_outside_drawer.any())


def _terminals(length: int) -> np.ndarray:
    terminals = np.zeros(length, dtype=bool)
    terminals[-1] = True  # the time-limit truncation: only the last row of each episode
    return terminals


class _MazeCollector:
    """Pointmaze episodes: unit direction to the BFS oracle's next waypoint plus N(0, 0.5) noise."""

    def __init__(self, spec: _Spec) -> None:
        self.spec = spec
        self.env = _quiet_make(spec.env_id, terminate_at_goal=False)
        maze = np.asarray(self.env.maze_map)
        self.maze = maze
        self.all_cells: list[tuple[int, int]] = []
        self.vertex_cells: list[tuple[int, int]] = []
        for i in range(maze.shape[0]):
            for j in range(maze.shape[1]):
                if maze[i, j] != 0:
                    continue
                self.all_cells.append((i, j))
                # Goals are drawn from junctions, corners and dead ends, not straight corridors.
                vertical = maze[i - 1, j] == 0 and maze[i + 1, j] == 0
                horizontal = maze[i, j - 1] == 0 and maze[i, j + 1] == 0
                walled_lr = maze[i, j - 1] == 1 and maze[i, j + 1] == 1
                walled_ud = maze[i - 1, j] == 1 and maze[i + 1, j] == 1
                if not ((vertical and walled_lr) or (horizontal and walled_ud)):
                    self.vertex_cells.append((i, j))

    def _cells_at_distance(self, start: tuple[int, int], distance: int) -> list[tuple[int, int]]:
        """Free cells exactly `distance` BFS steps from `start`, in BFS discovery order."""
        maze = self.maze
        dist = np.full(maze.shape, -1, dtype=np.int64)
        dist[start] = 0
        frontier = [start]
        found = []
        while frontier:
            nxt = []
            for i, j in frontier:
                for di, dj in ((-1, 0), (0, -1), (1, 0), (0, 1)):
                    ni, nj = i + di, j + dj
                    inside = 0 <= ni < maze.shape[0] and 0 <= nj < maze.shape[1]
                    if inside and maze[ni, nj] == 0 and dist[ni, nj] == -1:
                        dist[ni, nj] = dist[i, j] + 1
                        nxt.append((ni, nj))
                        if dist[ni, nj] == distance:
                            found.append((ni, nj))
            if nxt and dist[nxt[0]] >= distance:
                break
            frontier = nxt
        return found

    def episode(self, env_seed: int, length: int) -> dict[str, np.ndarray]:
        env = self.env
        navigate = self.spec.kind == "navigate"
        init_ij = self.all_cells[np.random.randint(len(self.all_cells))]
        if navigate:
            goal_ij = self.vertex_cells[np.random.randint(len(self.vertex_cells))]
        else:
            near = self._cells_at_distance(init_ij, _STITCH_CELLS)
            goal_ij = near[np.random.randint(len(near))] if near else init_ij
        # The env's own action space samples a few random steps to render the goal observation.
        env.action_space.seed(env_seed)
        ob, _ = env.reset(
            seed=env_seed, options=dict(task_info=dict(init_ij=init_ij, goal_ij=goal_ij))
        )

        obs = np.empty((length, ob.shape[0]), np.float32)
        acts = np.empty((length, 2), np.float32)
        qpos = np.empty((length, env.model.nq), np.float32)
        qvel = np.empty((length, env.model.nv), np.float32)
        for t in range(length):
            xy = env.get_xy()
            subgoal_xy, _ = env.get_oracle_subgoal(xy, env.cur_goal_xy)
            direction = subgoal_xy - xy
            direction = direction / (np.linalg.norm(direction) + 1e-6)
            action = np.clip(direction + np.random.normal(0.0, _POINTMAZE_NOISE, size=2), -1.0, 1.0)
            next_ob, _, _, _, info = env.step(action)
            if navigate and info["success"]:
                # Navigate: a new goal each time the current one is reached. Stitch: stay there.
                env.set_goal(self.vertex_cells[np.random.randint(len(self.vertex_cells))])
            obs[t] = ob
            acts[t] = action
            qpos[t] = info["prev_qpos"]
            qvel[t] = info["prev_qvel"]
            ob = next_ob
        return {
            "observations": obs,
            "actions": acts,
            "terminals": _terminals(length),
            "qpos": qpos,
            "qvel": qvel,
        }


def _make_collector(spec: _Spec) -> _ManipCollector | _MazeCollector:
    if spec.family == "pointmaze":
        return _MazeCollector(spec)
    return _ManipCollector(spec)


_SPLITS = {"train": 0, "val": 1}


def _episode_seeds(seed: int, split: str, index: int) -> tuple[np.ndarray, int]:
    """(global np.random seed words, env seed) for one episode, independent of scheduling."""
    words = np.random.SeedSequence(seed, spawn_key=(_SPLITS[split], index)).generate_state(6)
    env_seed = (int(words[4]) << 32) | int(words[5])
    return words[:4], env_seed


def _collect(
    collector: Any, seed: int, split: str, index: int, length: int
) -> dict[str, np.ndarray]:
    global_words, env_seed = _episode_seeds(seed, split, index)
    np.random.seed(global_words)
    return collector.episode(env_seed, length)


# --------------------------------------------------------------------------------------------------
# Atomic files and shards.


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _tmp_name(path: Path) -> Path:
    # Dot-prefixed and never ending in '.npz', so a leftover can't be mistaken for a dataset.
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed to a temp file in the same dir, fsync, then os.replace into place."""
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _shard_path(shard_dir: Path, split: str, index: int) -> Path:
    return shard_dir / f"{split}-{index:06d}.npz"


def _run_and_save(
    collector: Any, job: tuple[str, int], seed: int, length: int, shard_dir: Path
) -> int:
    split, index = job
    rows = _collect(collector, seed, split, index, length)
    _atomic_savez(_shard_path(shard_dir, split, index), rows)
    return length


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to kill this worker when the parent dies (e.g. SIGKILL), so none is orphaned."""
    import ctypes
    import signal

    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


# Worker-process state, set once per process by _worker_init.
_WORKER: dict[str, Any] = {}


def _worker_init(name: str, seed: int, length: int, shard_dir: str, parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    warnings.simplefilter("ignore")
    _WORKER.update(seed=seed, length=length, shard_dir=Path(shard_dir))
    _WORKER["collector"] = _make_collector(_spec(name))


def _worker_run(job: tuple[str, int]) -> tuple[str, int, int]:
    w = _WORKER
    rows = _run_and_save(w["collector"], job, w["seed"], w["length"], w["shard_dir"])
    return job[0], job[1], rows


@contextlib.contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Spawned workers inherit these: one BLAS/OpenMP thread each, since we run one per core."""
    keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in keys}
    for k in keys:
        os.environ.setdefault(k, "1")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _preserved_global_rng() -> Iterator[None]:
    """In-process generation reseeds np.random per episode; give the caller its state back."""
    state = np.random.get_state()
    try:
        yield
    finally:
        np.random.set_state(state)


@contextlib.contextmanager
def _lock(path: Path, name: str, out_dir: Path) -> Iterator[None]:
    with open(path, "a") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(
                f"another generation of {name} into {out_dir} is running (lock {path})"
            ) from None
        yield


def _merge(
    shard_dir: Path, split: str, episodes: int, length: int, name: str
) -> dict[str, np.ndarray]:
    """Concatenate the shards of one split in episode order into preallocated arrays."""
    merged: dict[str, np.ndarray] = {}
    for index in range(episodes):
        path = _shard_path(shard_dir, split, index)
        try:
            with np.load(path) as shard:
                rows = {k: shard[k] for k in shard.files}
        except Exception as exc:  # a shard is written atomically, so this means outside damage
            raise DataError(
                f"{name}: unreadable shard {path} ({exc}); delete it and rerun"
            ) from exc
        if not merged:
            merged = {
                k: np.empty((episodes * length, *v.shape[1:]), v.dtype) for k, v in rows.items()
            }
        ok = set(rows) == set(merged) and all(len(v) == length for v in rows.values())
        if not ok or not rows["terminals"][-1] or rows["terminals"][:-1].any():
            raise DataError(
                f"{name}: shard {path} does not hold one {length}-row episode; delete it"
            )
        for k, v in rows.items():
            merged[k][index * length : (index + 1) * length] = v
    return merged


def _clean_stale_tmp(directory: Path, prefixes: tuple[str, ...]) -> None:
    """Remove temp files a killed run left behind (safe: we hold the generation lock)."""
    if not directory.is_dir():
        return
    for p in directory.iterdir():
        if ".tmp-" in p.name and p.name.startswith(prefixes):
            with contextlib.suppress(OSError):
                p.unlink()


# --------------------------------------------------------------------------------------------------
# Public entry point.


def generate(
    name: str,
    episodes: int,
    out_dir: str | Path,
    workers: int | None = None,
    seed: int = 0,
    episode_length: int | None = None,
    progress: bool = True,
) -> tuple[Path, Path]:
    """Generate OGBench dataset NAME offline into `out_dir/NAME.npz` and `out_dir/NAME-val.npz`.

    Args:
        name: an OGBench dataset name from GENERATABLE (e.g. 'cube-single-noisy-v0'); a
            '-singletask[-taskN]' task name is mapped to its dataset with `dataset_file_stem`.
        episodes: number of train episodes; the val file gets max(1, episodes // 10).
        out_dir: output directory (created if missing); OGBench reads `default_dataset_dir()`.
        workers: worker processes (default: os.cpu_count()); the output does not depend on it.
        seed: base seed; every episode's seed is derived from (seed, split, episode index).
        episode_length: rows per episode; None = the official value for NAME (OFFICIAL_SIZES:
            1001 for most, 201 for pointmaze stitch, 2001 for pointmaze giant-navigate). The
            loader turns each episode into episode_length - 1 transitions.
        progress: show a tqdm bar (transitions, rate, ETA, episodes done).

    Returns:
        (train path, val path).

    Raises:
        DataError: an unknown name, or one that needs OGBench's downloaded expert policies.
        ConfigError: a non-positive episode count, episode length or worker count, or a
            negative seed.
    """
    name = dataset_file_stem(name)
    spec = _spec(name)
    if episode_length is None:
        episode_length = OFFICIAL_SIZES[name][1]
    if episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {episodes}")
    if episode_length < 2:
        raise ConfigError(f"episode_length must be >= 2 (one row per step), got {episode_length}")
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")

    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    train_path, val_path = out_dir / f"{name}.npz", out_dir / f"{name}-val.npz"
    n_val = max(1, episodes // 10)

    # Shards are keyed by everything that changes an episode's content (the simulator and oracle
    # versions too), not by the episode count, so a rerun with more episodes reuses them.
    shard_root = out_dir / f".{name}.shards"
    versions = f"og{metadata.version('ogbench')}-mj{metadata.version('mujoco')}-f{_SHARD_FORMAT}"
    shard_dir = shard_root / f"seed{seed}-len{episode_length}-{versions}"
    shard_dir.mkdir(parents=True, exist_ok=True)

    with _lock(shard_root / "lock", name, out_dir):
        _clean_stale_tmp(shard_dir, (".",))
        _clean_stale_tmp(out_dir, (f".{name}.npz", f".{name}-val.npz"))

        jobs = [("train", i) for i in range(episodes)] + [("val", i) for i in range(n_val)]
        pending = [j for j in jobs if not _shard_path(shard_dir, *j).exists()]
        _run_jobs(spec, pending, len(jobs), seed, episode_length, shard_dir, workers, progress)

        train = _merge(shard_dir, "train", episodes, episode_length, name)
        val = _merge(shard_dir, "val", n_val, episode_length, name)
        # Val first: OGBench's loader only checks that NAME.npz exists before reading both files,
        # so NAME.npz must never appear without its val file.
        _atomic_savez(val_path, val)
        _atomic_savez(train_path, train)

        shutil.rmtree(shard_dir, ignore_errors=True)
    if {p.name for p in shard_root.iterdir()} <= {"lock"}:
        shutil.rmtree(shard_root, ignore_errors=True)
    return train_path, val_path


def _run_jobs(
    spec: _Spec,
    pending: list[tuple[str, int]],
    total_jobs: int,
    seed: int,
    length: int,
    shard_dir: Path,
    workers: int,
    progress: bool,
) -> None:
    from tqdm import tqdm

    done_before = total_jobs - len(pending)
    bar = tqdm(
        total=total_jobs * length,
        initial=done_before * length,
        unit="tr",
        unit_scale=True,
        desc=spec.name,
        disable=not progress,
        dynamic_ncols=True,
    )
    episodes_done = done_before

    def advance(rows: int) -> None:
        nonlocal episodes_done
        episodes_done += 1
        bar.update(rows)
        bar.set_postfix_str(f"episodes {episodes_done}/{total_jobs}", refresh=False)

    with bar:
        if not pending:
            return
        workers = min(workers, len(pending))
        if workers == 1:
            with _preserved_global_rng(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                collector = _make_collector(spec)
                for job in pending:
                    advance(_run_and_save(collector, job, seed, length, shard_dir))
            return

        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from concurrent.futures.process import BrokenProcessPool

        # 'spawn', not fork: the caller may hold JAX or other threads that fork would deadlock.
        ctx = multiprocessing.get_context("spawn")
        # Workers are spawned lazily by submit(), so the thread settings must cover the whole block.
        with (
            _single_threaded_children(),
            ProcessPoolExecutor(
                workers,
                mp_context=ctx,
                initializer=_worker_init,
                initargs=(spec.name, seed, length, str(shard_dir), os.getpid()),
            ) as executor,
        ):
            # Workers pull one episode at a time, which balances uneven episode costs.
            futures = [executor.submit(_worker_run, job) for job in pending]
            try:
                for future in as_completed(futures):
                    advance(future.result()[2])
            except BrokenProcessPool as exc:
                raise DataError(
                    f"{spec.name}: a worker process died ({exc}). If generate() is called from a "
                    "script, guard the call with `if __name__ == '__main__':` (workers are spawned "
                    "and re-import the main module); otherwise rerun with workers=1 to see the "
                    "error."
                ) from exc
            finally:
                executor.shutdown(wait=True, cancel_futures=True)
