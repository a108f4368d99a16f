"""Offline generation of OGBench datasets with the scripted oracles that ship in the ogbench wheel.

OGBench's official datasets live on a web server that is not always reachable. The manipulation
datasets (cube, scene, puzzle) come from scripted oracles and the pointmaze datasets from a BFS
waypoint "expert", and both ship inside the pip package, so they can be regenerated offline.
This module does that with the official protocol and writes the exact official `.npz` layout, so
`ogbench.make_env_and_datasets(task, dataset_dir=DIR)` reads the result without the network.

Generation is sharded per episode: every episode has its own seed derived from (seed, split,
index), is written atomically as its own small shard file, and the shards are merged in episode
order at the end. The output is therefore byte-identical whatever the number of worker
processes, and a killed or interrupted (Ctrl-C) run resumes from the shards it already finished.
An existing dataset is never replaced unless asked (`overwrite`), and a dataset too large for the
machine's memory is refused before any work. The oracles themselves are in gfp.datagen.collectors.

With `shard_size` the merge writes OGBench's sharded layout instead (the folder of its 100M
datasets, gfp.data.sharded): shards of whole episodes, each written atomically into a staging
folder beside the episode store (a rerun keeps the shards already written), and the folder
renamed into place once complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import warnings
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from gfp.data import sharded
from gfp.datagen import shards
from gfp.datagen.collectors import Spec
from gfp.datagen.shards import Job
from gfp.datagen.visual import make_collector, visual_names
from gfp.errors import ConfigError, DataError, Interrupted, WriteError
from gfp.io import atomic_savez, clean_stale_tmp, die_with_parent, os_reason
from gfp.tasks import dataset_file_stem  # the task registry parses task names

__all__ = [
    "GENERATABLE",
    "NEEDS_EXPERT_PREFIXES",
    "OFFICIAL_SIZES",
    "default_dataset_dir",
    "generate",
]

# Bump when the protocol or the shard content changes, so stale shards of an older version are never
# merged into a new dataset.
_SHARD_FORMAT = 1

_CUBE_COUNTS = ("single", "double", "triple", "quadruple")
_PUZZLE_SIZES = ("3x3", "4x4", "4x5", "4x6")
_MAZE_SIZES = ("medium", "large", "giant", "teleport")

GENERATABLE: tuple[str, ...] = (
    *(f"cube-{n}-{k}-v0" for n in _CUBE_COUNTS for k in ("play", "noisy")),
    *(f"scene-{k}-v0" for k in ("play", "noisy")),
    *(f"puzzle-{s}-{k}-v0" for s in _PUZZLE_SIZES for k in ("play", "noisy")),
    *(f"pointmaze-{m}-{k}-v0" for m in _MAZE_SIZES for k in ("navigate", "stitch")),
)
# The pixel twins of the manipulation datasets ('visual-cube-single-play-v0'): the same oracles,
# each row rendered as OGBench's visual env renders it (gfp.datagen.visual).
GENERATABLE += visual_names(GENERATABLE)

# Datasets whose official actions come from SAC experts that OGBench downloads separately.
NEEDS_EXPERT_PREFIXES: tuple[str, ...] = ("antmaze-", "humanoidmaze-", "antsoccer-")


def _official_size(name: str) -> tuple[int, int]:
    """(train episodes, episode length) of the official dataset, from OGBench's commands.sh."""
    if name.startswith("pointmaze-"):
        if name.endswith("-stitch-v0"):
            return 5000, 201
        if name.startswith("pointmaze-giant-"):
            return 500, 2001
        return 1000, 1001
    if "-triple-" in name or "-4x5-" in name:
        return 3000, 1001
    if "-quadruple-" in name or "-4x6-" in name:
        return 5000, 1001
    return 1000, 1001


