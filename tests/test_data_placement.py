"""State-data placement (gfp.engine.placement, gfp.engine.host_arrays): device, host memory or
memory-mapped from disk, chosen from the sizes or forced by the run setting data_placement, and
bit-identical training whichever placement holds the data."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import numpy as np
import pytest

from gfp import settings as run_settings
from gfp.agents import make_agent
from gfp.agents.base import ObsSpec
from gfp.agents.configs import GFPConfig
from gfp.engine import host_arrays as H
from gfp.engine import placement as P
from gfp.engine.chunk import init_states
from gfp.engine.driver import train
from gfp.engine.samplers import ArraySampler, next_actions, training_rows
from gfp.errors import ConfigError

MiB = 2**20
TINY = dict(actor_hidden_dims=(8,), value_hidden_dims=(8,), batch_size=4, flow_steps=2)


def transitions(n: int = 500, obs: int = 3, act: int = 2, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((n, obs), dtype=np.float32)
    return {
        "observations": s,
        "actions": rng.uniform(-1, 1, (n, act)).astype(np.float32),
        "rewards": rng.standard_normal(n).astype(np.float32),
        "masks": np.ones(n, np.float32),
        "terminals": (np.arange(n) % 50 == 49).astype(np.float32),
        "next_observations": np.roll(s, -1, axis=0),
    }


def tiny_agent():
    return make_agent("gfp", GFPConfig(**TINY), obs_spec=ObsSpec((3,), "float32"), action_dim=2)


# ---- the choice ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("nbytes", "budget", "free", "expected"),
    [
        (100 * MiB, 200 * MiB, 10_000 * MiB, "device"),  # fits the device budget
        (300 * MiB, 200 * MiB, 10_000 * MiB, "host"),  # too big for the device, fits in RAM
        (300 * MiB, 200 * MiB, 500 * MiB, "disk"),  # fits neither (RAM: half of 500 MiB free)
        (300 * MiB, 200 * MiB, 600 * MiB, "host"),  # exactly half the free memory
        (300 * MiB, None, 700 * MiB, "device"),  # CPU backend: the device is host memory
        (300 * MiB, None, 500 * MiB, "disk"),  # CPU backend, too big for host memory
        (300 * MiB, 200 * MiB, None, "host"),  # unknown free memory: taken to fit
    ],
)
def test_automatic_placement_follows_the_sizes(nbytes, budget, free, expected):
    choice, why = P.choose_state_placement(nbytes, "auto", budget, free)
    assert choice == expected
    assert f"{nbytes / MiB:.1f} MiB" in why  # the log line says the size


def test_a_forced_placement_wins_and_a_bad_one_is_one_clear_error():
    for forced in ("device", "host", "disk"):
        choice, why = P.choose_state_placement(10**12, forced, 10, 10)
        assert choice == forced and f"--data-placement {forced}" in why
    with pytest.raises(ConfigError, match="data_placement = 'gpu' must be one of auto, device"):
        P.choose_state_placement(1, "gpu", None, None)


def test_data_placement_is_a_run_setting_that_does_not_define_the_run():
    assert "data_placement" in run_settings.names()
    assert "data_placement" not in run_settings.run_defining()  # never changes the numbers
    defaults = run_settings.record(run_settings.SCHEMA(steps=10))
    assert "data_placement" not in run_settings.record(
        run_settings.SCHEMA(steps=10, data_placement="disk")
    )
    assert run_settings.record(run_settings.SCHEMA(steps=10, data_placement="disk")) == defaults
    with pytest.raises(ConfigError, match="data_placement"):
        run_settings.SCHEMA(steps=10, data_placement="ram")


def test_make_sampler_logs_the_placement_and_keeps_todays_default():
    tr, lines = transitions(), []
    assert isinstance(P.make_sampler(tr, tiny_agent().batch_keys), ArraySampler)
    host = P.make_sampler(tr, tiny_agent().batch_keys, "host", log=lines.append)
    assert isinstance(host, H.HostArraySampler) and host.placement == "host"
    assert np.shares_memory(host.arrays["observations"], tr["observations"])  # no copy in RAM
    assert lines == ["state data on the host: 0.0 MiB, as --data-placement host says"]


# ---- rows and the disk copy ----------------------------------------------------------------------
@pytest.mark.parametrize("terminals", [True, False])
def test_rows_read_a_slice_at_a_time_equal_the_whole_arrays(terminals):
    tr = transitions(n=103)
    if not terminals:
        del tr["terminals"]
    whole = next_actions(tr)
    for step in (1, 7, 50, 103, 200):
        parts = [
            training_rows(tr, "next_actions", lo, min(lo + step, 103)) for lo in range(0, 103, step)
        ]
        np.testing.assert_array_equal(np.concatenate(parts), whole)
    np.testing.assert_array_equal(training_rows(tr, "rewards", 10, 20), tr["rewards"][10:20])


def test_disk_placement_maps_read_only_copies_and_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(H, "SPILL_BYTES", 64)  # many slices per array
    dead = tmp_path / f"{H.SPILL_PREFIX}999999999-x"  # a folder a killed process left
    alive = tmp_path / f"{H.SPILL_PREFIX}{os.getpid()}-y"  # one this process is writing
    dead.mkdir(), alive.mkdir()
    tr = transitions(n=77)
    keys = ("observations", "actions", "rewards", "next_actions")  # ReBRAC's next_actions
    sampler = P.make_sampler(tr, keys, "disk", cache_dir=tmp_path)
    assert isinstance(sampler, H.HostArraySampler) and sampler.placement == "disk"
    for key, a in sampler.arrays.items():
        assert isinstance(a, np.memmap) and not a.flags.writeable
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, P.training_array(tr, key))
    assert set(sampler.arrays) == set(keys)  # next_actions derived slice by slice
    assert sorted(p.name for p in tmp_path.iterdir()) == [alive.name]  # the rest removed


def test_an_unwritable_cache_folder_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(Exception, match="data placement disk: cannot create a cache folder") as e:
        P.make_sampler(transitions(), tiny_agent().batch_keys, "disk", cache_dir=blocker)
    assert type(e.value).__name__ == "WriteError" and "\n" not in str(e.value)


# ---- bit-identical training ----------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("seeds", [[3], [0, 1]])
def test_the_three_placements_train_bit_identically(seeds, tmp_path, monkeypatch):
    # Blocks of 4 updates: a 15-update chunk is 4 + 4 + 4 + 3 blocks, so the host's key chain is
    # followed across blocks and across the two chunks.
    agent, tr = tiny_agent(), transitions()
    row = sum(np.asarray(tr[k][:1]).nbytes for k in agent.batch_keys)
    monkeypatch.setattr(H, "BLOCK_BYTES", 4 * len(seeds) * TINY["batch_size"] * row)
    params = {}
    for placement in ("device", "host", "disk"):
        sampler = P.make_sampler(tr, agent.batch_keys, placement, cache_dir=tmp_path)
        states = train(agent, sampler, init_states(agent, seeds), steps=30, log_every=15,
                       progress=False)  # fmt: skip
        params[placement] = jax.tree.leaves(jax.device_get(states))
    assert (
        isinstance(sampler, H.HostArraySampler)
        and sampler.block_steps(len(seeds), agent.config) == 4
    )
    for placement in ("host", "disk"):
        for a, b in zip(params["device"], params[placement], strict=True):
            assert np.array_equal(a, b), placement


# ---- a dataset larger than the memory it may use --------------------------------------------
CHILD = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    folder, rows, margin = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    keys = {"observations": (rows, 64), "next_observations": (rows, 64), "actions": (rows, 2),
            "rewards": (rows,), "masks": (rows,)}
    for k, shape in keys.items():  # the dataset's .npy files, written 100K rows at a time
        m = np.lib.format.open_memmap(f"{folder}/{k}.npy", "w+", np.float32, shape)
        for lo in range(0, rows, 100_000):
            part = m[lo : lo + 100_000]
            part[:] = np.random.default_rng(lo).uniform(-1, 1, part.shape)
        m.flush()
        del m
    tr = {k: np.load(f"{folder}/{k}.npy", mmap_mode="r") for k in keys}

    from gfp.agents import make_agent
    from gfp.agents.base import ObsSpec
    from gfp.agents.configs import GFPConfig
    from gfp.engine.chunk import init_states
    from gfp.engine.driver import train
    from gfp.engine.placement import make_sampler

    cfg = GFPConfig(actor_hidden_dims=(8,), value_hidden_dims=(8,), batch_size=4, flow_steps=2)
    agent = make_agent("gfp", cfg, obs_spec=ObsSpec((64,), "float32"), action_dim=2)
    def run(data):
        sampler = make_sampler(data, agent.batch_keys, "disk", cache_dir=folder)
        states = init_states(agent, [0])
        return train(agent, sampler, states, steps=10, log_every=10, progress=False)
    run({k: np.array(v[:1000]) for k, v in tr.items()})  # JAX started, its programs compiled
    status = open("/proc/self/status").read().splitlines()
    used = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmData"))
    # From here on the process may grow its private memory by `margin` bytes only: far less than
    # the dataset, whose arrays cannot be loaded into RAM any more, but the memory map trains.
    resource.setrlimit(resource.RLIMIT_DATA, (used + margin, used + margin))
    print("steps", int(run(tr).step[0]), flush=True)
    try:
        whole = [np.array(v) for v in tr.values()]
        print("loaded into RAM")
    except MemoryError:
        print("RAM refused")
    """
)


@pytest.mark.slow
def test_a_memory_mapped_dataset_larger_than_the_memory_limit_trains(tmp_path):
    rows = 700_000  # 353 MiB of float32 training arrays
    margin = 120 * MiB
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path), str(rows), str(margin)],
        capture_output=True, text=True, env=env, timeout=300, cwd=Path(__file__).parents[1],
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split("\n")[:2] == ["steps 10", "RAM refused"], out.stdout
    assert not list(tmp_path.glob(f"{H.SPILL_PREFIX}*"))  # the cache folder is gone
