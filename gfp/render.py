"""Offscreen OpenGL for MuJoCo rendering (`--video`, pixel observations) on machines without a
display.

MuJoCo binds its OpenGL backend once, from the MUJOCO_GL environment variable, when `mujoco` is
first imported (and ogbench imports it). Its default, GLFW, needs a display, so on a headless
machine the backend must be chosen before that import: `configure_gl()` does it, trying EGL
(GPU or Mesa, no display needed) and then OSMesa (software), and sets MUJOCO_GL for this process
and every process it starts afterwards (evaluation workers inherit the environment).

Standard library and gfp.errors only: evaluation worker processes may import this module.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator

from gfp.errors import ConfigError

__all__ = ["configure_gl", "quiet_library_warnings", "quiet_fork_notice"]

# Notes of the libraries under evaluation and rendering that concern no user of gfp (message
# pattern, category; gymnasium's start with a colour code, hence the leading '.*'). Only these
# are silenced: any other warning still shows.
LIBRARY_NOTES: tuple[tuple[str, type[Warning]], ...] = (
    # glfw, imported by mujoco/OGBench, has no display to open; rendering is offscreen anyway
    (".*DISPLAY environment variable", Warning),
    # gymnasium's Box spaces, about the float64 bounds OGBench gives them
    (".*precision lowered by casting", UserWarning),
    (".*Casting input x to numpy array", UserWarning),
    # OGBench's environments render rgb_array frames without declaring it in their metadata
    (".*The environment is being initialised with render_mode='rgb_array'", UserWarning),
)
# JAX's notice on any fork of its process: a fork straight into exec (a new interpreter, ffmpeg)
# runs none of the parent's threads, so it does not apply there.
FORK_NOTICE = r"os\.fork\(\) was called"


def quiet_library_warnings() -> None:
    """Silence LIBRARY_NOTES in this process (idempotent: a filter added again replaces itself).
    Called where environments are built and rendered (gfp.evaluate) and by the CLI."""
    for message, category in LIBRARY_NOTES:
        warnings.filterwarnings("ignore", message=message, category=category)


@contextlib.contextmanager
def quiet_fork_notice() -> Iterator[None]:
    """Inside: JAX's os.fork() notice is not shown (around starting a subprocess that execs at
    once); every other warning is, and the filters are restored after."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=FORK_NOTICE, category=RuntimeWarning)
        yield


# Offscreen backends in order of preference, with the shared library each needs and the Debian /
# Ubuntu package that provides it (named in the error when neither works).
_BACKENDS = {
    "egl": ("EGL", "libegl1 with an EGL driver (libegl-mesa0, or the NVIDIA driver)"),
    "osmesa": ("OSMesa", "libosmesa6"),
}

# Creating a context is the only reliable test (a library can load yet find no device), and a
# broken driver can crash the process, so it is tried in a child interpreter.
_PROBE = "import mujoco; c = mujoco.GLContext(16, 16); c.make_current(); c.free()"

_chosen: str | None = None


def configure_gl() -> str:
    """Choose MuJoCo's OpenGL backend for rendering without a display; returns its name.

    Idempotent (the answer is kept for the process). A MUJOCO_GL already in the environment is
    the user's choice and is kept once it is shown to work; otherwise EGL, else OSMesa, is set in
    os.environ. Call it before anything imports mujoco (ogbench, gymnasium's MuJoCo envs).

    Raises:
        ConfigError: no backend can create a context (the message names the system packages to
            install), the MUJOCO_GL that is set does not work, or mujoco was already imported
            with a backend that needs a display this machine does not have.
    """
    global _chosen
    if _chosen is None:
        _chosen = _choose()
    return _chosen


def _choose() -> str:
    mujoco = sys.modules.get("mujoco")
    if mujoco is not None:
        return _already_bound(mujoco)
    requested = os.environ.get("MUJOCO_GL", "").strip().lower()
    if requested:
        reason = _failure(requested)
        if reason is not None:
            raise ConfigError(
                f"MUJOCO_GL={requested} is set but cannot create an OpenGL context ({reason}); "
                "unset it to let gfp choose EGL or OSMesa, or set another backend"
            )
        return requested
    reasons = {}
    for backend in _BACKENDS:
        reasons[backend] = _failure(backend)
        if reasons[backend] is None:
            os.environ["MUJOCO_GL"] = backend
            return backend
    tried = "; ".join(f"{_BACKENDS[b][0]}: {why}" for b, why in reasons.items())
    packages = " or ".join(package for _, package in _BACKENDS.values())
    raise ConfigError(
        f"no offscreen OpenGL to render with ({tried}); install {packages} (e.g. apt-get install "
        "libegl1 libegl-mesa0), or set MUJOCO_GL to a backend that works on this machine"
    )


def _failure(backend: str) -> str | None:
    """Why `backend` cannot render here (one line), or None when it can."""
    if backend in _BACKENDS:
        library = _BACKENDS[backend][0]
        if ctypes.util.find_library(library) is None:
            return f"lib{library}.so not found"
    env = dict(os.environ, MUJOCO_GL=backend)
    try:
        # close_fds=False lets subprocess use posix_spawn rather than fork: JAX, if imported,
        # warns on every fork of its (multithreaded) process.
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            close_fds=False,
        )
    except subprocess.TimeoutExpired:
        return "creating a context did not finish in 120 s"
    if proc.returncode == 0:
        return None
    lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
    return (lines[-1] if lines else f"exit code {proc.returncode}")[:200]


def _already_bound(mujoco) -> str:
    """The backend a mujoco imported earlier bound; an error if it cannot render here."""
    context = getattr(mujoco, "GLContext", None)
    bound = getattr(context, "__module__", "").rpartition(".")[2]  # 'mujoco.egl' -> 'egl'
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if bound in _BACKENDS or (bound == "glfw" and display):
        return bound
    what = f"the {bound!r} backend" if bound in ("glfw", "glx") else "no usable OpenGL backend"
    raise ConfigError(
        f"mujoco was imported (with {what}; MUJOCO_GL={os.environ.get('MUJOCO_GL', '')!r}) "
        "before an offscreen backend was chosen, and there is no display to render to; set "
        "MUJOCO_GL=egl (or osmesa) in the environment, or call gfp.render.configure_gl() before "
        "importing mujoco or ogbench"
    )
