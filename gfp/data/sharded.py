"""OGBench's large datasets as a folder of shards, read lazily, shard by shard.

OGBench publishes its 100M- and 1B-transition datasets (e.g. ``cube-quadruple-play-100m-v0``) as
a folder of ordinary OGBench ``.npz`` files: ``STEM-000.npz``, ``STEM-001.npz``, ... where STEM is
the dataset's file stem (``cube-quadruple-play-v0``), each one holding whole episodes (1000
episodes of 1000 steps), and beside each shard its ``-val.npz``. Loaders read the shards in name
order and the validation split from the first shard's val file, ``STEM-000-val.npz`` (what
``ogbench.make_env_and_datasets(..., dataset_path=STEM-000.npz)`` reads).

This module finds the shards, reads only the ``.npy`` headers inside each ``.npz`` (shapes and
dtypes, nothing decompressed past them) and fills arrays preallocated once for the whole dataset,
one shard at a time: the dataset is never held twice. Every problem is one DataError naming the
shard (``FOLDER/STEM-007.npz: ...``). NumPy only.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gfp.errors import DataError

# The keys a shard must hold (the ordinary OGBench layout; qpos is what relabelling reads).
REQUIRED_KEYS = ("observations", "actions", "terminals")
_SHARD = re.compile(r"-(\d{3,})\.npz$")


@dataclass(frozen=True)
class Header:
    """What a shard's ``.npy`` headers say: per key, its shape and dtype."""

    path: Path
    arrays: dict[str, tuple[tuple[int, ...], np.dtype]]

    @property
    def rows(self) -> int:
        return self.arrays["observations"][0][0]


@dataclass(frozen=True)
class ShardSet:
    """The shards of one dataset in loading order, and its validation file (None if absent)."""

    folder: Path
    stem: str
    shards: tuple[Path, ...]
    val: Path | None


def size_tag(rows: int) -> str:
    """The size word OGBench puts in a sharded folder's name: 100000000 -> '100m', 1e9 -> '1b'."""
    for unit, suffix in ((10**9, "b"), (10**6, "m"), (10**3, "k")):
        if rows >= unit:
            return f"{rows / unit:.3g}{suffix}"
    return str(rows)


def folder_name(stem: str, rows: int) -> str:
    """OGBench's folder name for STEM's sharded data of `rows` rows:
    ('cube-quadruple-play-v0', 10**8) -> 'cube-quadruple-play-100m-v0'."""
    base, _, version = stem.rpartition("-")
    return f"{base}-{size_tag(rows)}-{version}"


def shard_name(stem: str, index: int) -> str:
    return f"{stem}-{index:03d}.npz"


def val_name(stem: str) -> str:
    """The validation file sharded loaders read: the first shard's."""
    return f"{stem}-000-val.npz"


def shard_stems(folder: Path) -> set[str]:
    """The dataset stems that have shards in `folder` (usually one)."""
    if not folder.is_dir():
        return set()
    return {_SHARD.sub("", p.name) for p in folder.glob("*.npz") if _SHARD.search(p.name)}


def is_sharded(folder: Path, stem: str | None = None) -> bool:
    """Whether `folder` holds shards (of `stem`, when given)."""
    stems = shard_stems(folder)
    return stem in stems if stem is not None else bool(stems)


def find(folder: Path, stem: str | None = None) -> ShardSet:
    """The shards of `stem` (or of the one dataset there) in `folder`, numbered 000, 001, ...
    without a gap: a missing one is an error naming it (an interrupted download, say)."""
    stems = shard_stems(folder)
    if stem is None:
        if len(stems) != 1:
            found = ", ".join(sorted(stems)) or "none"
            raise DataError(f"{folder}: expected the shards of one dataset, found {found}")
        (stem,) = stems
    numbered = {}
    for p in folder.glob(f"{glob_escape(stem)}-*.npz"):
        m = _SHARD.search(p.name)
        if m and p.name == f"{stem}-{m.group(1)}.npz":
            numbered.setdefault(int(m.group(1)), p)
    if not numbered:
        raise DataError(f"{folder}: no shards {stem}-000.npz, {stem}-001.npz, ... found")
    for index in range(max(numbered) + 1):
        if index not in numbered:
            raise DataError(
                f"{folder}/{shard_name(stem, index)}: shard {index} of {max(numbered) + 1} is "
                "missing (the shards must be numbered from 000 without a gap)"
            )
    val = folder / val_name(stem)
    shards = tuple(numbered[i] for i in range(len(numbered)))
    return ShardSet(folder, stem, shards, val if val.is_file() else None)


