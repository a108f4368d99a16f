"""Shared fixtures: a tiny OGBench dataset made once per session with OGBench's oracles."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

TINY_TASK = "cube-single-noisy-singletask-task1-v0"


@pytest.fixture(scope="session")
def tiny_ogbench_dir(tmp_path_factory):
    """3 train + 1 val episodes of cube-single-noisy, 101 rows each, in the official layout."""
    from gfp.datagen.generate import generate

    out = tmp_path_factory.mktemp("ogbench_data")
    generate("cube-single-noisy-v0", 3, out, workers=1, seed=0, episode_length=101, progress=False)
    return out


# One persistent JAX compilation cache for the whole session, set before anything imports JAX:
# this process and every `gfp` subprocess a test starts (they inherit the environment) compile
# each distinct program once instead of once per process. A cache hit runs the same executable,
# so results do not change; lowering still happens, so tests/test_reliability.py's compile gate
# still holds a process inside its first compilation. A developer's own cache setting wins.
_JAX_CACHE = {
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
}
_own_cache: list[str] = []


def pytest_configure(config):
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        path = tempfile.mkdtemp(prefix="gfp-tests-jax-cache-")
        _own_cache.append(path)
        os.environ["JAX_COMPILATION_CACHE_DIR"] = path
        for key, value in _JAX_CACHE.items():
            os.environ.setdefault(key, value)
    # Tests over ~20 s carry @pytest.mark.slow: CI runs them, `-m "not slow"` leaves them out.
    config.addinivalue_line("markers", "slow: takes over ~20 s (CI runs it; -m 'not slow' skips)")
    # Tests of the accelerator's code paths (tests/test_gpu.py): benchmarks/device/run.sh runs
    # `-m gpu` on the device machine; they pass on the CPU too and run with the rest there.
    config.addinivalue_line("markers", "gpu: accelerator code paths (also pass on the CPU)")


def pytest_unconfigure(config):
    for path in _own_cache:
        shutil.rmtree(path, ignore_errors=True)
