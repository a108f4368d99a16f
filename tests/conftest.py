"""Shared fixtures: a tiny OGBench dataset made once per session with OGBench's oracles."""

from __future__ import annotations

import pytest

TINY_TASK = "cube-single-noisy-singletask-task1-v0"


@pytest.fixture(scope="session")
def tiny_ogbench_dir(tmp_path_factory):
    """3 train + 1 val episodes of cube-single-noisy, 101 rows each, in the official layout."""
    from gfp.datagen.generate import generate

    out = tmp_path_factory.mktemp("ogbench_data")
    generate("cube-single-noisy-v0", 3, out, workers=1, seed=0, episode_length=101, progress=False)
    return out


def pytest_configure(config):
    # Tests over ~20 s carry @pytest.mark.slow: CI runs them, `-m "not slow"` leaves them out.
    config.addinivalue_line("markers", "slow: takes over ~20 s (CI runs it; -m 'not slow' skips)")
    # Tests of the accelerator's code paths (tests/test_gpu.py): benchmarks/device/run.sh runs
    # `-m gpu` on the device machine; they pass on the CPU too and run with the rest there.
    config.addinivalue_line("markers", "gpu: accelerator code paths (also pass on the CPU)")