def glob_escape(text: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", text)


def read_header(path: Path) -> Header:
    """The shapes and dtypes of every array in the ``.npz`` at `path`, from the ``.npy`` headers
    alone (numpy's documented format, :mod:`numpy.lib.format`): no array data is read."""
    arrays: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as z:
            for member in z.namelist():
                if not member.endswith(".npy"):
                    continue
                with z.open(member) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                arrays[member.removesuffix(".npy")] = (tuple(shape), dtype)
    except (OSError, zipfile.BadZipFile, ValueError, EOFError) as e:
        raise DataError(f"{path}: cannot be read as a .npz file ({e})") from e
    return Header(path, arrays)


def check_header(header: Header, keys: Iterable[str] = REQUIRED_KEYS) -> None:
    """The keys are there, each with rows, and every array has the same number of rows."""
    have = header.arrays
    for key in keys:
        if key not in have:
            names = ", ".join(sorted(have)) or "nothing"
            raise DataError(f"{header.path}: key '{key}' is missing (the file has: {names})")
    for key, (shape, _) in have.items():
        if not shape:
            raise DataError(f"{header.path}: key '{key}' is a scalar, expected one row per step")
    rows = header.rows
    for key, (shape, _) in sorted(have.items()):
        if shape[0] != rows:
            raise DataError(
                f"{header.path}: key '{key}' has {shape[0]} rows but 'observations' has {rows}"
            )
    if rows == 0:
        raise DataError(f"{header.path}: key 'observations' is empty (0 rows)")


def read_headers(shard_set: ShardSet, keys: Iterable[str] = REQUIRED_KEYS) -> list[Header]:
    """Every shard's header, checked on its own and against the first shard (the same keys and
    the same row shapes and dtypes: shards of one dataset)."""
    keys = tuple(keys)
    headers = []
    for path in shard_set.shards:
        header = read_header(path)
        check_header(header, keys)
        if headers:
            first = headers[0]
            for key in sorted(set(first.arrays) - set(header.arrays)):
                names = ", ".join(sorted(header.arrays))
                raise DataError(f"{path}: key '{key}' is missing (the file has: {names})")
            for key in sorted(set(header.arrays) - set(first.arrays)):
                raise DataError(f"{path}: key '{key}' is not in the other shards")
            for key, (shape, dtype) in header.arrays.items():
                want_shape, want_dtype = first.arrays[key]
                if shape[1:] != want_shape[1:] or dtype != want_dtype:
                    raise DataError(
                        f"{path}: key '{key}' has rows of shape {shape[1:]} ({dtype}) but "
                        f"{first.path.name} has {want_shape[1:]} ({want_dtype})"
                    )
        headers.append(header)
    return headers


def fill(
    sizes: Mapping[Path, int],
    layout: Mapping[str, tuple[tuple[int, ...], np.dtype]],
    convert: Callable[[Path], Mapping[str, np.ndarray]],
) -> dict[str, np.ndarray]:
    """Arrays of `layout` (key -> row shape, dtype) with ``sum(sizes)`` rows, allocated once and
    filled with ``convert(shard)`` for each shard in order; `sizes` is each shard's row count
    after conversion. A shard converting to another size is an error naming it."""
    total = sum(sizes.values())
    out = {k: np.empty((total, *shape), dtype) for k, (shape, dtype) in layout.items()}
    start = 0
    for path, rows in sizes.items():
        part = convert(path)
        for key in layout:
            if len(part[key]) != rows:
                raise DataError(
                    f"{path}: key '{key}' converts to {len(part[key])} rows, expected {rows}"
                )
            out[key][start : start + rows] = part[key]
        del part  # the shard's own arrays go before the next shard is read
        start += rows
    return out
