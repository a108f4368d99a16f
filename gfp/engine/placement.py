"""Where the training data lives, and so which sampler draws from it (gfp.engine.samplers).

State transitions (`state_sampler`, `choose_state_placement`): on the device (`ArraySampler`)
when they fit its budget (`device_budget`: half the device's memory limit), else in host memory
when they fit in half the available memory, else memory-mapped from .npy files on disk; off the
device, host threads gather and feed the minibatches (gfp.engine.host_arrays). The run setting
`data_placement` (`--data-placement auto|device|host|disk`) forces one; every placement gives the
same minibatches and bit-identical results, so the setting is not run-defining.

Pixel frames go to the device when they fit, else they stay in host memory and host threads
gather and feed minibatches (`HostFrameSampler`), as the reference code keeps pixel datasets on
the CPU; `disk` memory-maps them. `GFP_FRAMES_ON=host|device` forces one or the other; either
gives the same minibatches and the same results.

Action chunks (an agent config's `horizon` h > 1, gfp.engine.sequence): every placement draws
h-step windows instead of rows: `SequenceSampler` on the device, `HostArraySampler` and the frame
samplers with `horizon` h, all from the same key chain and window math, so the placements still
give the same minibatches.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gfp.agents.base import BATCH_KEYS
from gfp.data.frame_layout import (
    OBS_KEYS,
    STATE_KEYS,
    frame_store,
    has_state,
    is_frame_form,
    is_pixels,
)
from gfp.engine.frames import FrameSampler, HostFrameSampler
from gfp.engine.host_arrays import HostArraySampler, spill
from gfp.engine.samplers import (
    DERIVED_KEYS,
    ArraySampler,
    Sampler,
    training_array,
    training_rows,
)
from gfp.engine.sequence import VALID, SequenceSampler, check_terminals, data_keys, horizon_of
from gfp.errors import ConfigError

PLACEMENT_ENV = "GFP_FRAMES_ON"
PLACEMENTS = ("auto", "device", "host", "disk")  # the run setting data_placement's values
Log = Callable[[str], None]


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


def choose_state_placement(
    nbytes: int, placement: str, budget: int | None, free: int | None
) -> tuple[str, str]:
    """('device' | 'host' | 'disk', why) for state data of `nbytes`: `placement` unless 'auto';
    else the device when the data fits its `budget` (bytes; None on a CPU backend, where the
    device's copy is a second one in host memory and so must fit in half the `free` host
    bytes), host memory when it fits in half the `free` bytes (the rest for the loaded dataset,
    the prefetched blocks and everything else), else disk. `free` None: unknown, taken to fit."""
    if placement not in PLACEMENTS:
        raise ConfigError(f"data_placement = {placement!r} must be one of {', '.join(PLACEMENTS)}")
    size = f"{nbytes / 2**20:.1f} MiB"
    if placement != "auto":
        return placement, f"{size}, as --data-placement {placement} says"
    room = None if free is None else free // 2
    ram = (
        "unknown host memory"
        if room is None
        else f"half the available host memory ({room / 2**20:.0f} MiB)"
    )
    fits_ram = room is None or nbytes <= room
    if budget is None:  # CPU backend: the device is host memory
        if fits_ram:
            return "device", f"{size} fit in {ram} (CPU backend)"
        return "disk", f"{size} exceed {ram} (CPU backend)"
    dev = f"the device budget ({budget / 2**20:.0f} MiB, half its memory)"
    if nbytes <= budget:
        return "device", f"{size} fit in {dev}"
    if fits_ram:
        return "host", f"{size} exceed {dev} and fit in {ram}"
    return "disk", f"{size} exceed {dev} and {ram}"


def state_sampler(
    transitions: Mapping[str, np.ndarray],
    keys: Sequence[str],
    placement: str = "auto",
    *,
    cache_dir: str | os.PathLike | None = None,
    log: Log | None = None,
    horizon: int = 1,
) -> Sampler:
    """The sampler of state `transitions` for the training `keys`, placed as
    `choose_state_placement` decides (`log` gets one line saying where and why). Each array is
    float32 except uint8 observations, which stay uint8 (the encoders cast them inside the jitted
    update). Host placement shares the dataset's float32 arrays (no copy); disk writes the
    arrays under `cache_dir` (gfp.engine.host_arrays.spill). `horizon` h > 1: minibatches of
    h-step windows (gfp.engine.sequence), carrying `keys`."""
    out = tuple(keys)
    check_terminals(transitions, horizon)
    keys = data_keys(keys, horizon)

    def dtype(key: str) -> Any:
        x = transitions["actions" if key == "next_actions" else key]
        return np.uint8 if key in OBS_KEYS and x.dtype == np.uint8 else np.float32

    def shape(key: str) -> tuple[int, ...]:
        return tuple(transitions["actions" if key == "next_actions" else key].shape)

    nbytes = sum(int(np.prod(shape(k), dtype=np.int64)) * np.dtype(dtype(k)).itemsize for k in keys)
    choice, why = choose_state_placement(
        nbytes, placement, device_budget(), _available_host_bytes()
    )
    if log is not None:
        log(f"state data on the {choice}: {why}")
    window = (horizon, out) if horizon > 1 else (1, None)
    if choice == "device":
        arrays = {k: training_array(transitions, k) for k in keys}
        on_device = {k: jnp.asarray(x, dtype=dtype(k)) for k, x in arrays.items()}
        return ArraySampler(on_device) if horizon == 1 else SequenceSampler(on_device, *window)
    if choice == "host":
        arrays = {k: np.asarray(training_array(transitions, k), dtype(k)) for k in keys}
        return HostArraySampler(arrays, "host", *window)
    columns = {
        k: (shape(k), dtype(k), lambda lo, hi, k=k: training_rows(transitions, k, lo, hi))
        for k in keys
    }
    return HostArraySampler(spill(columns, cache_dir), "disk", *window)


def frame_sampler(
    transitions: Mapping[str, np.ndarray],
    keys: Sequence[str],
    placement: str | None = None,
    horizon: int = 1,
) -> FrameSampler:
    """The sampler of pixel `transitions` for the training `keys`: frames on the device
    (`FrameSampler`) or in host memory (`HostFrameSampler`), as `choose_placement` decides;
    `horizon` h > 1: h-step windows (gfp.engine.frames, gfp.engine.sequence)."""
    arrays, window = frame_arrays(transitions, keys, horizon)
    nbytes = sum(int(a.nbytes) for a in arrays.values())
    if choose_placement(nbytes, placement) == "host":
        return HostFrameSampler(arrays, *window)
    return FrameSampler({k: jnp.asarray(v) for k, v in arrays.items()}, *window)


def frame_arrays(
    transitions: Mapping[str, np.ndarray], keys: Sequence[str], horizon: int
) -> tuple[dict[str, np.ndarray], tuple[int, tuple[str, ...] | None]]:
    """The frame store and the other training arrays of pixel `transitions` for `keys`, and the
    frame samplers' (horizon, batch keys) arguments."""
    check_terminals(transitions, horizon)
    store = frame_store(transitions)
    wanted = data_keys(keys, horizon)
    observed = STATE_KEYS if "observations" in wanted and has_state(transitions) else ()
    rest = {
        k: np.asarray(training_array(transitions, k), np.float32)
        for k in (*wanted, *observed)
        if k not in OBS_KEYS
    }
    window = (horizon, tuple(keys)) if horizon > 1 else (1, None)
    return {**store, **rest}, window


