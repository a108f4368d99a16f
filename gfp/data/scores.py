"""Normalized scores for the D4RL and Minari tasks of the paper (x100, as reported).

``normalized = 100 * (return - ref_min) / (ref_max - ref_min)``. The reference numbers live with
the task registry (:data:`gfp.tasks.REFERENCE_SCORES`); which task gets which reference is the
registry's call (:attr:`gfp.tasks.Task.reference`). D4RL tasks use D4RL's reference returns
(d4rl/infos.py); the paper's Minari tasks use the table of the authors' release
(:data:`gfp.tasks.MINARI_REF_SCORES`, from `MINARI_DICT_REF_SCORES` in its envs/minari_utils.py:
D4RL's numbers for MuJoCo, its own for Adroit). OGBench tasks are scored by success rate, not
return, so :func:`normalized_score` returns None for them.
"""

from __future__ import annotations

from gfp.errors import GfpError
from gfp.tasks import REFERENCE_SCORES, parse_task

__all__ = ["REFERENCE_SCORES", "normalized_score", "reference_scores"]


def reference_scores(task: str) -> tuple[float, float] | None:
    """(ref_min, ref_max) for a task name, Minari id or a file named after a D4RL task; None for
    anything without one (including names that are no task at all)."""
    try:
        return parse_task(task).reference
    except GfpError:
        return None


def normalized_score(task: str, episode_return: float) -> float | None:
    """Normalized score x100 of an undiscounted episode return; None for unknown tasks.

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