# Official (train episodes, episode length) per dataset; val is a tenth of train. Note that
# pointmaze stitch (201) and giant-navigate (2001) differ from the usual 1001 rows.
OFFICIAL_SIZES: dict[str, tuple[int, int]] = {n: _official_size(n) for n in GENERATABLE}


def default_dataset_dir() -> Path:
    """The directory OGBench's own loader reads by default (~/.ogbench/data)."""
    from ogbench.utils import DEFAULT_DATASET_DIR

    return Path(os.path.expanduser(DEFAULT_DATASET_DIR))


# --------------------------------------------------------------------------------------------------
# Dataset specs.


def _spec(name: str) -> Spec:
    if name in GENERATABLE:
        parts = name.split("-")
        family, kind = parts[1 if parts[0] == "visual" else 0], parts[-2]
        env_id = "-".join(parts[:-2] + parts[-1:])
        return Spec(name=name, env_id=env_id, family=family, kind=kind)
    if name.startswith(NEEDS_EXPERT_PREFIXES):
        raise DataError(
            f"{name!r} cannot be generated offline: it needs OGBench's downloaded expert "
            "checkpoints (SAC policies experts/ant, experts/humanoid, experts/antball), which are "
            "not in the ogbench package. Download the official dataset instead "
            f"(ogbench.download_datasets) or copy {name}.npz and {name}-val.npz into the dataset "
            "directory."
        )
    if name.startswith("visual-"):
        hint = " (pixel datasets exist for the cube, scene and puzzle environments only)"
    else:
        hint = ""
    raise DataError(
        f"unknown dataset {name!r}{hint}; valid choices: {', '.join(GENERATABLE)} "
        "(a '-singletask[-taskN]' task name is also accepted and mapped to its dataset)"
    )


# --------------------------------------------------------------------------------------------------
# Episodes, each seeded on its own (the oracles draw from the global np.random).

_SPLITS = {"train": 0, "val": 1}


def _episode_seeds(seed: int, split: str, index: int) -> tuple[np.ndarray, int]:
    """(global np.random seed words, env seed) for one episode, independent of scheduling."""
    words = np.random.SeedSequence(seed, spawn_key=(_SPLITS[split], index)).generate_state(6)
    env_seed = (int(words[4]) << 32) | int(words[5])
    return words[:4], env_seed


def _collect(
    collector: Any, seed: int, split: str, index: int, length: int
) -> dict[str, np.ndarray]:
    global_words, env_seed = _episode_seeds(seed, split, index)
    np.random.seed(global_words)
    return collector.episode(env_seed, length)


# --------------------------------------------------------------------------------------------------
# Shards: one atomically written file per finished episode.


def _run_and_save(collector: Any, job: Job, seed: int, length: int, shard_dir: Path) -> int:
    split, index = job
    rows = _collect(collector, seed, split, index, length)
    atomic_savez(shards.shard_path(shard_dir, split, index), rows)
    return length


# Worker-process state, set once per process by _worker_init.
_WORKER: dict[str, Any] = {}


