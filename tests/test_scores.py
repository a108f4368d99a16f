"""Normalized scores against hand-computed values with D4RL's reference returns (infos.py)."""

from __future__ import annotations

import pytest

from gfp.data.scores import REFERENCE_SCORES, normalized_score

PAPER_D4RL = [
    *(
        f"antmaze-{m}-v2"
        for m in (
            "umaze",
            "umaze-diverse",
            "medium-play",
            "medium-diverse",
            "large-play",
            "large-diverse",
        )
    ),
    *(
        f"{e}-{k}-v1"
        for e in ("pen", "door", "hammer", "relocate")
        for k in ("human", "cloned", "expert")
    ),
]
PAPER_MINARI = [
    *(
        f"D4RL/{e}/{k}-v2"
        for e in ("pen", "door", "hammer", "relocate")
        for k in ("human", "cloned", "expert")
    ),
    *(
        f"mujoco/{e}/{k}-v0"
        for e in ("halfcheetah", "hopper", "walker2d")
        for k in ("simple", "medium", "expert")
    ),
]


def test_every_paper_task_has_reference_scores():
    assert len(PAPER_D4RL) == 18 and len(PAPER_MINARI) == 21
    for task in PAPER_D4RL + PAPER_MINARI:
        assert task in REFERENCE_SCORES, task


@pytest.mark.parametrize(
    "task, ret, expected",
    [
        # (return - min) / (max - min) * 100 with D4RL's REF_MIN_SCORE / REF_MAX_SCORE
        ("pen-human-v1", 96.262799, 0.0),
        ("pen-expert-v1", 3076.8331017826877, 100.0),
        ("door-cloned-v1", 0.0, 100 * 56.512833 / (2880.5693087298737 + 56.512833)),  # ~1.924
        ("hammer-expert-v1", 12794.134825156867 / 2, 100 * (6397.0674 + 274.856578) / 13068.9914),
        ("relocate-human-v1", -6.425911, 0.0),
        ("antmaze-large-play-v2", 1.0, 100.0),
        ("antmaze-umaze-diverse-v2", 0.0, 0.0),
        ("D4RL/door/expert-v2", 2880.5693087298737, 100.0),
        ("mujoco/hopper/medium-v0", 1000.0, 31.3488),  # 1020.272305 / 3254.572305
        ("mujoco/halfcheetah/simple-v0", -280.178953, 0.0),
        ("mujoco/walker2d/expert-v0", 4592.3, 100.0),
        ("hopper-medium-v2", 3234.3, 100.0),
        ("/data/d4rl/pen-cloned-v1.hdf5", 3076.8331017826877, 100.0),  # a file named after the task
    ],
)
def test_normalized_score_values(task, ret, expected):
    assert normalized_score(task, ret) == pytest.approx(expected, abs=1e-3)


def test_door_uses_d4rl_min_not_minari():
    # D4RL's door reference minimum is -56.512833; a wrong table would not give exactly 0 here
    assert normalized_score("D4RL/door/human-v2", -56.512833) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(
    "task",
    ["cube-double-play-singletask-task1-v0", "unknown-task-v0", "mujoco/ant/medium-v0", ""],
)
def test_unknown_tasks_have_no_score(task):
    assert normalized_score(task, 123.0) is None
