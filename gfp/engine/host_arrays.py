"""State datasets that stay off the device: in host memory, or memory-mapped from disk.

`HostArraySampler` is the state-data counterpart of gfp.engine.frames' `HostFrameSampler`, a
*fed* sampler (gfp.engine.samplers' protocol): the rows of the next updates are planned on the
host from the seeds' keys, gathered from NumPy arrays by host threads and put on the device a
block of updates at a time while the previous block trains (gfp.engine.chunk's prefetch).

Same minibatches as the device. `ArraySampler` splits a state's key into (update key, batch
key) and draws the rows with the batch key; `Agent.update` then splits the update key once and
keeps the first half as the state's next key (gfp/agents/base.py). That chain does not depend on
the update's values, so `plan_rows` walks it ahead of the updates and draws the same rows; the
gathered rows are the same float32 values the device copy holds, so every placement trains to
bit-identical parameters. (Action-chunk windows, `horizon` > 1: the same minibatches, bit for
bit; the parameters to float rounding, gfp.engine.sequence.)

Disk (`spill`): the training arrays are written once, in the dtype the device would hold, as .npy
files in a fresh folder, reopened with `mmap_mode='r'` and the folder removed at once: the open
mappings keep the data readable until the sampler goes away, and nothing is left behind. Only the
pages a minibatch touches are read, so a dataset larger than host memory trains.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from gfp.engine.frames import GATHER_THREADS, _gather_pool, planned_blocks
from gfp.engine.samplers import Sampler
from gfp.engine.sequence import WINDOW_KEYS, batch_keys, check_horizon, data_keys, window_batch
from gfp.errors import WriteError

# Bytes of gathered rows per prefetched block (all seeds): several hundred updates per jitted call
# at the usual sizes, two blocks in flight a small fraction of any device's memory.
BLOCK_BYTES = 32 * 2**20
# Rows written per slice when spilling to disk: bounded host memory whatever the dataset's size.
SPILL_BYTES = 64 * 2**20
SPILL_PREFIX = ".gfp-memmap-"  # hidden: a run folder's listing skips it


# ---- the key chain -------------------------------------------------------------------------------
def plan_rows(rngs: jax.Array, n: int, batch_size: int, steps: int) -> tuple[jax.Array, Any]:
    """The rows of the next `steps` updates of each seed from the seeds' keys `rngs` (seeds, key):
    (keys after them, rows (seeds, steps, batch_size)), the draws `ArraySampler.minibatch` makes
    (gfp.engine.samplers.sample_rows) before the updates run."""

    def one(rng: jax.Array) -> tuple[jax.Array, jax.Array]:
        def step(rng, _):
            update_key, batch_key = jax.random.split(rng)  # ArraySampler.minibatch
            rows = jax.random.randint(batch_key, (batch_size,), 0, n)
            return jax.random.split(update_key)[0], rows  # Agent.update keeps the first half

        return jax.lax.scan(step, rng, None, length=steps)

    return jax.vmap(one)(rngs)


_plan = jax.jit(plan_rows, static_argnums=(1, 2, 3))


# ---- the sampler ---------------------------------------------------------------------------------
class HostArraySampler(Sampler):
    """State transitions as NumPy arrays in host memory or memory-mapped (`arrays`, each of `size`
    rows, in the dtypes the device sampler would hold): a fed sampler, nothing of it goes to the
    jitted chunk. `placement`: 'host' or 'disk', for the log and the tests.

    `horizon` h > 1: minibatches of h-step windows (gfp.engine.sequence, the device's
    `SequenceSampler`): the window starts are planned from the same key chain over N - h + 1
    starts, their rows gathered here and the window math done inside the update; `out`: the
    batch keys they carry."""

    fed = True

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        placement: str = "host",
        horizon: int = 1,
        out: Sequence[str] | None = None,
    ):
        self.arrays, self.placement = dict(arrays), placement
        self.horizon, self.out = horizon, (tuple(out) if out is not None else None)

    @property
    def data(self) -> dict[str, Any]:
        return {}

    @property
    def size(self) -> int:
        return int(next(iter(self.arrays.values())).shape[0])

    @property
    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in self.arrays.values())

    def keys(self) -> set[str]:
        return set(self.arrays) if self.horizon == 1 else batch_keys(self.arrays)

    def select(self, keys: Sequence[str]) -> HostArraySampler:
        arrays = {k: self.arrays[k] for k in data_keys(keys, self.horizon)}
        return type(self)(arrays, self.placement, self.horizon, keys if self.horizon > 1 else None)

    def minibatch(self, config, data, rng, fed=None):
        # The update key ArraySampler gives; the batch key's rows were drawn by `plan_rows`.
        update_key, _ = jax.random.split(rng)
        if self.horizon > 1:
            check_horizon(config, self.horizon)
            fed = window_batch(fed, config.gamma, self.out)
        return fed, update_key, None

    def gather(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """The rows `idx` (any leading shape, e.g. (seeds, steps, B)) of every array, copied once
        into the output by `GATHER_THREADS` threads (NumPy's take releases the GIL; from a
        memory map it reads only the pages holding those rows). Horizon h > 1: `idx` are window
        starts, and each array's rows are those of gfp.engine.sequence.gather_windows (the window
        keys at all h rows, (..., h, ...), next_observations at the window's last row)."""
        flat, h = idx.reshape(-1), self.horizon
        rows = {k: flat for k in self.arrays}
        if h > 1:
            window = (flat[:, None] + np.arange(h)).reshape(-1)
            for k in self.arrays:
                if k in WINDOW_KEYS:
                    rows[k] = window
                elif k == "next_observations":
                    rows[k] = flat + h - 1
        bounds = np.linspace(0, len(flat), min(GATHER_THREADS, len(flat)) + 1).astype(int)
        per = {k: len(r) // max(len(flat), 1) for k, r in rows.items()}  # rows per sample: 1 or h
        out = {k: np.empty((len(rows[k]), *a.shape[1:]), a.dtype) for k, a in self.arrays.items()}

        def take(i: int) -> None:
            lo, hi = bounds[i], bounds[i + 1]
            for k, a in self.arrays.items():
                m = per[k]
                part = out[k][lo * m : hi * m]
                np.take(a, rows[k][lo * m : hi * m], axis=0, out=part, mode="clip")

        if len(bounds) > 2:
            list(_gather_pool().map(take, range(len(bounds) - 1)))
        else:
            take(0)
        return {
            k: v.reshape(*idx.shape, *((h,) if per[k] > 1 else ()), *v.shape[1:])
            for k, v in out.items()
        }

    def block_steps(self, seeds: int, config: Any) -> int:
        """Updates per prefetched block: about BLOCK_BYTES of gathered rows (all seeds)."""
        h = self.horizon
        row = sum(a[:1].nbytes * (h if k in WINDOW_KEYS else 1) for k, a in self.arrays.items())
        return max(1, BLOCK_BYTES // max(seeds * config.batch_size * row, 1))

    def feed(self, rngs, length, config):
        per_block = min(length, self.block_steps(len(rngs), config))
        starts = self.size - self.horizon + 1  # h > 1: window starts (gfp.engine.sequence)
        blocks = planned_blocks(_plan, rngs, starts, config.batch_size, length, per_block)
        for steps, idx in blocks:
            yield steps, jax.device_put(self.gather(idx))


# ---- disk ----------------------------------------------------------------------------------------
def spill(
    columns: Mapping[str, tuple[tuple[int, ...], Any, Callable[[int, int], np.ndarray]]],
    cache_dir: str | os.PathLike | None = None,
) -> dict[str, np.ndarray]:
    """Memory-mapped, read-only copies of `columns`: name -> (shape, dtype, rows(lo, hi)), each
    written once as a .npy file, SPILL_BYTES of rows at a time, in a fresh folder under
    `cache_dir` (default: the system's temporary directory), which is removed once the files are
    mapped. A folder a killed process left behind is removed by the next spill. WriteError if
    the folder cannot be written (e.g. the disk is full)."""
    root = Path(cache_dir) if cache_dir is not None else Path(tempfile.gettempdir())
    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove_stale(root)
        folder = Path(tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}{os.getpid()}-", dir=root))
    except OSError as e:
        raise WriteError(
            f"data placement disk: cannot create a cache folder in {root}: {e}"
        ) from None
    try:
        mapped = {}
        for name, (shape, dtype, rows) in columns.items():
            path = folder / f"{name}.npy"
            _write_npy(path, shape, np.dtype(dtype), rows)
            mapped[name] = np.load(path, mmap_mode="r")
        return mapped
    except OSError as e:
        raise WriteError(
            f"data placement disk: cannot write the dataset to {folder}: {e}"
        ) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # the mappings stay valid (Linux, macOS)


def _write_npy(
    path: Path, shape: tuple[int, ...], dtype: np.dtype, rows: Callable[[int, int], np.ndarray]
) -> None:
    # Plain sequential writes (no writable mapping): the process's resident memory stays one slice.
    n, row_bytes = shape[0], int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    step = max(1, SPILL_BYTES // max(row_bytes, 1))
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_2_0(f, header)
        for lo in range(0, n, step):
            f.write(np.ascontiguousarray(rows(lo, min(lo + step, n)), dtype).tobytes())


def _remove_stale(root: Path) -> None:
    """Remove spill folders whose process is gone (killed while writing)."""
    for folder in root.glob(f"{SPILL_PREFIX}*-*"):
        pid = folder.name[len(SPILL_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