def _worker_init(name: str, seed: int, length: int, shard_dir: str, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    # Ctrl-C reaches the whole process group; the parent handles it (and stops the workers).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked while we were spawned
    warnings.simplefilter("ignore")
    _WORKER.update(seed=seed, length=length, shard_dir=Path(shard_dir))
    _WORKER["collector"] = make_collector(_spec(name))


def _worker_run(job: Job) -> tuple[str, int, int]:
    w = _WORKER
    rows = _run_and_save(w["collector"], job, w["seed"], w["length"], w["shard_dir"])
    return job[0], job[1], rows


@contextlib.contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Spawned workers inherit these: one BLAS/OpenMP thread each, since we run one per core."""
    keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in keys}
    for k in keys:
        os.environ.setdefault(k, "1")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Block SIGINT in this thread while workers are spawned: they inherit the mask, so a Ctrl-C
    during their start-up can't kill them with a traceback before they ignore SIGINT themselves;
    here a Ctrl-C is only held back until the block ends."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def _preserved_global_rng() -> Iterator[None]:
    """In-process generation reseeds np.random per episode; give the caller its state back."""
    state = np.random.get_state()
    try:
        yield
    finally:
        np.random.set_state(state)


# --------------------------------------------------------------------------------------------------
# Checks before any work: the dataset must fit in memory, and an existing one is never replaced
# unless asked.

# The smallest row of any generatable dataset (pointmaze: 2 float32 each of observation, action,
# qpos and qvel, plus the terminal flag), for a check that needs no simulator.
_MIN_ROW_BYTES = 4 * (2 + 2 + 2 + 2) + 1


def _meminfo_bytes(field: str) -> int | None:
    """A /proc/meminfo field in bytes (Linux), or None where there is none."""
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return None


def _check_fits(name: str, episodes: int, rows: int, row_bytes: int, memory: int | None) -> None:
    """The merge (and every loader after it) holds the whole dataset in memory: refuse one that
    cannot fit, before generating what could never be written."""
    need = rows * row_bytes
    if memory is None or need <= memory:
        return
    official = OFFICIAL_SIZES[name][0]
    raise ConfigError(
        f"--episodes {episodes}: {name} would hold {rows:,} rows, {need / 2**30:,.1f} GiB"
        f"{' or more' if row_bytes == _MIN_ROW_BYTES else ''} in "
        f"memory (the merge and the loaders hold the whole dataset), more than the "
        f"{memory / 2**30:.1f} GiB this machine has; the official size is {official} episodes"
    )


def _describe(path: Path) -> str:
    """'12 episodes, 12012 rows' of a dataset file, for the refusal to replace it."""
    if path.is_dir():
        return f"a sharded dataset of {len(list(path.glob('*.npz')))} .npz files"
    try:
        with np.load(path) as f:
            terminals = f["terminals"]
        return f"{int(terminals.sum())} episodes, {len(terminals)} rows"
    except Exception as exc:  # noqa: BLE001 - any unreadable file is still not ours to replace
        return f"not readable as a dataset: {exc}"


def _refuse_existing(train_path: Path) -> None:
    """An existing NAME.npz is data: never replaced without overwrite. (A NAME-val.npz without it
    is what a run killed between the two final writes leaves, val first, and is replaced.)"""
    if train_path.exists():
        raise DataError(
            f"{train_path} already exists ({_describe(train_path)}); rerun with --overwrite "
            "(overwrite=True) to replace it and its -val file, or choose another --out"
        )


def _check_out_dir(out_dir: Path) -> None:
    """`out_dir` is a directory or can become one: ConfigError, before any work, where it or a
    folder above it is a file (which is left as it is)."""
    for path in (out_dir, *out_dir.parents):
        if path.exists():
            if not path.is_dir():
                what = "is" if path == out_dir else f"is inside {path}, which is"
                raise ConfigError(
                    f"--out {out_dir} {what} a file, not a directory (the dataset is written to "
                    "OUT/NAME.npz and OUT/NAME-val.npz); choose a directory"
                )
            return


# --------------------------------------------------------------------------------------------------
# Public entry point.


def generate(
    name: str,
    episodes: int,
    out_dir: str | Path,
    workers: int | None = None,
    seed: int = 0,
    episode_length: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
    shard_size: int | None = None,
) -> tuple[Path, Path]:
    """Generate OGBench dataset NAME offline into `out_dir/NAME.npz` and `out_dir/NAME-val.npz`,
    or, with `shard_size`, into a folder of shards in the layout of OGBench's 100M/1B datasets.

    Args:
        name: an OGBench dataset name from GENERATABLE (e.g. 'cube-single-noisy-v0'); a
            '-singletask[-taskN]' task name is mapped to its dataset with `dataset_file_stem`.
        episodes: number of train episodes; the val file gets max(1, episodes // 10).
        out_dir: output directory (created if missing); OGBench reads `default_dataset_dir()`.
        workers: worker processes (default: os.cpu_count()); the output does not depend on it.
        seed: base seed; every episode's seed is derived from (seed, split, episode index).
        episode_length: rows per episode; None = the official value for NAME (OFFICIAL_SIZES:
            1001 for most, 201 for pointmaze stitch, 2001 for pointmaze giant-navigate). The
            loader turns each episode into episode_length - 1 transitions.
        progress: show a tqdm bar (transitions, rate, ETA, episodes done).
        overwrite: replace an existing `out_dir/NAME.npz`; without it an existing dataset is
            refused before any work.
        shard_size: rows per shard: write `out_dir/BASE-SIZE-v0/NAME-000.npz`, `NAME-001.npz`,
            ... (gfp.data.sharded's layout, OGBench's), each holding whole episodes, at most
            `shard_size` rows (shard_size // episode_length episodes), and the val split as
            `NAME-000-val.npz`. Each shard is written atomically and a rerun reuses the shards
            already written; the folder appears under its name only once it is complete. Its
            rows are those of the single-file dataset of the same seed, in the same order.

    Returns:
        (train path, val path); with `shard_size`: (the folder, its val file).

    Raises:
        DataError: an unknown name, one that needs OGBench's downloaded expert policies, or an
            existing dataset without `overwrite`.
        ConfigError: a non-positive episode count, episode length or worker count, a negative
            seed, an `out_dir` that is a file, or a dataset too large for this machine's memory
            (checked up front, and again exactly once the first episode is collected).
        Interrupted: Ctrl-C (exit code 130 in the CLI). Finished episodes are kept as shards,
            and rerunning the same call continues from them; so does a rerun after a kill.
    """
    name = dataset_file_stem(name)
    spec = _spec(name)
    if episode_length is None:
        episode_length = OFFICIAL_SIZES[name][1]
    if episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {episodes}")
    if episode_length < 2:
        raise ConfigError(f"episode_length must be >= 2 (one row per step), got {episode_length}")
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if shard_size is not None and shard_size < episode_length:
        raise ConfigError(
            f"shard_size (--shard-size) must hold at least one whole episode ({episode_length} "
            f"rows), got {shard_size}"
        )
    n_val = max(1, episodes // 10)
    per_shard = shard_size // episode_length if shard_size is not None else None
    # Only what is merged at once must fit: the whole dataset, or one shard (or the val split).
    held = episodes + n_val if per_shard is None else max(min(per_shard, episodes), n_val)
    rows = held * episode_length
    total_memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    _check_fits(name, episodes, rows, _MIN_ROW_BYTES, total_memory)

    out_dir = Path(out_dir).expanduser()
    _check_out_dir(out_dir)
    if per_shard is None:
        train_path, val_path = out_dir / f"{name}.npz", out_dir / f"{name}-val.npz"
    else:
        train_path = out_dir / sharded.folder_name(name, episodes * episode_length)
        val_path = train_path / sharded.val_name(name)
    if not overwrite:
        _refuse_existing(train_path)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(f"could not create the directory {out_dir}: {os_reason(e)}") from e

    # Shards are keyed by everything that changes an episode's content (the simulator and oracle
    # versions too), not by the episode count, so a rerun with more episodes reuses them.
    shard_root = out_dir / f".{name}.shards"
    versions = f"og{metadata.version('ogbench')}-mj{metadata.version('mujoco')}-f{_SHARD_FORMAT}"
    shard_dir = shard_root / f"seed{seed}-len{episode_length}-{versions}"
    shard_dir.mkdir(parents=True, exist_ok=True)

    with shards.lock(shard_root / "lock", name, out_dir):
        if not overwrite:  # again under the lock: a concurrent run may have finished meanwhile
            _refuse_existing(train_path)
        clean_stale_tmp(shard_dir, (".",))
        clean_stale_tmp(out_dir, (f".{train_path.name}.", f".{val_path.name}."))
        finished = shards.finished(shard_dir, episodes, n_val)

        def check_memory(shard: Path) -> None:  # exact, from the first episode's row layout
            _check_fits(
                name, episodes, rows, shards.row_bytes(shard), _meminfo_bytes("MemAvailable")
            )

        if finished:
            check_memory(shards.shard_path(shard_dir, *min(finished)))
        try:
            _run_jobs(
                spec,
                shards.pending(episodes, n_val, finished),
                (len(finished), episodes + n_val),
                (seed, episode_length, shard_dir),
                workers,
                progress,
                None if finished else check_memory,
            )
            if per_shard is not None:
                _write_sharded(shard_dir, name, (episodes, n_val, episode_length), per_shard)
                _replace_folder(shard_dir / f"sharded-{per_shard}", train_path)
            else:
                train = shards.merge(shard_dir, "train", episodes, episode_length, name)
                val = shards.merge(shard_dir, "val", n_val, episode_length, name)
                # Val first: OGBench's loader only checks that NAME.npz exists before reading
                # both files, so NAME.npz must never appear without its val file.
                atomic_savez(val_path, val)
                atomic_savez(train_path, train)
        except KeyboardInterrupt:
            kept = len(shards.finished(shard_dir, episodes, n_val))
            raise Interrupted(
                f"{name}: interrupted; {kept} of {episodes + n_val} episodes are finished and "
                f"kept in {shard_dir}; rerun the same command to continue from them",
                signal.SIGINT,
            ) from None

        shutil.rmtree(shard_dir, ignore_errors=True)
    if {p.name for p in shard_root.iterdir()} <= {"lock"}:
        shutil.rmtree(shard_root, ignore_errors=True)
    return train_path, val_path


def _write_sharded(shard_dir: Path, name: str, sizes: tuple[int, int, int], per_shard: int) -> None:
    """The sharded output, written shard by shard (atomically) into `shard_dir/sharded-K/`
    (K episodes per shard). A shard already there with the expected row count is what a killed
    run with these very settings wrote, so it is kept: the episodes are deterministic."""
    episodes, n_val, length = sizes
    staging = shard_dir / f"sharded-{per_shard}"
    staging.mkdir(exist_ok=True)
    clean_stale_tmp(staging, (".",))
    count = -(-episodes // per_shard)
    keep = {sharded.val_name(name), *(sharded.shard_name(name, i) for i in range(count))}
    for stale in staging.glob("*.npz"):  # shards past the end, from a run with more episodes
        if stale.name not in keep:
            stale.unlink()
    jobs = [(staging / sharded.val_name(name), "val", 0, n_val)]
    for i in range(count):
        start = i * per_shard
        jobs.append(
            (
                staging / sharded.shard_name(name, i),
                "train",
                start,
                min(per_shard, episodes - start),
            )
        )
    for path, split, start, n in jobs:
        if not _holds_rows(path, n * length):
            atomic_savez(path, shards.merge(shard_dir, split, n, length, name, start=start))


def _holds_rows(path: Path, rows: int) -> bool:
    """Whether the shard at `path` exists, is readable and has `rows` rows (headers only)."""
    if not path.is_file():
        return False
    try:
        header = sharded.read_header(path)
        sharded.check_header(header)
    except DataError:
        return False
    return header.rows == rows


def _replace_folder(staging: Path, folder: Path) -> None:
    """Put the finished `staging` folder at `folder` by renames (the same file system), so the
    folder is never seen half written; an existing one (overwrite) is moved aside first."""
    old = folder.with_name(f".{folder.name}.old")
    if old.exists():
        shutil.rmtree(old)
    try:
        if folder.exists():
            folder.rename(old)
        staging.rename(folder)
    except OSError as e:
        raise WriteError(f"could not move the shards into {folder}: {os_reason(e)}") from e
    shutil.rmtree(old, ignore_errors=True)


def _run_jobs(
    spec: Spec,
    pending: Iterator[Job],
    progress_counts: tuple[int, int],
    job_args: tuple[int, int, Path],
    workers: int,
    progress: bool,
    on_first_shard: Callable[[Path], None] | None,
) -> None:
    """Collect the `pending` episodes into shards, in this process (workers = 1) or in a pool.

    `progress_counts`: (episodes already finished, episodes in all); `job_args`: (seed, episode
    length, shard dir); `on_first_shard` sees the first shard written, before any other work.
    """
    from tqdm import tqdm

    done, total = progress_counts
    seed, length, shard_dir = job_args
    bar = tqdm(
        total=total * length,
        initial=done * length,
        unit="tr",
        unit_scale=True,
        desc=spec.name,
        disable=not progress,
        dynamic_ncols=True,
    )

    def advance(job: Job) -> None:
        nonlocal done, on_first_shard
        if on_first_shard is not None:
            on_first_shard(shards.shard_path(shard_dir, *job))
            on_first_shard = None
        done += 1
        bar.update(length)
        bar.set_postfix_str(f"episodes {done}/{total}", refresh=False)

    with bar:
        try:
            workers = min(workers, total - done)
            if workers > 1:
                _run_pool(spec, pending, job_args, workers, advance)
            elif done < total:
                with _preserved_global_rng(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    collector = make_collector(spec)
                    for job in pending:
                        _run_and_save(collector, job, seed, length, shard_dir)
                        advance(job)
        except BaseException:
            bar.leave = False  # an error or Ctrl-C prints one line, no half-filled bar above it
            raise


def _run_pool(
    spec: Spec,
    pending: Iterator[Job],
    job_args: tuple[int, int, Path],
    workers: int,
    advance: Callable[[Job], None],
) -> None:
    """The episodes in `workers` spawned processes, at most two per worker queued at a time."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    seed, length, shard_dir = job_args
    # 'spawn', not fork: the caller may hold JAX or other threads that fork would deadlock.
    ctx = multiprocessing.get_context("spawn")
    ours = set(multiprocessing.active_children())
    in_flight: set[Future] = set()

    def fill() -> None:  # workers pull one episode at a time: balances uneven episode costs
        while len(in_flight) < 2 * workers and (job := next(pending, None)) is not None:
            in_flight.add(executor.submit(_worker_run, job))

    # Workers are spawned lazily by submit(), so the thread settings must cover the whole block.
    with (
        _single_threaded_children(),
        ProcessPoolExecutor(
            workers,
            mp_context=ctx,
            initializer=_worker_init,
            initargs=(spec.name, seed, length, str(shard_dir), os.getpid()),
        ) as executor,
    ):
        try:
            with _sigint_blocked():  # the first fill spawns every worker
                fill()
            while in_flight:
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    in_flight.discard(future)
                    split, index, _ = future.result()
                    advance((split, index))
                fill()
        except BrokenProcessPool as exc:
            raise DataError(
                f"{spec.name}: a worker process died ({exc}). If generate() is called from a "
                "script, guard the call with `if __name__ == '__main__':` (workers are spawned "
                "and re-import the main module); otherwise rerun with workers=1 to see the "
                "error."
            ) from exc
        except BaseException:
            # Ctrl-C or an error: stop the workers now rather than after their current episode
            # (a shard is written atomically, so a stopped one is simply not there). The pool
            # then fails the queued episodes itself; cancelling them too would race with that.
            # A worker stopped mid-write leaves its temp file (a terminated process runs no
            # cleanup): remove those once every worker is gone; we hold the generation lock.
            stopped = set(multiprocessing.active_children()) - ours
            for proc in stopped:
                proc.terminate()
            for proc in stopped:
                proc.join(timeout=10)
            clean_stale_tmp(shard_dir, (".",))
            raise
