"""The task registry (gfp/tasks.py) against the paper's task lists, typed here from the paper
(Sec. 4, Tabs. 8-12; not read from the registry), so a wrong entry or a wrong parsing rule fails."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gfp import presets, tasks
from gfp.errors import ConfigError, DataError
from gfp.tasks import Task, dataset_file_stem, expand_tasks, parse_task

# ------------------------------------------------------------------------------------------------
# The paper's tasks, by hand: environment -> the registered OGBench env it runs in (dataset type
# dropped)
# ------------------------------------------------------------------------------------------------
LOCOMOTION = {
    "antmaze-large-navigate": "antmaze-large",
    "antmaze-large-stitch": "antmaze-large",
    "antmaze-large-explore": "antmaze-large",
    "antmaze-giant-navigate": "antmaze-giant",
    "humanoidmaze-medium-navigate": "humanoidmaze-medium",
    "humanoidmaze-medium-stitch": "humanoidmaze-medium",
    "humanoidmaze-large-navigate": "humanoidmaze-large",
    "antsoccer-arena-navigate": "antsoccer-arena",
    "antsoccer-arena-stitch": "antsoccer-arena",
}
MANIPULATION = {
    "cube-single-play": "cube-single",
    "cube-single-noisy": "cube-single",
    "cube-double-play": "cube-double",
    "cube-double-noisy": "cube-double",
    "cube-triple-play": "cube-triple",
    "cube-triple-noisy": "cube-triple",
    "puzzle-3x3-play": "puzzle-3x3",
    "puzzle-4x4-play": "puzzle-4x4",
    "puzzle-4x4-noisy": "puzzle-4x4",
    "scene-play": "scene",
    "scene-noisy": "scene",
}
PIXEL = {
    "visual-cube-single-play": "visual-cube-single",
    "visual-cube-double-play": "visual-cube-double",
    "visual-scene-play": "visual-scene",
    "visual-puzzle-3x3-play": "visual-puzzle-3x3",
    "visual-puzzle-4x4-play": "visual-puzzle-4x4",
}
NOISY = [
    "antmaze-large-explore",
    "cube-single-noisy",
    "cube-double-noisy",
    "cube-triple-noisy",
    "puzzle-4x4-noisy",
    "scene-noisy",
]
# D4RL's reference returns (d4rl/infos.py), typed again here.
PEN, DOOR = (96.262799, 3076.8331017826877), (-56.512833, 2880.5693087298737)
HAMMER, RELOCATE = (-274.856578, 12794.134825156867), (-6.425911, 4233.877797728884)
ADROIT = {"pen": PEN, "door": DOOR, "hammer": HAMMER, "relocate": RELOCATE}
MUJOCO = {
    "halfcheetah": (-280.178953, 12135.0),
    "hopper": (-20.272305, 3234.3),
    "walker2d": (1.629008, 4592.3),
}
ANTMAZE = ["umaze", "umaze-diverse", "medium-play", "medium-diverse", "large-play", "large-diverse"]
D4RL = {f"antmaze-{m}-v2": (f"antmaze-{m}", (0.0, 1.0)) for m in ANTMAZE} | {
    f"{h}-{q}-v1": (f"{h}-{q}", ref)
    for h, ref in ADROIT.items()
    for q in ("human", "cloned", "expert")
}
# The paper's Minari Adroit tasks: the authors' table (envs/minari_utils.py, MINARI_DICT_REF_SCORES)
MINARI_ADROIT = {
    "pen": (137.92955108500217, 8820.50845967583),
    "door": (-45.80706024169922, 2940.578369140625),
    "hammer": (-267.074462890625, 12635.712890625),
    "relocate": (9.189092636108398, 4287.70458984375),
}
MINARI = {
    f"D4RL/{h}/{q}-v2": (f"D4RL/{h}/{q}", ref)
    for h, ref in MINARI_ADROIT.items()
    for q in ("human", "cloned", "expert")
} | {
    f"mujoco/{b}/{q}-v0": (f"mujoco/{b}/{q}", ref)
    for b, ref in MUJOCO.items()
    for q in ("simple", "medium", "expert")
}


def expected(task: str) -> Task:
    """The record the paper implies for one of its tasks."""
    if task in D4RL:
        key, ref = D4RL[task]
        return Task(task, "d4rl", task, task, None, "state", key, "d4rl", 500_000,
                    "normalized_return", ref)  # fmt: skip
    if task in MINARI:
        key, ref = MINARI[task]
        return Task(task, "minari", None, task, None, "state", key, "minari", 1_000_000,
                    "normalized_return", ref)  # fmt: skip
    stem, number = task.split("-singletask-task")
    number = int(number.removesuffix("-v0"))
    pixels = stem in PIXEL
    env = {**LOCOMOTION, **MANIPULATION, **PIXEL}[stem]
    return Task(
        task,
        "ogbench",
        f"{env}-singletask-task{number}-v0",
        f"{stem}-v0",
        number,
        "pixels" if pixels else "state",
        stem,
        "ogbench-pixel" if pixels else "ogbench",
        500_000 if pixels else 1_000_000,
        "success",
        None,
    )


PAPER = (
    [f"{e}-singletask-task{i}-v0" for e in [*LOCOMOTION, *MANIPULATION] for i in range(1, 6)]
    + [f"{e}-singletask-task1-v0" for e in PIXEL]
    + list(D4RL)
    + list(MINARI)
)


def test_paper_lists_have_the_papers_counts():
    assert len(PAPER) == len(set(PAPER)) == 144
    assert set(tasks.PAPER_TASKS) == set(PAPER)
    assert len(tasks.OGBENCH_ENVS) == 20 and len(tasks.OGBENCH_PIXEL_ENVS) == 5
    assert set(tasks.OGBENCH_LOCOMOTION_ENVS) == set(LOCOMOTION)
    assert set(tasks.OGBENCH_MANIPULATION_ENVS) == set(MANIPULATION)
    assert (len(tasks.D4RL_ENVS), len(tasks.MINARI_ENVS)) == (18, 21)


@pytest.mark.parametrize("task", PAPER)
def test_every_paper_task_parses_to_its_record(task):
    record = parse_task(task)
    assert record == expected(task)
    assert record.in_paper


def test_every_presets_selector_is_the_env_key_of_paper_tasks():
    """Each environment selector of the presets table is reached by the paper's tasks, and by
    nothing else: parse_task(...).env_key is what the table is matched on."""
    rows = presets.load_table()
    # The qc preset's rows are Q-chunking's domains (presets.QC_ENVS), one outside the paper.
    selectors = {r.tasks for r in rows if r.preset != "qc"} - {presets.ANY}
    assert len(selectors) == 64  # 20 + 5 + 18 + 21 environments
    assert {r.tasks for r in rows if r.preset == "qc"} == set(presets.QC_ENVS)
    keys: dict[str, set[str]] = {}
    for task in PAPER:
        keys.setdefault(parse_task(task).env_key, set()).add(task)
    assert set(keys) == selectors
    one_task = {*PIXEL, *(key for key, _ in D4RL.values()), *(key for key, _ in MINARI.values())}
    for selector, names in keys.items():
        assert len(names) == (1 if selector in one_task else 5), selector
        assert presets.task_env(next(iter(names))) == selector  # the string rule agrees


def test_non_paper_names():
    point = parse_task("pointmaze-medium-navigate-singletask-v0")
    assert (point.source, point.env_id, point.dataset, point.task_number) == (
        "ogbench", "pointmaze-medium-singletask-v0", "pointmaze-medium-navigate-v0", None
    )  # fmt: skip
    assert (point.benchmark, point.paper_steps, point.in_paper) == ("ogbench", 1_000_000, False)
    pixel5 = parse_task("visual-cube-single-play-singletask-task5-v0")  # the paper ran task1
    assert (pixel5.obs_kind, pixel5.paper_steps, pixel5.in_paper) == ("pixels", 500_000, False)
    hopper = parse_task("hopper-medium-v2")  # classic D4RL: its reference, no paper row
    assert (hopper.source, hopper.benchmark, hopper.reference) == ("d4rl", "d4rl", MUJOCO["hopper"])
    minari = parse_task("mujoco/ant/medium-v0")
    assert (minari.source, minari.scoring, minari.reference) == ("minari", "return", None)
    other = parse_task("InvertedPendulum-v5")  # a Gymnasium id, e.g. a Minari eval env
    assert (other.source, other.env_id, other.benchmark, other.scoring) == (
        "d4rl", "InvertedPendulum-v5", "other", "return"
    )  # fmt: skip
    assert parse_task("  pen-human-v1 ").name == "  pen-human-v1 "  # kept as given
    assert parse_task("  pen-human-v1 ").env_key == "pen-human"


# ------------------------------------------------------------------------------------------------
# Suites and task lists
# ------------------------------------------------------------------------------------------------
def test_suites():
    sizes = {k: len(v) for k, v in tasks.SUITES.items()}
    assert sizes["ogbench-locomotion"] == 45 and sizes["ogbench-manipulation"] == 55
    assert sizes["ogbench-noisy"] == 30 and sizes["ogbench-visual"] == 5
    assert (sizes["ogbench"], sizes["d4rl"], sizes["minari"], sizes["paper"]) == (105, 18, 21, 144)
    assert sizes["ogbench-fql"] == 50
    for name, members in tasks.SUITES.items():
        assert len(set(members)) == len(members), name
        assert set(members) <= set(PAPER), name
    noisy = {f"{e}-singletask-task{i}-v0" for e in NOISY for i in range(1, 6)}
    assert set(tasks.SUITES["ogbench-noisy"]) == noisy
    assert set(tasks.SUITES["d4rl"]) == set(D4RL) and set(tasks.SUITES["minari"]) == set(MINARI)
    assert set(tasks.SUITES["ogbench-visual"]) == {f"{e}-singletask-task1-v0" for e in PIXEL}


def test_expand_tasks():
    five = [f"cube-double-noisy-singletask-task{i}-v0" for i in range(1, 6)]
    assert expand_tasks("cube-double-noisy") == five
    assert expand_tasks("visual-scene-play") == [
        f"visual-scene-play-singletask-task{i}-v0" for i in range(1, 6)
    ]
    assert expand_tasks("pen-human, D4RL/pen/human") == ["pen-human-v1", "D4RL/pen/human-v2"]
    # in order, without repeats; full names and paths pass through unchanged
    spec = "cube-double-noisy-singletask-task3-v0,ogbench-noisy,scene-play,/data/x.hdf5"
    got = expand_tasks(spec)
    assert got[0] == five[2] and got[-1] == "/data/x.hdf5"
    assert len(got) == 1 + 29 + 5 + 1 and len(set(got)) == len(got)
    assert expand_tasks("paper") == list(tasks.PAPER_TASKS)
    assert expand_tasks("hopper-medium-v2,mujoco/ant/medium-v0,") == [
        "hopper-medium-v2",
        "mujoco/ant/medium-v0",
    ]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("ogbench-manipulaton", "did you mean ogbench-manipulation"),
        ("scene-play,cube-dubble-noisy", "did you mean cube-double-noisy"),
        ("pen-humen", "did you mean pen-human"),
        ("cube-double-noisy-singletask-task7-v0", "task7 does not exist"),
        (" , ", "is empty"),
    ],
)
def test_expand_tasks_errors(spec, message):
    with pytest.raises(ConfigError) as err:
        expand_tasks(spec)
    assert message in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------------
# Names that are no task: one line, naming the closest valid names
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, message",
    [
        (
            "cube-single-noisi-singletask-task1-v0",
            "'cube-single-noisi' is not an OGBench environment and dataset type; did you mean "
            "cube-single-noisy-singletask-task1-v0",
        ),
        ("cueb-double-play-singletask-task4-v0", "did you mean cube-double-play-singletask-task4"),
        (
            "cube-single-noisy-singletask-task1-v7",
            "did you mean cube-single-noisy-singletask-task1-v0",
        ),
        ("cube-single-noisy-singletask-task6-v0", "task6 does not exist"),
        ("cube-single-noisy-singletask-taskx-v0", "expected cube-single-noisy-singletask-taskN-v0"),
        ("cube-double-play-v0", "is a goal-conditioned OGBench dataset"),
        ("cube-double-noisy", "is an OGBench environment, not a task"),
        ("cube-double", "did you mean cube-double-play-singletask-task1-v0 or cube-double-noisy"),
        ("antmaze-large-pley-v2", "not an OGBench singletask task or a D4RL task"),
        ("antmaze-large-pley-v2", "did you mean antmaze-large-play-v2"),
        ("pointmaze-medium-explore-singletask-v0", "is not an OGBench environment"),
        ("", "the task is empty"),
        ("cube double", "is not a task name, a file or a directory"),
    ],
)
def test_bad_names(name, message):
    with pytest.raises(ConfigError) as err:
        parse_task(name)
    assert message in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


def test_missing_path_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file or directory"):
        parse_task(str(tmp_path / "nope" / "data"))


# ------------------------------------------------------------------------------------------------
# Paths
# ------------------------------------------------------------------------------------------------
def test_file_paths(tmp_path):
    mine = parse_task(str(tmp_path / "mydata.npz"))  # need not exist: the loader says so
    assert (mine.source, mine.env_id, mine.benchmark, mine.scoring) == (
        "npz",
        None,
        "other",
        "return",
    )
    assert mine.dataset == str(tmp_path / "mydata.npz") and mine.paper_steps == 1_000_000
    assert parse_task("x/data.h5").source == "hdf5"
    pen = parse_task("/data/d4rl/pen-human-v1.hdf5")  # named after a D4RL task: scored as one
    assert (pen.source, pen.env_id, pen.env_key, pen.benchmark) == (
        "hdf5", "pen-human-v1", "pen-human", "d4rl"
    )  # fmt: skip
    assert (pen.reference, pen.paper_steps, pen.in_paper) == (PEN, 500_000, False)
    assert parse_task("/d/pen-human-v1-val.npz").env_id == "pen-human-v1"
    cache = "Ant_maze_hardest-maze_noisy_multistart_True_multigoal_False_sparse_fixed.hdf5"
    assert parse_task(f"/d/{cache}").env_id == "antmaze-large-play-v2"
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"notes.txt: unsupported file type '.txt'"):
        parse_task(str(tmp_path / "notes.txt"))


def test_minari_directories(tmp_path):
    data = tmp_path / "D4RL" / "pen" / "human-v2" / "data"
    data.mkdir(parents=True)
    (data / "metadata.json").write_text(json.dumps({}))
    pen = parse_task(str(tmp_path / "D4RL" / "pen" / "human-v2"))
    assert (pen.source, pen.env_id, pen.env_key, pen.reference) == (
        "minari", None, "D4RL/pen/human", MINARI_ADROIT["pen"]
    )  # fmt: skip
    assert parse_task(str(data)).source == "minari"  # the data folder itself
    odd = tmp_path / "mine"
    (odd / "data").mkdir(parents=True)
    (odd / "data" / "metadata.json").write_text("{}")
    assert (parse_task(str(odd)).source, parse_task(str(odd)).reference) == ("minari", None)


def test_a_directory_that_is_no_dataset_says_what_to_pass(tmp_path):
    (tmp_path / "cube-single-noisy-v0.npz").write_bytes(b"")
    (tmp_path / "cube-single-noisy-v0-val.npz").write_bytes(b"")
    with pytest.raises(DataError) as err:
        parse_task(str(tmp_path))
    msg = str(err.value)
    assert f"task {tmp_path}: is a directory, not a dataset" in msg
    assert f"--task cube-single-noisy-singletask-task1-v0 --dataset-dir {tmp_path}" in msg
    assert "minari download" not in msg
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="holds no .npz, .hdf5 or .h5 file"):
        parse_task(str(empty))


def test_dataset_file_stem():
    assert dataset_file_stem("cube-double-play-singletask-task3-v0") == "cube-double-play-v0"
    assert dataset_file_stem("pointmaze-medium-navigate-singletask-v0") == (
        "pointmaze-medium-navigate-v0"
    )
    assert dataset_file_stem("cube-single-play-oraclerep-v0") == "cube-single-play-v0"
    assert dataset_file_stem("scene-play-v0") == "scene-play-v0"
    with pytest.raises(ConfigError, match="did you mean scene-play-singletask-task2-v0"):
        dataset_file_stem("scene-pley-singletask-task2-v0")


def test_evaluation_builds_the_registered_env():
    from gfp.evaluate import make_env

    env = make_env("cube-single-noisy-singletask-task2-v0")
    try:
        assert env.spec.id == "cube-single-singletask-task2-v0"
    finally:
        env.close()


def test_registry_imports_no_heavy_library():
    """`gfp presets` and the evaluation workers import the registry: it must stay stdlib-only."""
    code = (
        "import sys, gfp.tasks; "
        "heavy = {'jax', 'numpy', 'gymnasium', 'ogbench', 'h5py', 'minari'}; "
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
