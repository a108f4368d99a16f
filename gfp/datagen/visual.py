"""Offline generation of OGBench's pixel datasets (visual-cube-single-play-v0, ...): the state
oracles' rollouts, each row rendered once as OGBench's visual environment renders it.

Where the time goes. A visual OGBench env steps at a few frames per second on one core, its state
twin at hundreds: nearly all of a visual step is `mjr_render` + `mjr_readPixels` in the OpenGL
driver (Mesa's llvmpipe software rasterizer on a machine without a GPU), not MuJoCo's physics or
Python (BENCHMARKS.md, "Pixel datasets", has the profile). The frame is 64x64, but every render
also draws a 4096x4096 shadow map and 4x multisampling, in software. Those settings are part of
what the frame looks like, so they stay; generation is made faster around them:

* one render per dataset row. The oracle rolls out in the STATE environment (same physics,
  same random draws: the two envs differ only in material colours), and each row's frame is
  rendered right after the step that produced it. OGBench's visual env also renders on every
  `set_new_target` and on `observation_space`, and at the step after an episode's last row;
  here those frames are never drawn.
* one renderer and one OpenGL context per process, reused for every frame and episode;
* episodes in parallel worker processes (gfp.datagen.generate's shard pool), each with its own
  context; LP_NUM_THREADS=1 per worker under llvmpipe, so the workers do not fight over cores.

Identical frames. `FrameRenderer` draws the state env's live `MjData` with the visual env's
model: the visual model differs from the state model only in `mat_rgba` (the arm is transparent
and the gripper purple in pixel mode), so before each frame it copies the state model's geometry
colours (which the envs change at run time: cube colours, puzzle and scene buttons) and the
colours of every material that pixel mode does not change (scene's drawer and window handles
change at run time). Using the live data matters: after `mj_step` MuJoCo's positions are those
of the last substep's start, which is what the visual env renders, and what re-simulating from
the stored qpos would not give. tests/test_pixels.py compares frames with OGBench's own visual
env, stepped with the same actions, bit for bit.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from gfp.datagen.collectors import ManipCollector, Spec
from gfp.datagen.collectors import make_collector as make_state_collector
from gfp.errors import DataError

__all__ = ["FrameRenderer", "VisualCollector", "make_collector", "visual_names"]

PREFIX = "visual-"
CAMERA = "front_pixels"  # the camera OGBench's manipulation envs render pixel observations with
# The keyword arguments gfp.datagen.collectors builds its state environments with.
_COLLECTION_KWARGS = dict(terminate_at_goal=False, mode="data_collection", visualize_info=False)


def visual_names(state_names: tuple[str, ...]) -> tuple[str, ...]:
    """The pixel datasets OGBench has of the given state datasets (all manipulation ones)."""
    return tuple(PREFIX + n for n in state_names if not n.startswith("pointmaze-"))


def _make(env_id: str) -> Any:
    """A manipulation env as gfp.datagen.collectors builds it (GL configured first: the visual twin
    renders, and mujoco binds its OpenGL backend when first imported)."""
    _prepare_gl(workers_share_cores=False)
    import gymnasium
    import ogbench  # noqa: F401  (registers the environments)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gymnasium.make(env_id, disable_env_checker=True, **_COLLECTION_KWARGS).unwrapped


def _prepare_gl(workers_share_cores: bool) -> None:
    """Pick the offscreen OpenGL backend before mujoco is imported (gfp.render)."""
    from gfp.render import configure_gl

    if workers_share_cores:
        # llvmpipe starts one rasterizer thread per core in every process; parallel workers then
        # oversubscribe the cores. The frames do not depend on the thread count.
        os.environ.setdefault("LP_NUM_THREADS", "1")
    configure_gl()


class FrameRenderer:
    """Renders a state manipulation env's current `MjData` exactly as the visual twin env
    `visual_id` renders its observation (module docstring)."""

    def __init__(self, state_env: Any, visual_id: str):
        _prepare_gl(workers_share_cores=False)
        import mujoco

        self.state_env = state_env
        # A visual env and a fresh state env reset with the same seed are in the same state, so
        # the materials whose colours differ are exactly the ones pixel mode recolours.
        visual = _make(visual_id)
        reference = _make(visual_id.removeprefix(PREFIX))
        visual.reset(seed=0)
        reference.reset(seed=0)
        model, ref = visual.model, reference.model
        if not np.array_equal(model.geom_rgba, ref.geom_rgba):
            raise DataError(
                f"{visual_id}: this ogbench version's visual env recolours geoms, which "
                "gfp.datagen.visual does not handle (it expects material colours only)"
            )
        self.keep_materials = np.all(model.mat_rgba == ref.mat_rgba, axis=1)
        self.model = model
        self.height, self.width = visual._render_height, visual._render_width
        self.renderer = mujoco.Renderer(model, height=self.height, width=self.width)
        self.scene_option = mujoco.MjvOption()
        self._keep = (visual, reference)  # the model belongs to the env

    def render(self) -> np.ndarray:
        """The (H, W, 3) uint8 frame of the state env's current data."""
        source = self.state_env.model
        self.model.geom_rgba[:] = source.geom_rgba
        keep = self.keep_materials
        self.model.mat_rgba[keep] = source.mat_rgba[keep]
        self.renderer.update_scene(
            self.state_env.data, camera=CAMERA, scene_option=self.scene_option
        )
        return self.renderer.render()

    def close(self) -> None:
        self.renderer.close()


