"""The scripted oracles that collect OGBench's datasets, one episode at a time.

The manipulation datasets (cube, scene, puzzle) come from OGBench's plan ('play') and markov
('noisy') oracles, the pointmaze datasets from its BFS waypoint "expert"; both ship in the ogbench
wheel. A collector owns one environment and is reused for many episodes: `episode(env_seed,
length)` is a pure function of the env seed and the global np.random state, which the caller
(gfp.datagen.generate) seeds per episode, so an episode never depends on what ran before it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from gfp.errors import DataError

__all__ = ["ManipCollector", "MazeCollector", "Spec", "make_collector", "scene_healthy"]


@dataclass(frozen=True)
class Spec:
    """What a collector needs to know about one generatable dataset."""

    name: str  # dataset name, e.g. 'cube-double-play-v0'
    env_id: str  # goal-conditioned env id, e.g. 'cube-double-v0'
    family: str  # 'cube' | 'scene' | 'puzzle' | 'pointmaze'
    kind: str  # 'play' | 'noisy' | 'navigate' | 'stitch'


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


class ManipCollector:
    """Cube / scene / puzzle episodes from the plan ('play') or markov ('noisy') oracles."""

    def __init__(self, spec: Spec) -> None:
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
            if self.spec.family != "scene" or scene_healthy(rows["qpos"]):
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


def scene_healthy(qpos: np.ndarray) -> bool:
    """OGBench's scene rule: the cube must stay visible unless it is inside the drawer."""
    y, z = qpos[:, 15], qpos[:, 16]
    too_far_right = y >= 0.29
    too_far_left_outside_drawer = (y <= -0.3) & ((z < 0.06) | (z > 0.08))
    return not bool(too_far_right.any() or too_far_left_outside_drawer.any())


def _terminals(length: int) -> np.ndarray:
    terminals = np.zeros(length, dtype=bool)
    terminals[-1] = True  # the time-limit truncation: only the last row of each episode
    return terminals


class MazeCollector:
    """Pointmaze episodes: unit direction to the BFS oracle's next waypoint plus N(0, 0.5) noise."""

    def __init__(self, spec: Spec) -> None:
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


def make_collector(spec: Spec) -> ManipCollector | MazeCollector:
    if spec.family == "pointmaze":
        return MazeCollector(spec)
    return ManipCollector(spec)
