"""Where the training data lives, and so which sampler draws from it (gfp.engine.samplers).

State transitions go to the device once (`ArraySampler`). Pixel frames go to the device when they
fit (`device_budget`: half the device's memory limit), else they stay in host memory and host
threads gather and feed minibatches (`HostFrameSampler`), as the reference code keeps pixel
datasets on the CPU. `GFP_FRAMES_ON=host|device` forces one or the other; either gives the same
minibatches and the same results.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gfp.agents.base import BATCH_KEYS
from gfp.data.frame_layout import OBS_KEYS, frame_store, is_frame_form, is_pixels
from gfp.engine.frames import FrameSampler, HostFrameSampler
from gfp.engine.samplers import DERIVED_KEYS, ArraySampler, Sampler, training_array
from gfp.errors import ConfigError

PLACEMENT_ENV = "GFP_FRAMES_ON"


def device_budget() -> int | None:
    """Bytes of frame data the device may hold: half its memory limit (the rest is for the
    networks and activations); None where the device reports none (CPU: host memory, see
    `choose_placement`)."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory statistics
        stats = None
    if not stats or "bytes_limit" not in stats:
        return None
    return int(stats["bytes_limit"] * 0.5)


def _available_host_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def choose_placement(nbytes: int, placement: str | None = None) -> str:
    """'device' or 'host' for frame data of `nbytes`: `placement` or $GFP_FRAMES_ON if given,
    else the device when the data fits its budget. On a CPU backend, 'device' is a second copy in
    host memory, so the frames stay put unless a copy fits in half the available memory."""
    choice = placement or os.environ.get(PLACEMENT_ENV) or "auto"
    if choice not in ("auto", "device", "host"):
        raise ConfigError(f"{PLACEMENT_ENV} = {choice!r} must be host, device or auto")
    if choice != "auto":
        return choice
    budget = device_budget()
    if budget is None:
        free = _available_host_bytes()
        budget = free // 2 if free is not None else 0
    return "device" if nbytes <= budget else "host"


def frame_sampler(
    transitions: Mapping[str, np.ndarray], keys: Sequence[str], placement: str | None = None
) -> FrameSampler:
    """The sampler of pixel `transitions` for the training `keys`: frames on the device
    (`FrameSampler`) or in host memory (`HostFrameSampler`), as `choose_placement` decides."""
    store = frame_store(transitions)
    rest = {
        k: np.asarray(training_array(transitions, k), np.float32) for k in keys if k not in OBS_KEYS
    }
    arrays = {**store, **rest}
    nbytes = sum(int(a.nbytes) for a in arrays.values())
    if choose_placement(nbytes, placement) == "host":
        return HostFrameSampler(arrays)
    return FrameSampler({k: jnp.asarray(v) for k, v in arrays.items()})


def make_sampler(
    transitions: Mapping[str, np.ndarray],
    keys: Sequence[str] = BATCH_KEYS + DERIVED_KEYS,
    placement: str | None = None,
) -> Sampler:
    """The sampler of a dataset's training arrays `keys` (pass `agent.batch_keys` to carry only
    what that agent reads). State data goes to the device once, as float32, except uint8
    observations, which stay uint8 (the encoders cast them inside the jitted update).

    Pixel transitions (uint8 image observations) become frame data instead (gfp.engine.frames):
    the frames stored once, stacked by index when minibatches are drawn, on the device when they
    fit there, else in host memory (`placement` or $GFP_FRAMES_ON forces one)."""
    obs = transitions.get("observations")
    if is_pixels(obs) and ("next_observations" in transitions or is_frame_form(transitions)):
        return frame_sampler(transitions, keys, placement)

    def dtype(key: str, x: np.ndarray) -> Any:
        return np.uint8 if key in OBS_KEYS and x.dtype == np.uint8 else jnp.float32

    arrays = {k: training_array(transitions, k) for k in keys}
    return ArraySampler({k: jnp.asarray(x, dtype=dtype(k, x)) for k, x in arrays.items()})
