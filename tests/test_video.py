"""`--video` without a display: gfp.render picks an offscreen OpenGL backend (EGL, else OSMesa)
before mujoco is imported, or says which system package is missing; evaluation writes one mp4
per policy that decodes to the rendered frames.

Rendering runs in fresh interpreters: MuJoCo binds its backend when it is first imported, and
this test process may have imported it already (other tests build OGBench environments).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import gfp.render as render
from gfp.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _headless_env() -> dict[str, str]:
    """This environment without a display and without a MUJOCO_GL choice."""
    env = dict(os.environ)
    for key in ("DISPLAY", "WAYLAND_DISPLAY", "MUJOCO_GL", "PYOPENGL_PLATFORM"):
        env.pop(key, None)
    return env


def _run(code: str, timeout: float = 300) -> dict:
    """Run `code` in a fresh, headless interpreter; it prints one JSON object last."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        env=_headless_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def fresh_render(monkeypatch):
    """gfp.render as if in a new process that has not imported mujoco nor chosen a backend.
    MUJOCO_GL is restored by hand afterwards: configure_gl sets it, and later tests' subprocesses
    (which inherit this process's environment) must not find a backend chosen here."""
    monkeypatch.delitem(sys.modules, "mujoco", raising=False)
    monkeypatch.setattr(render, "_chosen", None)
    before = os.environ.pop("MUJOCO_GL", None)
    yield render
    os.environ.pop("MUJOCO_GL", None)
    if before is not None:
        os.environ["MUJOCO_GL"] = before


def test_configure_gl_chooses_a_backend_that_renders_headless():
    out = _run(
        """
        import json, os, sys
        import gfp.render as r
        backend = r.configure_gl()
        assert "mujoco" not in sys.modules  # probed in a child: the choice is still open here
        import mujoco
        ctx = mujoco.GLContext(32, 32)
        ctx.make_current()
        print(json.dumps({"backend": backend, "again": r.configure_gl(),
                          "env": os.environ["MUJOCO_GL"], "bound": type(ctx).__module__}))
        """
    )
    assert out["backend"] in ("egl", "osmesa")
    assert out["again"] == out["env"] == out["backend"]
    assert out["bound"] == f"mujoco.{out['backend']}"


def test_falls_back_to_osmesa_and_names_the_missing_packages(fresh_render, monkeypatch):
    tried = []

    def egl_missing(backend):
        tried.append(backend)
        return "libEGL.so not found" if backend == "egl" else None

    monkeypatch.setattr(render, "_failure", egl_missing)
    assert render.configure_gl() == "osmesa" and os.environ["MUJOCO_GL"] == "osmesa"
    assert render.configure_gl() == "osmesa" and tried == ["egl", "osmesa"]  # kept: no new probe

    monkeypatch.setattr(render, "_chosen", None)
    del os.environ["MUJOCO_GL"]  # (not through monkeypatch: it would put "osmesa" back after)
    monkeypatch.setattr(render, "_failure", lambda backend: f"lib{backend} not found")
    with pytest.raises(ConfigError) as err:
        render.configure_gl()
    message = str(err.value)
    assert "\n" not in message and "libegl1" in message and "libosmesa6" in message
    assert "EGL: libegl not found" in message and "OSMesa: libosmesa not found" in message
    assert "MUJOCO_GL" not in os.environ


