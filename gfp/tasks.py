"""The task registry: what a task name (or a dataset path) means, decided in ONE place.

`parse_task(name_or_path)` turns what a user typed into a small `Task` record: where the data
comes from (`source`), what evaluation builds (`env_id`), which dataset file (`dataset`), the task
number, whether observations are pixels, the environment key the presets table matches on
(`env_key`), the benchmark family, the paper's step budget and how the task is scored. The data
loader, evaluation, scoring, the presets and `gfp train` all ask it instead of reading the string
themselves. This module imports only the standard library and `gfp.errors`: evaluation workers and
`gfp presets` import it, and neither may pay for JAX.

Names understood (checked in this order)
----------------------------------------
* `lerobot:PATH`: a LeRobot dataset folder (meta/info.json, data/, videos/; format v3.0 or
  v2.1), source `lerobot`, no environment (evaluation is skipped). PATH is relative to
  `--dataset-dir` when one is given (`lerobot_path`). A folder holding meta/info.json given as
  the task is one too.
* a path: `*.npz` -> source `npz`, `*.hdf5` / `*.h5` -> `hdf5` (a file named after a D4RL task,
  e.g. `pen-human-v1.hdf5` or D4RL's own antmaze cache name, is evaluated and scored as that
  task); a Minari dataset directory (holding `data/metadata.json`) -> `minari`. Any other
  existing directory or a missing `/...`, `./...`, `~/...` path is an error naming the path.
* a name with a slash, `D4RL/pen/human-v2`, `mujoco/hopper/medium-v0`: a Minari dataset id.
* a D4RL name, `antmaze-large-play-v2`, `pen-human-v1`, `hopper-medium-v2`: a D4RL-style file
  looked up by name (source `d4rl`).
* an OGBench singletask task `ENV-TYPE-singletask[-taskN]-v0`, e.g.
  `cube-double-play-singletask-task3-v0` or `visual-scene-play-singletask-task1-v0`. Any name of an
  OGBench family (cube, scene, puzzle, pointmaze, antmaze, humanoidmaze, antsoccer) that is not
  such a task is an error naming the closest valid tasks; a goal-conditioned dataset name
  (`cube-double-play-v0`) or a bare environment (`cube-double-noisy`) says which tasks it has.
* any other plain name: a D4RL-style file NAME.npz / .hdf5 / .h5 in the D4RL data directory
  (source `d4rl`, benchmark `other`), evaluated in the Gymnasium env of that name.

Adding a data source
--------------------
One entry here plus one loader function: add the source's name to `SOURCES` and a rule in
`parse_task` returning its `Task`, then write `load(task, dataset_dir, validation) -> Loaded` and
register it in `gfp.data.load.LOADERS` (see gfp/data/minari_loader.py for a small example).

The paper's tasks (Sec. 4, Tabs. 8-12) are data here too: `OGBENCH_ENVS` (20 state environments x 5
tasks), `OGBENCH_PIXEL_ENVS` (5, task1 only), `D4RL_ENVS` (18), `MINARI_ENVS` (21),
`PAPER_TASKS` (144), the named `SUITES` and `expand_tasks` for task lists such as
`ogbench-noisy,pen-human,cube-double-play`.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import os
import re
from pathlib import Path
from typing import Literal, NoReturn

from gfp.errors import ConfigError, DataError

Source = Literal["ogbench", "d4rl", "minari", "npz", "hdf5", "lerobot"]
Benchmark = Literal["ogbench", "ogbench-pixel", "d4rl", "minari", "other"]
Scoring = Literal["success", "normalized_return", "return"]

SOURCES: tuple[str, ...] = ("ogbench", "d4rl", "minari", "npz", "hdf5", "lerobot")
FILE_SUFFIXES: tuple[str, ...] = (".npz", ".hdf5", ".h5")
# The paper's gradient-step budget per benchmark family (Tab. 4, the same as FQL's): 1M on
# OGBench state tasks and Minari, 500K on D4RL and OGBench pixel tasks. Other data: 1M.
PAPER_STEPS: dict[str, int] = {
    "ogbench": 1_000_000,
    "ogbench-pixel": 500_000,
    "d4rl": 500_000,
    "minari": 1_000_000,
    "other": 1_000_000,
}
OGBENCH_TASK_NUMBERS = range(1, 6)  # every OGBench environment has task1..task5

# ---------------------------------------------------------------------------------------------
# OGBench's datasets (seohongpark/ogbench data_gen_scripts/commands.sh): environment -> dataset
# types. A singletask task exists for every one of them; powderworld has no singletask variant.
# ---------------------------------------------------------------------------------------------
_MAZE, _MANIP = ("navigate", "stitch"), ("play", "noisy")
_STATE_DATASETS: dict[str, tuple[str, ...]] = {
    **{f"pointmaze-{m}": _MAZE for m in ("medium", "large", "giant", "teleport")},
    **{f"antmaze-{m}": (*_MAZE, "explore") for m in ("medium", "large", "teleport")},
    "antmaze-giant": _MAZE,
    **{f"humanoidmaze-{m}": _MAZE for m in ("medium", "large", "giant")},
    **{f"antsoccer-{m}": _MAZE for m in ("arena", "medium")},
    **{f"cube-{n}": _MANIP for n in ("single", "double", "triple", "quadruple")},
    "scene": _MANIP,
    **{f"puzzle-{s}": _MANIP for s in ("3x3", "4x4", "4x5", "4x6")},
}
# Pixel versions exist of everything but pointmaze and antsoccer, with the same dataset types.
_PIXEL_DATASETS = {
    f"visual-{env}": types
    for env, types in _STATE_DATASETS.items()
    if not env.startswith(("pointmaze-", "antsoccer-"))
}
OGBENCH_DATASET_TYPES: dict[str, tuple[str, ...]] = {**_STATE_DATASETS, **_PIXEL_DATASETS}
# Dataset stems without version ('cube-double-play'); the files are STEM-v0.npz / STEM-v0-val.npz.
OGBENCH_DATASETS: tuple[str, ...] = tuple(
    f"{env}-{kind}" for env, types in OGBENCH_DATASET_TYPES.items() for kind in types
)
_OGBENCH_DATASET_SET = frozenset(OGBENCH_DATASETS)
_OGBENCH_FAMILIES = ("pointmaze", "antmaze", "humanoidmaze", "antsoccer", "cube", "scene", "puzzle")

# ---------------------------------------------------------------------------------------------
# The paper's tasks (Sec. 4, Tabs. 8-12): 105 OGBench + 18 D4RL + 21 Minari = 144. The selectors
# double as the presets table's vocabulary (`env_key`).
# ---------------------------------------------------------------------------------------------
OGBENCH_LOCOMOTION_ENVS: tuple[str, ...] = (
    *(f"antmaze-large-{k}" for k in ("navigate", "stitch", "explore")),
    "antmaze-giant-navigate",
    *(f"humanoidmaze-medium-{k}" for k in _MAZE),
    "humanoidmaze-large-navigate",
    *(f"antsoccer-arena-{k}" for k in _MAZE),
)
OGBENCH_MANIPULATION_ENVS: tuple[str, ...] = (
    *(f"cube-{n}-{k}" for n in ("single", "double", "triple") for k in _MANIP),
    *("puzzle-3x3-play", "puzzle-4x4-play", "puzzle-4x4-noisy", "scene-play", "scene-noisy"),
)
OGBENCH_ENVS: tuple[str, ...] = OGBENCH_LOCOMOTION_ENVS + OGBENCH_MANIPULATION_ENVS
OGBENCH_PIXEL_ENVS: tuple[str, ...] = (
    "visual-cube-single-play",
    "visual-cube-double-play",
    "visual-scene-play",
    "visual-puzzle-3x3-play",
    "visual-puzzle-4x4-play",
)
# The 30 "noisy and explore" tasks and the 50 tasks of the FQL paper (the paper's Sec. 4, Tab. 10).
OGBENCH_NOISY_ENVS: tuple[str, ...] = (
    "antmaze-large-explore",
    *(f"{e}-noisy" for e in ("cube-single", "cube-double", "cube-triple", "puzzle-4x4", "scene")),
)
OGBENCH_FQL_ENVS: tuple[str, ...] = (
    *("antmaze-large-navigate", "antmaze-giant-navigate", "humanoidmaze-medium-navigate"),
    *("humanoidmaze-large-navigate", "antsoccer-arena-navigate", "cube-single-play"),
    *("cube-double-play", "scene-play", "puzzle-3x3-play", "puzzle-4x4-play"),
)
_ADROIT, _ADROIT_DATA = ("pen", "door", "hammer", "relocate"), ("human", "cloned", "expert")
_MUJOCO = ("halfcheetah", "hopper", "walker2d")
_ANTMAZE_D4RL = ("umaze", "umaze-diverse", "medium-play", "medium-diverse", "large-play")
_ANTMAZE_D4RL += ("large-diverse",)
D4RL_ENVS: tuple[str, ...] = (
    *(f"antmaze-{m}" for m in _ANTMAZE_D4RL),
    *(f"{h}-{q}" for h in _ADROIT for q in _ADROIT_DATA),
)
MINARI_ENVS: tuple[str, ...] = (
    *(f"D4RL/{h}/{q}" for h in _ADROIT for q in _ADROIT_DATA),
    *(f"mujoco/{b}/{q}" for b in _MUJOCO for q in ("simple", "medium", "expert")),
)
PAPER_ENVS: dict[str, tuple[str, ...]] = {
    "ogbench": OGBENCH_ENVS,
    "ogbench-pixel": OGBENCH_PIXEL_ENVS,
    "d4rl": D4RL_ENVS,
    "minari": MINARI_ENVS,
}


def _ogbench_tasks(envs: tuple[str, ...], numbers: range = OGBENCH_TASK_NUMBERS) -> tuple[str, ...]:
    return tuple(f"{e}-singletask-task{i}-v0" for e in envs for i in numbers)


def _versioned(env: str) -> str:
    """The version the paper used: D4RL antmaze v2, Adroit v1; Minari Adroit v2, MuJoCo v0."""
    if "/" in env:
        return f"{env}-v2" if env.startswith("D4RL/") else f"{env}-v0"
    return f"{env}-v2" if env.startswith("antmaze") else f"{env}-v1"


_PIXEL_TASKS = _ogbench_tasks(OGBENCH_PIXEL_ENVS, range(1, 2))  # the paper ran task1 only
D4RL_TASKS: tuple[str, ...] = tuple(_versioned(e) for e in D4RL_ENVS)
MINARI_TASKS: tuple[str, ...] = tuple(_versioned(e) for e in MINARI_ENVS)
SUITES: dict[str, tuple[str, ...]] = {
    "ogbench-locomotion": _ogbench_tasks(OGBENCH_LOCOMOTION_ENVS),  # 45
    "ogbench-manipulation": _ogbench_tasks(OGBENCH_MANIPULATION_ENVS),  # 55
    "ogbench-noisy": _ogbench_tasks(OGBENCH_NOISY_ENVS),  # 30
    "ogbench-fql": _ogbench_tasks(OGBENCH_FQL_ENVS),  # 50
    "ogbench-visual": _PIXEL_TASKS,  # 5
    "ogbench": (*_ogbench_tasks(OGBENCH_ENVS), *_PIXEL_TASKS),  # 105
    "d4rl": D4RL_TASKS,  # 18
    "minari": MINARI_TASKS,  # 21
}
PAPER_TASKS: tuple[str, ...] = (*SUITES["ogbench"], *D4RL_TASKS, *MINARI_TASKS)
SUITES["paper"] = PAPER_TASKS  # 144
_PAPER_TASK_SET = frozenset(PAPER_TASKS)

# ---------------------------------------------------------------------------------------------
# D4RL names, files and reference returns.
# ---------------------------------------------------------------------------------------------
_D4RL_NAME = re.compile(
    r"(antmaze-(?:umaze|umaze-diverse|medium-play|medium-diverse|large-play|large-diverse)"
    r"|(?:pen|door|hammer|relocate)-(?:human|cloned|expert)"
    r"|(?:halfcheetah|hopper|walker2d|ant)-(?:random|medium|expert|medium-replay|medium-expert"
    r"|full-replay))-v\d+"
)
# The file names D4RL's own downloader stores in ~/.d4rl/datasets for the paper's antmaze tasks
# (basename of the URL in D4RL's infos.py). Adroit v1 files are simply NAME.hdf5.
_ANT_FILE = "Ant_maze_{}_noisy_multistart_{}_multigoal_{}_sparse_fixed.hdf5"
D4RL_FILE_NAMES: dict[str, str] = {
    "antmaze-umaze-v2": _ANT_FILE.format("u-maze", False, False),
    "antmaze-umaze-diverse-v2": _ANT_FILE.format("u-maze", True, True),
    "antmaze-medium-play-v2": _ANT_FILE.format("big-maze", True, False),
    "antmaze-medium-diverse-v2": _ANT_FILE.format("big-maze", True, True),
    "antmaze-large-play-v2": _ANT_FILE.format("hardest-maze", True, False),
    "antmaze-large-diverse-v2": _ANT_FILE.format("hardest-maze", True, True),
}
_D4RL_BY_FILE_NAME = {file: task for task, file in D4RL_FILE_NAMES.items()}

# (ref_min, ref_max) episode returns, from D4RL's d4rl/infos.py (REF_MIN_SCORE / REF_MAX_SCORE).
# D4RL's Adroit v1 entries reuse the '<env>-human-v0' numbers and its Gym-MuJoCo v2 entries reuse
# '<env>-random-v0'; antmaze is scored 0..1 (success). The paper's D4RL tasks are scored with these.
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
# The paper's Minari tasks (Tab. 12) are scored with the authors' own table, not Minari's metadata
# (wrong for pen, missing for the MuJoCo datasets): `MINARI_DICT_REF_SCORES` in envs/minari_utils.py
# of their release (ZhangJL16/FQLbaseline), which matches an environment name inside the dataset id.
# Its MuJoCo entries are D4RL's numbers above; its Adroit ones are not (pen 137.93 / 8820.51 against
# D4RL's 96.26 / 3076.83), so a Minari Adroit score must not use D4RL's.
MINARI_REF_SCORES: dict[str, tuple[float, float]] = {
    **_MUJOCO_REF,
    "pen": (137.92955108500217, 8820.50845967583),
    "door": (-45.80706024169922, 2940.578369140625),
    "hammer": (-267.074462890625, 12635.712890625),
    "relocate": (9.189092636108398, 4287.70458984375),
}
REFERENCE_SCORES: dict[str, tuple[float, float]] = {
    **{f"antmaze-{m}-v2": (0.0, 1.0) for m in _ANTMAZE_D4RL},  # paper Tab. 11
    **{f"{h}-{q}-v1": _ADROIT_REF[h] for h in _ADROIT for q in _ADROIT_DATA},  # Tab. 11
    **{f"D4RL/{h}/{q}-v2": MINARI_REF_SCORES[h] for h in _ADROIT for q in _ADROIT_DATA},  # Tab. 12
    **{
        f"mujoco/{b}/{q}-v0": MINARI_REF_SCORES[b]
        for b in _MUJOCO
        for q in ("simple", "medium", "expert")
    },
    **{  # the classic D4RL Gym-MuJoCo names, same reference
        f"{b}-{q}-v2": _MUJOCO_REF[b]
        for b in _MUJOCO
        for q in ("random", "medium", "expert", "medium-replay", "medium-expert", "full-replay")
    },
}

# ---------------------------------------------------------------------------------------------
# The record.
# ---------------------------------------------------------------------------------------------
_VERSION = re.compile(r"-v\d+$")
_SINGLETASK = re.compile(r"-singletask(?:-task\d+)?$")


def task_env(task: str) -> str:
    """The environment key of a task name: drop a trailing `-v<digits>`, then a trailing
    `-singletask[-task<digits>]` (the presets table's matching rule; see gfp/presets.py)."""
    return _SINGLETASK.sub("", _VERSION.sub("", task.strip()))


@dataclasses.dataclass(frozen=True)
class Task:
    """What a task name or dataset path means; made by `parse_task`, never by hand."""

    name: str  # as given
    source: Source  # how the data is loaded (one loader per source, gfp.data.load.LOADERS)
    env_id: str | None  # the environment evaluation builds; None: unknown until the data is read
    dataset: str  # OGBench file stem 'cube-double-play-v0', D4RL name, Minari id, or the path
    task_number: int | None  # OGBench taskN; None: the env's default task, or not OGBench
    obs_kind: Literal["state", "pixels"]
    env_key: str  # the presets table's environment selector, e.g. 'cube-double-noisy'
    benchmark: Benchmark  # the benchmark family (the paper's table it belongs to)
    paper_steps: int  # gradient steps of the paper's protocol for this benchmark
    scoring: Scoring  # success rate (OGBench), normalized return (with a reference), or return
    reference: tuple[float, float] | None = None  # D4RL (ref_min, ref_max) episode returns

    @property
    def in_paper(self) -> bool:
        """One of the paper's 144 tasks (by its canonical name; data files are not)."""
        return self.name.strip() in _PAPER_TASK_SET


def _record(
    name: str,
    source: Source,
    env_id: str | None,
    dataset: str,
    env_key: str,
    benchmark: Benchmark,
    *,
    task_number: int | None = None,
    pixels: bool = False,
    score_as: str | None = None,
) -> Task:
    if benchmark in ("ogbench", "ogbench-pixel"):
        scoring, reference = "success", None
    else:
        reference = REFERENCE_SCORES.get(score_as) if score_as else None
        scoring = "normalized_return" if reference else "return"
    return Task(
        name=name,
        source=source,
        env_id=env_id,
        dataset=dataset,
        task_number=task_number,
        obs_kind="pixels" if pixels else "state",
        env_key=env_key,
        benchmark=benchmark,
        paper_steps=PAPER_STEPS[benchmark],
        scoring=scoring,  # type: ignore[arg-type]
        reference=reference,
    )


# ---------------------------------------------------------------------------------------------
# Parsing.
# ---------------------------------------------------------------------------------------------
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
_OGBENCH_TASK = re.compile(r"(?P<stem>.+?)-singletask(?:-task(?P<number>\d+))?-v(?P<version>\d+)")
_EXAMPLE = "cube-double-play-singletask-task3-v0"


def parse_task(name_or_path: str | os.PathLike[str]) -> Task:
    """The `Task` a name or path stands for (rules in the module docstring).

    Raises ConfigError (one line) for names that are no task: empty or odd characters, an
    OGBench-looking name that is not an OGBench singletask task (naming the closest valid ones),
    a goal-conditioned OGBench dataset name or a bare environment. Raises DataError for a path
    that does not exist, a directory that holds no Minari dataset, or a file of another type.
    """
    name = os.fspath(name_or_path)
    text = name.strip()
    if not text:
        raise ConfigError(
            "the task is empty: give an OGBench task (e.g. "
            f"{_EXAMPLE}), a D4RL name, a Minari id or a dataset file"
        )
    if text.startswith(LEROBOT_PREFIX):
        return _lerobot_task(name, text.removeprefix(LEROBOT_PREFIX).strip())
    path = Path(text).expanduser()
    if path.suffix in FILE_SUFFIXES or path.is_file():
        return _file_task(name, path)
    if path.is_dir():
        return _directory_task(name, path)
    if text.startswith(("/", "./", "../", "~")):
        raise DataError(f"task {text}: no such file or directory")
    if not _NAME.fullmatch(text):
        raise ConfigError(
            f"task {text!r} is not a task name, a file or a directory (names use letters, "
            "digits and . _ - /)"
        )
    if "/" in text:  # a Minari dataset id
        return _record(name, "minari", None, text, task_env(text), "minari", score_as=text)
    if _D4RL_NAME.fullmatch(text):
        return _record(name, "d4rl", text, text, task_env(text), "d4rl", score_as=text)
    if text.removeprefix("visual-").split("-")[0] in _OGBENCH_FAMILIES or "-singletask" in text:
        return _ogbench_task(name, text)
    # Anything else: a D4RL-style file of that name, evaluated in the Gymnasium env of that name.
    return _record(name, "d4rl", text, text, task_env(text), "other")


def _ogbench_task(name: str, text: str) -> Task:
    m = _OGBENCH_TASK.fullmatch(text)
    if m is None:
        _reject_ogbench(text)
    stem, number, version = m["stem"], m["number"], m["version"]
    suffix = text[len(stem) :]
    if stem not in _OGBENCH_DATASET_SET:
        _unknown_ogbench(text, stem, suffix, with_d4rl=False)
    if number is not None and int(number) not in OGBENCH_TASK_NUMBERS:
        raise ConfigError(
            f"'{text}' is not an OGBench singletask task: task{number} does not exist (every "
            f"OGBench environment has task1..task5), e.g. {stem}-singletask-task1-v0"
        )
    if version != "0":
        raise ConfigError(
            f"'{text}' is not an OGBench singletask task: OGBench tasks are version v0 "
            f"(did you mean {stem}-singletask{f'-task{number}' if number else ''}-v0?)"
        )
    env = stem.rsplit("-", 1)[0]
    pixels = stem.startswith("visual-")
    return _record(
        name,
        "ogbench",
        f"{env}-singletask{f'-task{number}' if number else ''}-v0",  # the registered env id
        f"{stem}-v0",
        stem,
        "ogbench-pixel" if pixels else "ogbench",
        task_number=int(number) if number else None,
        pixels=pixels,
    )


def _reject_ogbench(text: str) -> NoReturn:
    """Raise the error for an OGBench-looking name that is not a well-formed singletask task."""
    if "-singletask" in text:
        stem = text.split("-singletask")[0]
        if stem not in _OGBENCH_DATASET_SET:
            _unknown_ogbench(text, stem, "-singletask-task1-v0", with_d4rl=False)
        raise ConfigError(
            f"'{text}' is not an OGBench singletask task: expected {stem}-singletask-taskN-v0 "
            "with N in 1..5 (or -singletask-v0 for the default task)"
        )
    base = _VERSION.sub("", text)
    if base in _OGBENCH_DATASET_SET:
        if base != text:
            raise ConfigError(
                f"'{text}' is a goal-conditioned OGBench dataset; GFP trains on reward-based "
                f"singletask tasks such as '{base}-singletask-task1-v0' (task1..task5)."
            )
        raise ConfigError(
            f"'{text}' is an OGBench environment, not a task: name one of its tasks, "
            f"{base}-singletask-task1-v0 .. task5-v0 (or expand it in a task list)"
        )
    if base in OGBENCH_DATASET_TYPES:
        options = " or ".join(
            f"{base}-{k}-singletask-task1-v0" for k in OGBENCH_DATASET_TYPES[base]
        )
        raise ConfigError(
            f"'{text}' names an OGBench environment but no dataset type; did you mean {options}?"
        )
    _unknown_ogbench(text, base, "-singletask-task1-v0", with_d4rl=True)


def _unknown_ogbench(text: str, stem: str, suffix: str, *, with_d4rl: bool) -> NoReturn:
    """Raise the 'not an OGBench task' error, naming the closest valid names."""
    pool = {s: s + suffix for s in OGBENCH_DATASETS}
    if with_d4rl:  # D4RL antmaze names share OGBench's 'antmaze-' prefix
        pool |= {task_env(t): t for t in D4RL_TASKS}
    close = [pool[c] for c in difflib.get_close_matches(stem, list(pool), n=3, cutoff=0.6)]
    hint = (
        f"did you mean {' or '.join(close)}?"
        if close
        else f"OGBench tasks are ENV-TYPE-singletask-taskN-v0, e.g. {_EXAMPLE} (the datasets are "
        "listed in gfp.tasks.OGBENCH_DATASETS)"
    )
    what = (
        "an OGBench singletask task or a D4RL task" if with_d4rl else "an OGBench singletask task"
    )
    raise ConfigError(
        f"'{text}' is not {what}: '{stem}' is not an OGBench environment and dataset type; {hint}"
    )


def dataset_file_stem(name: str) -> str:
    """The stem of an OGBench dataset's files for a task name (OGBench's own rule):
    'cube-double-play-singletask-task3-v0' -> 'cube-double-play-v0' (checked: a typo raises
    ConfigError), 'cube-single-play-oraclerep-v0' -> 'cube-single-play-v0'; any other name (a
    dataset name already) maps to itself."""
    if "-singletask" in name:
        return parse_task(name).dataset
    return re.sub(r"-oraclerep(-v\d+)$", r"\1", name)


def d4rl_name_of_file(path: Path) -> str | None:
    """The D4RL task a file belongs to when its name says so (NAME.hdf5, NAME-val.npz, or D4RL's
    own antmaze cache name), else None."""
    stem = path.name
    for suffix in FILE_SUFFIXES:
        stem = stem.removesuffix(suffix)
    stem = stem.removesuffix("-val")
    if _D4RL_NAME.fullmatch(stem):
        return stem
    return _D4RL_BY_FILE_NAME.get(path.name)


def _file_task(name: str, path: Path) -> Task:
    if path.suffix not in FILE_SUFFIXES:
        kind = f"'{path.suffix}'" if path.suffix else "(no suffix)"
        raise DataError(f"{path}: unsupported file type {kind} (expected .npz, .hdf5 or .h5)")
    source: Source = "npz" if path.suffix == ".npz" else "hdf5"
    d4rl = d4rl_name_of_file(path)
    if d4rl is None:
        return _record(name, source, None, name.strip(), task_env(name), "other")
    return _record(name, source, d4rl, name.strip(), task_env(d4rl), "d4rl", score_as=d4rl)


_MINARI_ENV = "minari:"


def minari_env(dataset_id: str, data_path: str | os.PathLike[str]) -> str:
    """The evaluation environment of a local Minari dataset as a name that travels (to the
    evaluation worker processes, config.json): 'minari:ID@DATA_PATH'. `gfp.evaluate.make_env`
    rebuilds it with Minari's own `recover_environment(eval_env=True)` from the dataset at
    DATA_PATH (its stored evaluation spec: id, kwargs and episode limit), as the reference
    code's eval_env_creator does."""
    return f"{_MINARI_ENV}{dataset_id}@{os.fspath(data_path)}"


def parse_minari_env(name: str) -> tuple[str, Path] | None:
    """(dataset id, data path) of a `minari_env` name; None for any other name."""
    if not name.startswith(_MINARI_ENV):
        return None
    dataset_id, at, path = name.removeprefix(_MINARI_ENV).partition("@")
    return (dataset_id, Path(path)) if at and path else None


def minari_data_dir(directory: Path) -> Path | None:
    """The Minari 'data' folder of a dataset directory (or the folder itself), if it is one."""
    for candidate in (directory / "data", directory):
        if (candidate / "metadata.json").is_file():
            return candidate
    return None


LEROBOT_PREFIX = "lerobot:"


def _lerobot_task(name: str, folder: str) -> Task:
    if not folder:
        raise ConfigError(
            "task 'lerobot:' names no folder: give lerobot:PATH, a LeRobot dataset folder "
            "(holding meta/info.json)"
        )
    key = task_env(Path(folder).name or folder)
    return _record(name, "lerobot", None, folder, key, "other")


def is_lerobot_dir(path: Path) -> bool:
    """A LeRobot dataset folder: it holds meta/info.json."""
    return (path / "meta" / "info.json").is_file()


def lerobot_path(task: Task, dataset_dir: str | os.PathLike[str] | None) -> Path:
    """The folder of a `lerobot` task: its PATH, under `dataset_dir` when one is given (unless
    PATH is absolute)."""
    path = Path(task.dataset).expanduser()
    if dataset_dir is not None and not path.is_absolute():
        return Path(dataset_dir).expanduser() / path
    return path


def _directory_task(name: str, path: Path) -> Task:
    if is_lerobot_dir(path):  # found from here: not under a --dataset-dir
        return _lerobot_task(name, str(path.resolve()))
    if minari_data_dir(path) is None:
        raise DataError(_not_a_dataset_dir(name.strip(), path))
    # Under Minari's own layout (ROOT/D4RL/pen/human-v2) the last parts are the dataset id.
    ids = ["/".join(path.resolve().parts[-k:]) for k in (3, 2)]
    known = next((i for i in ids if task_env(i) in MINARI_ENVS or i in REFERENCE_SCORES), None)
    key = task_env(known) if known else task_env(name)
    return _record(name, "minari", None, name.strip(), key, "minari", score_as=known)


def _not_a_dataset_dir(text: str, path: Path) -> str:
    """What to do with a directory given as the task: say what it holds and the right flags."""
    files = sorted(itertools.islice((p for p in path.iterdir() if p.is_file()), 10_000))
    stems = sorted(
        {p.name.removesuffix(".npz").removesuffix("-val") for p in files if p.suffix == ".npz"}
    )
    ogbench = [s for s in stems if _VERSION.sub("", s) in _OGBENCH_DATASET_SET]
    data = [p for p in files if p.suffix in FILE_SUFFIXES]
    minari = sorted(
        str(m.parent.parent.relative_to(path))
        for depth in ("*", "*/*", "*/*/*")
        for m in itertools.islice(path.glob(f"{depth}/data/metadata.json"), 100)
    )
    if ogbench:
        task = f"{_VERSION.sub('', ogbench[0])}-singletask-task1-v0"
        hint = f"it holds OGBench data: use --task {task} --dataset-dir {text}"
    elif minari:
        hint = f"it holds Minari datasets: use --task {minari[0]} --dataset-dir {text}"
    elif data:
        hint = f"pass one of its files as the task, e.g. --task {data[0]}"
    else:
        hint = "it holds no .npz, .hdf5 or .h5 file and no Minari dataset"
    return f"task {text}: is a directory, not a dataset (no Minari data/metadata.json); {hint}"


# ---------------------------------------------------------------------------------------------
# Task lists.
# ---------------------------------------------------------------------------------------------
_PAPER_TASK_OF_ENV = {task_env(t): t for t in (*D4RL_TASKS, *MINARI_TASKS)}


def expand_tasks(spec: str) -> list[str]:
    """Expand a comma list of tasks, environments and suites into task names (in order, without
    repeats).

    An entry is a suite name (`SUITES`), an OGBench environment (`cube-double-noisy` -> its five
    tasks task1..task5, pixel envs too), a D4RL or Minari environment key of the paper
    (`pen-human` -> `pen-human-v1`), or anything `parse_task` accepts except an unknown plain
    name. Unknown entries raise ConfigError naming the closest valid ones.
    """
    entries = [e.strip() for e in spec.split(",")]
    if not any(entries):
        raise ConfigError(f"the task list {spec!r} is empty")
    out: list[str] = []
    for entry in filter(None, entries):
        if entry in SUITES:
            out.extend(SUITES[entry])
        elif entry in _OGBENCH_DATASET_SET:
            out.extend(_ogbench_tasks((entry,)))
        elif entry in _PAPER_TASK_OF_ENV:
            out.append(_PAPER_TASK_OF_ENV[entry])
        else:
            task = parse_task(entry)
            if task.source == "d4rl" and task.benchmark == "other":
                _unknown_entry(entry, spec)
            out.append(entry)
    return list(dict.fromkeys(out))


def _unknown_entry(entry: str, spec: str) -> NoReturn:
    vocabulary = [*SUITES, *OGBENCH_DATASETS, *_PAPER_TASK_OF_ENV, *PAPER_TASKS]
    close = difflib.get_close_matches(entry, vocabulary, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}?" if close else f"suites: {', '.join(SUITES)}"
    raise ConfigError(
        f"task list {spec!r}: {entry!r} is not a suite, an environment or a known task; {hint}"
    )
