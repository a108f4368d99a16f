"""Evaluation in the real environments: OGBench singletask tasks (success rate) or Gymnasium ids
(return, normalised score where D4RL reference returns exist).

A pool of `num_envs` environments is stepped in lockstep with ONE batched policy call per step;
when an episode ends its environment starts the next one, until `episodes` have finished.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import gymnasium
import jax
import numpy as np

PolicyFn = Callable[[np.ndarray, jax.Array], np.ndarray]  # (obs batch, rng) -> actions


def make_env(env_name: str, render: bool = False) -> gymnasium.Env:
    """An evaluation environment: OGBench tasks via OGBench, anything else via gymnasium.make."""
    kwargs = {"render_mode": "rgb_array"} if render else {}
    if "singletask" in env_name:
        import ogbench

        return ogbench.make_env_and_datasets(env_name, env_only=True, **kwargs)
    return gymnasium.make(env_name, **kwargs)


def evaluate(
    policy: PolicyFn,
    env_name: str,
    *,
    episodes: int = 50,
    num_envs: int = 10,
    seed: int = 0,
    video_path: str | Path | None = None,
    video_episodes: int = 2,
) -> dict[str, float]:
    """Run `episodes` episodes; return mean success, return, length (and normalised score).

    Episode i is reset with seed `seed + i`, so results do not depend on `num_envs`.
    """
    num_envs = max(1, min(num_envs, episodes))
    envs = [make_env(env_name) for _ in range(num_envs)]
    rng = jax.random.PRNGKey(seed)
    obs = [None] * num_envs
    running = [-1] * num_envs  # episode index each env is playing, -1 when idle
    ep_return = np.zeros(num_envs)
    ep_length = np.zeros(num_envs, dtype=int)
    results: list[tuple[float, float, int]] = []
    next_episode = 0

    def start(i: int) -> None:
        nonlocal next_episode
        if next_episode < episodes:
            obs[i], _ = envs[i].reset(seed=seed + next_episode)
            running[i], ep_return[i], ep_length[i] = next_episode, 0.0, 0
            next_episode += 1
        else:
            running[i] = -1

    for i in range(num_envs):
        start(i)
    ob_dim = np.asarray(obs[0]).shape
    while any(r >= 0 for r in running):
        # Pad idle slots so the jitted policy always sees the same batch shape (no recompiles).
        batch = np.stack([o if r >= 0 else np.zeros(ob_dim) for o, r in zip(obs, running)])
        rng, key = jax.random.split(rng)
        actions = np.asarray(policy(batch.astype(np.float32), key))
        for i in range(num_envs):
            if running[i] < 0:
                continue
            obs[i], reward, terminated, truncated, info = envs[i].step(actions[i])
            ep_return[i] += reward
            ep_length[i] += 1
            if terminated or truncated:
                results.append((float(info.get("success", np.nan)), ep_return[i], ep_length[i]))
                start(i)
    for env in envs:
        env.close()
    if video_path is not None:
        record_video(policy, env_name, video_path, video_episodes, seed)
    success, returns, lengths = (np.array(x, dtype=float) for x in zip(*results))
    out = {"success": float(np.mean(success)), "return": float(np.mean(returns))}
    out["length"] = float(np.mean(lengths))
    from gfp.data.scores import normalized_score

    score = normalized_score(env_name, out["return"])
    if score is not None:
        out["normalized_score"] = score
    return out


def record_video(policy: PolicyFn, env_name: str, path: str | Path, episodes: int, seed: int) -> None:
    """Render a few episodes to an mp4 (needs an offscreen GL backend; MUJOCO_GL=egl is set)."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    import imageio.v2 as imageio

    env = make_env(env_name, render=True)
    rng = jax.random.PRNGKey(seed + 10_000)
    frames = []
    for ep in range(episodes):
        ob, _ = env.reset(seed=seed + 10_000 + ep)
        done = False
        while not done:
            frames.append(env.render())
            rng, key = jax.random.split(rng)
            action = np.asarray(policy(np.asarray(ob, np.float32)[None], key))[0]
            ob, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
    env.close()
    imageio.mimsave(str(path), frames, fps=30)