def test_a_broken_explicit_mujoco_gl_is_one_clear_error(fresh_render, monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    monkeypatch.setattr(render, "_failure", lambda backend: f"{backend}: no context")
    with pytest.raises(ConfigError, match=r"^MUJOCO_GL=osmesa is set but cannot create an Open"):
        render.configure_gl()
    monkeypatch.setattr(render, "_chosen", None)
    monkeypatch.setattr(render, "_failure", lambda backend: None)
    assert render.configure_gl() == "osmesa"  # the user's working choice is kept


def test_mujoco_imported_first_without_a_display_is_one_clear_error():
    out = _run(
        """
        import json
        import mujoco  # binds GLFW, which needs a display
        import gfp.render as r
        from gfp.errors import ConfigError
        try:
            r.configure_gl()
            print(json.dumps({"error": None}))
        except ConfigError as e:
            print(json.dumps({"error": str(e)}))
        """
    )
    assert out["error"] is not None and "\n" not in out["error"]
    assert "mujoco was imported" in out["error"] and "MUJOCO_GL=egl" in out["error"]


def test_evaluate_writes_a_decodable_mp4_headless(tmp_path):
    """evaluate() chooses the backend itself before it builds an environment (a Gymnasium MuJoCo
    task here: short episodes); the video holds every rendered frame at the rendered size."""
    path = tmp_path / "actor.mp4"
    out = _run(
        f"""
        import json
        import gymnasium, imageio.v3 as iio, numpy as np
        from gfp.evaluate import evaluate

        def policy(obs, key):
            return np.zeros((obs.shape[0], 1), np.float32)

        row = evaluate(policy, "InvertedPendulum-v5", episodes=2, num_envs=2, workers=0,
                       video_path={str(path)!r})
        env = gymnasium.make("InvertedPendulum-v5")  # the video's episode, without rendering
        env.reset(seed=10_000)
        steps, done = 0, False
        while not done:
            _, _, terminated, truncated, _ = env.step(np.zeros(1, np.float32))
            steps, done = steps + 1, terminated or truncated
        frames = iio.imread({str(path)!r})
        print(json.dumps({{"shape": list(frames.shape), "steps": steps,
                          "moving": bool(np.abs(np.diff(frames.astype(int), axis=0)).max() > 0),
                          "length": row["length"]}}))
        """
    )
    assert out["shape"] == [out["steps"], 480, 480, 3]  # Gymnasium's default 480x480 frames
    assert out["moving"] and out["length"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["actor.mp4"]  # no temp files


@pytest.mark.slow  # JAX compiles two policies, OGBench renders 50 frames: 93 s on a loaded 2-core
def test_one_mp4_per_policy_on_cube_single(tmp_path):
    """A GFP agent with random parameters, evaluated with video on cube-single (a state task,
    rendered): actor.mp4 and vabc.mp4, each one episode of 200x200 frames. (Episodes are cut to
    25 steps: software OpenGL draws OGBench's scene at about 0.15 s a frame.)"""
    out = _run(
        f"""
        import json
        from pathlib import Path
        import imageio.v3 as iio, jax, numpy as np
        from gymnasium.wrappers import TimeLimit
        import gfp.evaluate
        from gfp.agents import AGENTS, make_agent
        from gfp.run import evaluate_policies

        make_env = gfp.evaluate.make_env
        gfp.evaluate.make_env = lambda name, render=False: TimeLimit(make_env(name, render), 25)

        config = AGENTS["gfp"].Config(actor_hidden_dims=(32, 32), value_hidden_dims=(32, 32))
        agent = make_agent("gfp", config, obs_dim=28, action_dim=5)
        params = agent.init(jax.random.PRNGKey(0)).params
        row = evaluate_policies(agent, params, "cube-single-noisy-singletask-task1-v0",
                                episodes=1, video_dir=Path({str(tmp_path)!r}))
        videos = {{}}
        for p in sorted(Path({str(tmp_path)!r}).iterdir()):
            frames = iio.imread(p)
            videos[p.name] = {{"bytes": p.stat().st_size, "shape": list(frames.shape)}}
        print(json.dumps({{"videos": videos, "policies": list(agent.policies), "row": row}}))
        """,
    )
    assert sorted(out["videos"]) == sorted(f"{p}.mp4" for p in out["policies"])
    assert len(out["videos"]) == 2
    for video in out["videos"].values():
        assert video["bytes"] > 1000
        assert video["shape"] == [25, 200, 200, 3]  # every frame, at OGBench's size (no rescale)
    assert out["row"]["actor/length"] == out["row"]["vabc/length"] == 25.0