def make_sampler(
    transitions: Mapping[str, np.ndarray],
    keys: Sequence[str] | None = None,
    placement: str | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    log: Log | None = None,
    horizon: int = 1,
) -> Sampler:
    """The sampler of a dataset's training arrays `keys` (pass `agent.batch_keys` to carry only
    what that agent reads; None: every key an agent reads).

    `horizon` (an agent config's, `agent_sampler` passes it): 1 draws single transitions;
    h > 1 h-step windows of every placement below (gfp.engine.sequence).

    State data: `placement` None keeps it on the device (`ArraySampler`, whose `data` other
    code may read, e.g. the online replay buffer's first rows); 'auto', 'device', 'host' or
    'disk' (the run setting data_placement) as `state_sampler` decides.

    Pixel transitions (uint8 image observations) become frame data instead (gfp.engine.frames):
    the frames stored once, stacked by index when minibatches are drawn, on the device when they
    fit there, else in host memory (`placement` 'device' or 'host', or $GFP_FRAMES_ON, forces
    one; 'disk' memory-maps them)."""
    if keys is None:
        keys = BATCH_KEYS + DERIVED_KEYS if horizon == 1 else (*BATCH_KEYS, VALID)
    obs = transitions.get("observations")
    if is_pixels(obs) and ("next_observations" in transitions or is_frame_form(transitions)):
        if placement == "disk":
            return host_frame_sampler_on_disk(transitions, keys, cache_dir, log, horizon)
        where = None if placement == "auto" else placement
        return frame_sampler(transitions, keys, where, horizon)
    return state_sampler(
        transitions, keys, placement or "device", cache_dir=cache_dir, log=log, horizon=horizon
    )


def agent_sampler(
    transitions: Mapping[str, np.ndarray],
    agent: Any,
    placement: str | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    log: Log | None = None,
) -> Sampler:
    """`make_sampler` for what `agent` reads (`agent.batch_keys`), with its config's horizon."""
    return make_sampler(
        transitions,
        agent.batch_keys,
        placement,
        cache_dir=cache_dir,
        log=log,
        horizon=horizon_of(agent.config),
    )


def host_frame_sampler_on_disk(
    transitions: Mapping[str, np.ndarray],
    keys: Sequence[str],
    cache_dir: str | os.PathLike | None = None,
    log: Log | None = None,
    horizon: int = 1,
) -> HostFrameSampler:
    """Pixel `transitions`' frame data memory-mapped from disk (gfp.engine.host_arrays.spill),
    gathered and fed as from host memory (`HostFrameSampler`)."""
    arrays, window = frame_arrays(transitions, keys, horizon)
    if log is not None:
        nbytes = sum(int(a.nbytes) for a in arrays.values())
        log(f"frame data on the disk: {nbytes / 2**20:.0f} MiB, as --data-placement disk says")
    columns = {k: (a.shape, a.dtype, lambda lo, hi, a=a: a[lo:hi]) for k, a in arrays.items()}
    return HostFrameSampler(spill(columns, cache_dir), *window)
