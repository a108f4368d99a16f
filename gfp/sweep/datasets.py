"""The datasets a sweep needs, made ready once, in the driver, before any run starts.

Each distinct dataset (an OGBench file pair is shared by an environment's five tasks) is loaded and
validated here, one at a time, so that no two workers ever generate or convert the same file and a
bad dataset fails the sweep up front instead of failing every run that reads it. A missing OGBench
dataset that gfp can generate offline is generated (the official number of episodes unless told
otherwise); any other missing dataset is a DataError saying how to make it or where to get it.
Datasets checked once are recorded in SWEEP_DIR/.datasets.json with their sizes (what each run's
memory estimate reads, gfp/sweep/resources.py) and not read again by later invocations (a run
that resumes still checks that its data did not change); a record without sizes (an older gfp's)
is checked once more.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable
from pathlib import Path

from gfp.errors import DataError
from gfp.io import atomic_write_json
from gfp.job import TrainJob
from gfp.sweep.plan import read_json
from gfp.sweep.resources import DatasetSize

CHECKED = ".datasets.json"


def dataset_key(job: TrainJob) -> tuple[str, str]:
    """(what is read, from where): the OGBench file stem for OGBench tasks, else the task."""
    from gfp.tasks import parse_task

    task = parse_task(job.task)
    name = task.dataset if task.source == "ogbench" else job.task
    return name, str(job.dataset_dir or "")


def _generatable_missing(task_name: str, dataset_dir: Path | None) -> tuple[str, Path] | None:
    """(stem, directory) when the task's OGBench files are missing and gfp can generate them."""
    from gfp.datagen.generate import GENERATABLE, default_dataset_dir
    from gfp.tasks import dataset_file_stem, parse_task

    if parse_task(task_name).source != "ogbench":
        return None
    stem = dataset_file_stem(task_name)
    out = Path(dataset_dir).expanduser() if dataset_dir is not None else default_dataset_dir()
    if out.suffix == ".npz" or stem not in GENERATABLE:
        return None
    if (out / f"{stem}.npz").is_file() and (out / f"{stem}-val.npz").is_file():
        return None
    return stem, out


def prepare_datasets(
    jobs: Iterable[TrainJob],
    sweep_dir: Path,
    *,
    episodes: int | None = None,
    log: Callable[[str], None] = print,
) -> int:
    """Check (and where needed generate) every dataset `jobs` read; returns how many were checked
    now. `episodes`: size of a generated dataset (None: OGBench's official size)."""
    from gfp.data.load import load_dataset
    from gfp.datagen.generate import OFFICIAL_SIZES, generate

    record_path = sweep_dir / CHECKED
    checked = read_json(record_path) or {}
    todo: dict[tuple[str, str], TrainJob] = {}
    for job in jobs:
        key = dataset_key(job)
        if _size(checked.get("|".join(key))) is None:
            todo.setdefault(key, job)
    for (name, _), job in todo.items():
        missing = _generatable_missing(job.task, job.dataset_dir)
        if missing is not None:
            stem, out = missing
            n = episodes or OFFICIAL_SIZES[stem][0]
            log(f"generating {stem} ({n} episodes) into {out}, once for the sweep")
            generate(stem, n, out)
        log(f"checking the dataset {name}")
        try:
            data = load_dataset(
                job.task,
                job.dataset_dir,
                obs_keys=job.obs_keys,
                reward=job.reward,
                val_episodes=job.val_episodes,
            )
        except DataError as e:
            raise DataError(f"dataset of {job.task}: {e}") from None
        arrays = [*data.train.values(), *(data.val or {}).values()]
        checked["|".join(dataset_key(job))] = {
            "checked": datetime.datetime.now().isoformat(timespec="seconds"),
            "rows": data.size,
            "obs_dim": data.obs_dim,
            "act_dim": data.act_dim,
            "nbytes": sum(int(a.nbytes) for a in arrays),
        }
        del data, arrays
        sweep_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(record_path, checked)
    return len(todo)


def _size(entry: object) -> DatasetSize | None:
    if not isinstance(entry, dict):
        return None
    try:
        return DatasetSize(*(int(entry[k]) for k in ("rows", "obs_dim", "act_dim", "nbytes")))
    except (KeyError, TypeError, ValueError):
        return None


def dataset_size(job: TrainJob, sweep_dir: Path) -> DatasetSize:
    """The recorded size of `job`'s dataset (prepare_datasets has checked it); DataError if the
    record lacks it."""
    entry = (read_json(sweep_dir / CHECKED) or {}).get("|".join(dataset_key(job)))
    size = _size(entry)
    if size is None:
        raise DataError(f"{sweep_dir / CHECKED}: no size recorded for the dataset of {job.task}")
    return size
