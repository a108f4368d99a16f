"""Normalized scores for the D4RL and Minari tasks of the paper (x100, as reported).

``normalized = 100 * (return - ref_min) / (ref_max - ref_min)`` with D4RL's reference returns.
Minari datasets are normalized with the D4RL reference scores of the corresponding environment,
as the GFP paper does (Minari ships none for its MuJoCo datasets). OGBench tasks are scored by
success rate, not return, so they have no entry here and :func:`normalized_score` returns None.
"""

from __future__ import annotations

from pathlib import Path

# (ref_min, ref_max) episode returns, from D4RL's d4rl/infos.py (REF_MIN_SCORE / REF_MAX_SCORE).
# D4RL's Adroit v1 entries reuse the '<env>-human-v0' numbers and its Gym-MuJoCo v2 entries
# reuse '<env>-random-v0'; antmaze is scored 0..1 (success).
_ADROIT_REF = {
    "pen": (96.262799, 3076.8331017826877),
    "door": (-56.512833, 2880.5693087298737),
    "hammer": (-274.856578, 12794.134825156867),
    "relocate": (-6.425911, 4233.877797728884),
}
_MUJOCO_REF = {
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
}
_ANTMAZE_REF = (0.0, 1.0)

REFERENCE_SCORES: dict[str, tuple[float, float]] = {}
# D4RL tasks of the paper (Tab. 11).
for _maze in (
    "umaze",
    "umaze-diverse",
    "medium-play",
    "medium-diverse",
    "large-play",
    "large-diverse",
):
    REFERENCE_SCORES[f"antmaze-{_maze}-v2"] = _ANTMAZE_REF
for _env, _ref in _ADROIT_REF.items():
    for _kind in ("human", "cloned", "expert"):
        REFERENCE_SCORES[f"{_env}-{_kind}-v1"] = _ref
        # Minari's port of the same data (paper Tab. 12)
        REFERENCE_SCORES[f"D4RL/{_env}/{_kind}-v2"] = _ref
for _env, _ref in _MUJOCO_REF.items():
    for _kind in ("simple", "medium", "expert"):
        REFERENCE_SCORES[f"mujoco/{_env}/{_kind}-v0"] = _ref  # paper Tab. 12
    for _kind in ("random", "medium", "expert", "medium-replay", "medium-expert", "full-replay"):
        REFERENCE_SCORES[f"{_env}-{_kind}-v2"] = _ref  # the classic D4RL names, same reference

# The D4RL task names (used by the loader to recognise a D4RL file by its name).
D4RL_TASKS = frozenset(k for k in REFERENCE_SCORES if "/" not in k)


def reference_scores(task: str) -> tuple[float, float] | None:
    """(ref_min, ref_max) for a task name, Minari id or a file named after a D4RL task."""
    if task in REFERENCE_SCORES:
        return REFERENCE_SCORES[task]
    # a path such as /data/pen-human-v1.hdf5
    stem = Path(task).name
    for suffix in (".hdf5", ".h5", ".npz"):
        stem = stem.removesuffix(suffix)
    return REFERENCE_SCORES.get(stem)


def normalized_score(task: str, episode_return: float) -> float | None:
    """D4RL-normalized score x100 of an undiscounted episode return; None for unknown tasks.

    ``task`` is the name the data was loaded with (``Dataset.name``), e.g. ``pen-human-v1``,
    ``antmaze-large-play-v2``, ``D4RL/door/expert-v2`` or ``mujoco/hopper/medium-v0``. The
    return must be in the environment's own reward units (for antmaze, 1 at the goal: do not
    include FQL's -1 training reward shift).
    """
    ref = reference_scores(task)
    if ref is None:
        return None
    lo, hi = ref
    return 100.0 * (float(episode_return) - lo) / (hi - lo)
