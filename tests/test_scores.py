"""Normalized scores against hand-computed values: D4RL's reference returns (d4rl/infos.py) for
the D4RL tasks, the authors' table (MINARI_DICT_REF_SCORES in envs/minari_utils.py of
ZhangJL16/FQLbaseline) for the paper's Minari tasks."""

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
        ("D4RL/door/expert-v2", 2940.578369140625, 100.0),
        ("mujoco/hopper/medium-v0", 1000.0, 31.3488),  # 1020.272305 / 3254.572305
        ("mujoco/halfcheetah/simple-v0", -280.178953, 0.0),
        ("mujoco/walker2d/expert-v0", 4592.3, 100.0),
        ("hopper-medium-v2", 3234.3, 100.0),
        ("/data/d4rl/pen-cloned-v1.hdf5", 3076.8331017826877, 100.0),  # a file named after the task
    ],
)
def test_normalized_score_values(task, ret, expected):
    assert normalized_score(task, ret) == pytest.approx(expected, abs=1e-3)


# The authors' Minari table, typed again: (ref_min, ref_max) per Adroit environment.
MINARI_ADROIT = {
    "pen": (137.92955108500217, 8820.50845967583),
    "door": (-45.80706024169922, 2940.578369140625),
    "hammer": (-267.074462890625, 12635.712890625),
    "relocate": (9.189092636108398, 4287.70458984375),
}
D4RL_ADROIT = {  # d4rl/infos.py: what the D4RL v1 tasks keep
    "pen": (96.262799, 3076.8331017826877),
    "door": (-56.512833, 2880.5693087298737),
    "hammer": (-274.856578, 12794.134825156867),
    "relocate": (-6.425911, 4233.877797728884),
}


@pytest.mark.parametrize("env", list(MINARI_ADROIT))
@pytest.mark.parametrize("quality", ["human", "cloned", "expert"])
def test_minari_adroit_uses_the_reference_table(env, quality):
    lo, hi = MINARI_ADROIT[env]
    task = f"D4RL/{env}/{quality}-v2"
    assert REFERENCE_SCORES[task] == (lo, hi)
    assert normalized_score(task, lo) == pytest.approx(0.0, abs=1e-9)
    assert normalized_score(task, hi) == pytest.approx(100.0, abs=1e-9)
    ret = 0.25 * lo + 0.75 * hi
    assert normalized_score(task, ret) == pytest.approx(75.0, abs=1e-9)
    # D4RL's numbers would score the table's expert return otherwise (pen: 283, not 100)
    d_lo, d_hi = D4RL_ADROIT[env]
    assert abs(100 * (hi - d_lo) / (d_hi - d_lo) - 100.0) > 1.0
    # the D4RL task of the same environment keeps D4RL's reference
    assert REFERENCE_SCORES[f"{env}-{quality}-v1"] == (d_lo, d_hi)


def test_pen_score_on_the_papers_scale():
    # a pen return of 3000: 33.0 with the authors' table, 97.4 with D4RL's
    assert normalized_score("D4RL/pen/human-v2", 3000.0) == pytest.approx(
        100 * (3000.0 - 137.92955108500217) / (8820.50845967583 - 137.92955108500217)
    )
    assert normalized_score("D4RL/pen/human-v2", 3000.0) == pytest.approx(32.963, abs=1e-3)


@pytest.mark.parametrize(
    "task",
    ["cube-double-play-singletask-task1-v0", "unknown-task-v0", "mujoco/ant/medium-v0", ""],
)
def test_unknown_tasks_have_no_score(task):
    assert normalized_score(task, 123.0) is None
