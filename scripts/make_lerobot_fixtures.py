"""Make the LeRobot test fixtures (tests/fixtures/lerobot/): small datasets written by the
lerobot package itself, and lerobot's own decoded arrays and frames for a few indices.

Three steps, each its own command (tests/fixtures/lerobot/README.md has the exact commands):

1. `episodes OUT.npz`, with gfp's environment (OGBench, MuJoCo): a few short episodes of OGBench's
   `cube-single-singletask-task1-v0` driven by OGBench's own plan oracle (the one its 'play'
   datasets are collected with), each step's state, action, reward and success, and the front
   camera rendered at 64x64. An episode ends a few steps after the cube reaches the goal, or
   after MAX_STEPS.
2. `write EPISODES.npz ROOT`, in a scratch environment with lerobot installed (and torch, which
   gfp does not need): the episodes written with lerobot's dataset writer
   (`LeRobotDataset.create`, `add_frame`, `save_episode`), in the format of that lerobot release
   (v3.0 from lerobot 0.4, v2.1 from lerobot 0.3).
3. `expected ROOT`, in the same scratch environment: the dataset read back with lerobot's own
   `LeRobotDataset` (its 'pyav' video backend) and, for a few indices, what it returns, saved to
   ROOT/expected.npz: the arrays as float32/int64, each camera frame as uint8 HWC (lerobot returns
   float CHW in [0, 1], the decoded uint8 / 255, so x * 255 rounds back exactly: checked), and the
   versions used (ROOT/expected.json).

Nothing here is imported by gfp or its tests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

ENV_ID = "cube-single-singletask-task1-v0"
SIZE = 64  # rendered frame height and width
FPS = 10
EPISODES = 3
MAX_STEPS = 80
AFTER_SUCCESS = 4  # steps kept after the cube first reaches the goal
CAMERA = "observation.images.top"
TASK_TEXT = "move the cube to the goal"


# ---- 1. episodes (gfp's environment) -----------------------------------------------------------
def make_episodes(out: Path) -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    import gymnasium
    import ogbench  # noqa: F401  (registers the environments)
    from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle

    env = gymnasium.make(
        ENV_ID,
        render_mode="rgb_array",
        width=SIZE,
        height=SIZE,
        mode="data_collection",  # the oracle reads the privileged target from info
        terminate_at_goal=False,
        visualize_info=False,
    )
    arrays: dict[str, list[np.ndarray]] = {
        k: [] for k in ("state", "image", "action", "reward", "success", "episode")
    }
    for episode in range(EPISODES):
        ob, info = env.reset(seed=episode)
        oracle = CubePlanOracle(env=env.unwrapped, noise=0.1, noise_smoothing=0.5)
        oracle.reset(ob, info)
        succeeded_at = None
        for t in range(MAX_STEPS):
            frame = env.render()
            action = np.clip(oracle.select_action(ob, info), -1, 1).astype(np.float32)
            next_ob, reward, _, _, info = env.step(action)
            arrays["state"].append(np.asarray(ob, np.float32))
            arrays["image"].append(np.asarray(frame, np.uint8))
            arrays["action"].append(action)
            arrays["reward"].append(np.float32(reward))
            arrays["success"].append(bool(info["success"]))
            arrays["episode"].append(episode)
            ob = next_ob
            if info["success"] and succeeded_at is None:
                succeeded_at = t
            if succeeded_at is not None and t >= succeeded_at + AFTER_SUCCESS:
                break
        print(f"episode {episode}: {t + 1} steps, success at {succeeded_at}")
    np.savez_compressed(out, **{k: np.stack(v) for k, v in arrays.items()})


# ---- 2. the dataset, written by lerobot ----------------------------------------------------------
def _lerobot():
    import lerobot
    from lerobot.datasets.lerobot_dataset import CODEBASE_VERSION, LeRobotDataset

    return lerobot, CODEBASE_VERSION, LeRobotDataset


def features(state_dim: int, action_dim: int) -> dict:
    return {
        "observation.state": {"dtype": "float32", "shape": (state_dim,), "names": None},
        CAMERA: {
            "dtype": "video",
            "shape": (SIZE, SIZE, 3),
            "names": ["height", "width", "channels"],
        },
        "action": {"dtype": "float32", "shape": (action_dim,), "names": None},
        "next.reward": {"dtype": "float32", "shape": (1,), "names": None},
        "next.done": {"dtype": "bool", "shape": (1,), "names": None},
        "next.success": {"dtype": "bool", "shape": (1,), "names": None},
    }


def write_dataset(episodes: Path, root: Path) -> None:
    lerobot, version, LeRobotDataset = _lerobot()
    data = dict(np.load(episodes))
    if root.exists():
        shutil.rmtree(root)
    ds = LeRobotDataset.create(
        repo_id="gfp/cube-single-fixture",
        fps=FPS,
        features=features(data["state"].shape[1], data["action"].shape[1]),
        root=root,
        robot_type="ogbench-ur5e",
        use_videos=True,
    )
    new_api = version >= "v3.0"  # lerobot 0.4: the task is a key of the frame
    for episode in np.unique(data["episode"]):
        rows = np.flatnonzero(data["episode"] == episode)
        for j, r in enumerate(rows):
            frame = {
                "observation.state": data["state"][r],
                CAMERA: data["image"][r],
                "action": data["action"][r],
                "next.reward": data["reward"][r : r + 1],
                "next.done": np.array([j == len(rows) - 1]),
                "next.success": data["success"][r : r + 1],
            }
            if new_api:
                ds.add_frame({**frame, "task": TASK_TEXT})
            else:
                ds.add_frame(frame, task=TASK_TEXT)
        ds.save_episode()
    if hasattr(ds, "finalize"):
        ds.finalize()
    images = root / "images"
    if images.exists():  # the writer's temporary PNGs, already encoded into the videos
        shutil.rmtree(images)
    print(f"lerobot {lerobot.__version__} wrote {version} to {root}")


# ---- 3. what lerobot reads back ----------------------------------------------------------------
def expected(root: Path) -> None:
    import torch

    lerobot, version, LeRobotDataset = _lerobot()
    ds = LeRobotDataset("gfp/cube-single-fixture", root=root, video_backend="pyav")
    ends = np.cumsum([int(n) for n in _episode_lengths(ds)])
    starts = np.concatenate([[0], ends[:-1]])
    # first, middle and last frame of each episode
    indices = sorted(
        {int(i) for s, e in zip(starts, ends, strict=True) for i in (s, (s + e) // 2, e - 1)}
    )
    out: dict[str, list[np.ndarray]] = {}
    for i in indices:
        item = ds[i]  # its "index" is i
        for key, value in item.items():
            if not isinstance(value, torch.Tensor):
                continue
            value = value.numpy()
            if key == CAMERA:
                scaled = value.transpose(1, 2, 0) * 255
                hwc = np.round(scaled).astype(np.uint8)
                # lerobot's float frame is uint8 / 255: the uint8 frame is recovered exactly
                assert np.array_equal(hwc.astype(np.float32) / 255, value.transpose(1, 2, 0))
                out.setdefault(key, []).append(hwc)
            else:
                out.setdefault(key, []).append(value)
    np.savez_compressed(root / "expected.npz", **{k: np.stack(v) for k, v in out.items()})
    import av

    record = {
        "lerobot": lerobot.__version__,
        "codebase_version": version,
        "torch": torch.__version__,
        "av": av.__version__,
        "video_backend": "pyav",
        "python": sys.version.split()[0],
        "indices": indices,
    }
    (root / "expected.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"lerobot {lerobot.__version__} read {len(indices)} items of {root}: {indices}")


def _episode_lengths(ds) -> list[int]:
    episodes = ds.meta.episodes
    if isinstance(episodes, dict):  # lerobot 0.3 (v2.1): {index: {"length": ...}}
        return [episodes[k]["length"] for k in sorted(episodes)]
    return list(episodes["length"])  # lerobot 0.4 (v3.0): a datasets.Dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("episodes").add_argument("out", type=Path)
    w = sub.add_parser("write")
    w.add_argument("episodes", type=Path)
    w.add_argument("root", type=Path)
    sub.add_parser("expected").add_argument("root", type=Path)
    args = parser.parse_args()
    if args.command == "episodes":
        make_episodes(args.out)
    elif args.command == "write":
        write_dataset(args.episodes, args.root)
    else:
        expected(args.root)


if __name__ == "__main__":
    main()