class _Filmed:
    """The state env as a collector sees it, with the frame of every row rendered as it is
    reached: after `reset` and after each `step` but the episode's last (whose next state is no
    row)."""

    def __init__(self, env: Any, renderer: FrameRenderer):
        self._env, self._renderer = env, renderer
        self.frames: list[np.ndarray] = []
        self.length = 0

    def reset(self, *args: Any, **kwargs: Any) -> Any:
        out = self._env.reset(*args, **kwargs)
        self.frames = [self._renderer.render()]
        return out

    def step(self, action: Any) -> Any:
        out = self._env.step(action)
        if len(self.frames) < self.length:
            self.frames.append(self._renderer.render())
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)


class VisualCollector:
    """Episodes of a pixel dataset: the state oracle's rows with `observations` replaced by their
    (length, 64, 64, 3) uint8 frames (OGBench's visual layout: frames, actions, terminals, qpos,
    qvel, and button_states for scene and puzzle)."""

    def __init__(self, spec: Spec):
        if not spec.name.startswith(PREFIX):
            raise DataError(f"{spec.name!r} is not a pixel ('visual-*') dataset")
        import multiprocessing

        # In a worker of gfp.datagen.generate's pool (one per core): one rasterizer thread each.
        _prepare_gl(workers_share_cores=multiprocessing.parent_process() is not None)
        self.spec = spec
        state_env_id = spec.env_id.removeprefix(PREFIX)
        self.inner = ManipCollector(Spec(spec.name, state_env_id, spec.family, spec.kind))
        self.renderer = FrameRenderer(self.inner.env, spec.env_id)
        self.film = _Filmed(self.inner.env, self.renderer)
        self.inner.env = self.film  # the oracles keep the real env; only the loop is filmed

    def episode(self, env_seed: int, length: int) -> dict[str, np.ndarray]:
        self.film.length = length
        rows = self.inner.episode(env_seed, length)
        if len(self.film.frames) != length:  # pragma: no cover - a collector change
            raise DataError(f"{self.spec.name}: {len(self.film.frames)} frames for {length} rows")
        rows["observations"] = np.stack(self.film.frames)
        return rows


def make_collector(spec: Spec) -> Any:
    """The collector of any generatable dataset: pixel ('visual-*') or state."""
    if spec.name.startswith(PREFIX):
        return VisualCollector(spec)
    return make_state_collector(spec)
