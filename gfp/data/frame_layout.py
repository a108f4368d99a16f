"""How pixel transitions are held in memory: every frame once (NumPy only, no JAX).

A pixel dataset's transitions could hold `observations` and `next_observations`, each (N, H, W,
C) uint8; within an episode next_observations[t] is observations[t + 1]. So only the
observations are kept, plus each episode's final next frame (`tail_frames`, E of them): N + E
frames instead of 2N. Two int32 arrays index them: `frame_start[t]`, the first row of t's
episode, and `frame_next[t]`, where t's next frame is (t + 1, or N + e in the tails for the last
transition of episode e). Should a dataset's rows not be consecutive frames, every next frame
becomes a tail (N + t), so nothing is assumed that was not checked.

Transitions in this *frame form* carry `tail_frames`, `frame_start` and `frame_next` beside
`observations` and no `next_observations`. OGBench's visual datasets are loaded straight into it
(`from_compact`, in the file's own memory: a 1M-frame dataset, 12 GiB of uint8, is held once, not
three times as the two-array form would hold it while loading); `frame_store` also builds it from
the two-array form of other pixel data. gfp.engine.frames stacks, augments and places the frames.

A camera and a state vector together (a LeRobot `--obs-keys observation.state,CAMERA`): the
frame form for the camera plus `observations_state` and `next_observations_state` (`STATE_KEYS`,
(N, d) float32, row t the state at t and at t's next frame; a state is small, so its next rows are
stored, not indexed). The networks see {"pixels": the frame stack, "state": the current state}.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

FRAME_KEYS = ("frames", "tail_frames", "frame_start", "frame_next")
OBS_KEYS = ("observations", "next_observations")
LAYOUT_KEYS = ("tail_frames", "frame_start", "frame_next")  # the frame form, beside observations
# the state vector beside a camera (combined observations), row t and t's next state
STATE_KEYS = ("observations_state", "next_observations_state")
_BLOCK = 4096  # rows per block of the in-place and blockwise passes: bounded temporaries


def is_pixels(obs: Any) -> bool:
    """Image observations: uint8 rows of shape (H, W, C)."""
    return getattr(obs, "dtype", None) == np.uint8 and getattr(obs, "ndim", 0) == 4


def is_frame_form(transitions: Mapping[str, Any]) -> bool:
    """Pixel transitions whose next frames are indexed (`frame_next`), not stored."""
    return "frame_next" in transitions


def has_state(transitions: Mapping[str, Any]) -> bool:
    """Pixel transitions that also carry a state vector per observation (`STATE_KEYS`)."""
    return STATE_KEYS[0] in transitions


def from_compact(frames: np.ndarray, valid: np.ndarray) -> dict[str, np.ndarray]:
    """The frame form of OGBench's compact layout (`ogbench.utils.load_dataset(...,
    compact_dataset=True)`), built inside `frames`' own memory.

    `frames` holds every frame of every episode in order; `valid[r]` is False for each episode's
    last frame, which starts no transition. Transition t is the t-th valid row r(t), and its next
    frame is row r(t) + 1. The episodes' last frames are copied out as the tails, then the valid
    rows are moved to the front of `frames` in place (a row only ever moves to a lower index), so
    `observations` is a view of `frames`: no second copy of the images at any time.
    Returns observations, tail_frames, frame_start, frame_next and terminals (float32, 1 on each
    episode's last transition).
    """
    valid = np.asarray(valid).astype(bool)
    if len(valid) != len(frames):
        raise ValueError(f"{len(valid)} validity flags for {len(frames)} frames")
    if len(valid) and valid[-1]:
        raise ValueError("the last frame starts a transition, so its next frame is missing")
    rows = np.flatnonzero(valid)  # r(t)
    n = len(rows)
    nxt_row = rows + 1
    ends = ~valid[nxt_row]  # t's next frame is its episode's last one
    tail_of_row = np.cumsum(~valid) - 1  # index of each invalid row among the invalid rows
    frame_next = np.where(ends, n + tail_of_row[nxt_row], np.arange(1, n + 1))
    starts = np.concatenate([[0], np.flatnonzero(ends[:-1]) + 1])
    episode = np.cumsum(np.concatenate([[0], ends[:-1]]))
    tails = frames[~valid]  # a copy (fancy indexing), E frames, made before the rows move
    for lo in range(0, n, _BLOCK):  # rows[j] >= j: a block reads rows no earlier block wrote
        hi = min(lo + _BLOCK, n)
        frames[lo:hi] = frames[rows[lo:hi]]
    return {
        "observations": frames[:n],
        "tail_frames": tails,
        "frame_start": starts[episode].astype(np.int32),
        "frame_next": frame_next.astype(np.int32),
        "terminals": ends.astype(np.float32),
    }


def frame_store(transitions: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The frames of pixel `transitions`, stored once: `frames` (the transitions' own
    observations array, no copy), `tail_frames`, `frame_start`, `frame_next`. Transitions in the
    frame form already are one."""
    obs = np.asarray(transitions["observations"])
    if is_frame_form(transitions):
        return {"frames": obs, **{k: np.asarray(transitions[k]) for k in LAYOUT_KEYS}}
    nxt = np.asarray(transitions["next_observations"])
    n = len(obs)
    if "terminals" in transitions:
        ends = np.asarray(transitions["terminals"]).astype(bool).copy()
    else:
        ends = np.zeros(n, bool)
    ends[-1] = True  # the data ends an episode
    starts = np.concatenate([[0], np.flatnonzero(ends[:-1]) + 1])
    episode = np.cumsum(np.concatenate([[0], ends[:-1]]))  # episode number of each row
    frame_start = starts[episode]
    if _consecutive(obs, nxt, ends):
        tails = nxt[ends]
        frame_next = np.where(ends, n + episode, np.arange(1, n + 1))
    else:
        tails = nxt
        frame_next = n + np.arange(n)
    return {
        "frames": obs,
        "tail_frames": np.ascontiguousarray(tails),
        "frame_start": frame_start.astype(np.int32),
        "frame_next": frame_next.astype(np.int32),
    }


def _consecutive(obs: np.ndarray, nxt: np.ndarray, ends: np.ndarray) -> bool:
    """Whether next_observations[t] == observations[t + 1] for every row t inside an episode."""
    for lo in range(0, len(obs) - 1, _BLOCK):
        hi = min(lo + _BLOCK, len(obs) - 1)
        inside = ~ends[lo:hi]
        if not np.array_equal(nxt[lo:hi][inside], obs[lo + 1 : hi + 1][inside]):
            return False
    return True


def next_frames(transitions: Mapping[str, np.ndarray], rows: Any = slice(None)) -> np.ndarray:
    """The next observations of `rows` of frame-form transitions (a copy of just those rows)."""
    obs, tails = transitions["observations"], transitions["tail_frames"]
    idx = np.asarray(transitions["frame_next"])[rows]
    n = len(obs)
    out = np.empty((*np.shape(idx), *obs.shape[1:]), obs.dtype)
    from_tail = idx >= n
    out[~from_tail] = obs[idx[~from_tail]]
    out[from_tail] = tails[idx[from_tail] - n]
    return out
