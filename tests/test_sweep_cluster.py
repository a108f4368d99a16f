"""gfp sweep at cluster scale: what a run asks Ray for (memory from an estimate, retries), one
driver per sweep folder (the lock), and on a multi-node Ray cluster on this machine (Ray's own
`ray.cluster_utils.Cluster`: a head and two worker nodes of one CPU each; marked slow): a sweep
onto it, a node removed mid-run, the driver SIGKILLed and restarted, a folder a node cannot see.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gfp.cli import main
from gfp.errors import ConfigError, DataError
from gfp.job import make_train_job
from gfp.sweep.executor import Options, check_memory_fits
from gfp.sweep.resources import GIB, DatasetSize, estimate_memory, remote_options
from tests.conftest import TINY_TASK

ROOT = Path(__file__).resolve().parents[1]


# ---- what a run asks Ray for --------------------------------------------------------------------
def tiny_job(**settings):
    return make_train_job(TINY_TASK, "bc", overrides={"actor_hidden_dims": "16x16",
                          "value_hidden_dims": "16x16"}, seeds=[0, 1], preset="cpu", steps=100,
                          **settings)  # fmt: skip


def test_memory_estimate_of_a_known_config():
    data = DatasetSize(rows=1000, obs_dim=10, act_dim=2, nbytes=100_000)
    # by hand: a policy MLP 13 -> 16 -> 16 -> 2 has 224 + 272 + 34 = 530 parameters; a critic
    # member 12 -> 16 -> 16 -> 1 with LayerNorm 208 + 272 + 17 + 64 = 561, two of them 1122;
    # networks 4 bytes x (4 x (2 x 530 + 1122) + 1122) = 39400 per seed; the dataset on the host
    # and on the CPU device 200000; margin 1.25 over 200000 + 2 seeds x 39400; plus 1 GiB
    assert estimate_memory(tiny_job(), data) == GIB + 348_500
    assert estimate_memory(tiny_job(), data, gpu=True) == GIB + 223_500  # the host copy only
    # online: a replay buffer of max(buffer_size, rows + 1) rows of 100 bytes per seed
    online = tiny_job(online_steps=100, buffer_size=5000)
    assert estimate_memory(online, data) == GIB + int(1.25 * (200_000 + 2 * (39_400 + 500_000)))
    balanced = tiny_job(online_steps=100, buffer_size=500, balanced_sampling=True)
    assert estimate_memory(balanced, data) == GIB + int(1.25 * (200_000 + 2 * (39_400 + 50_000)))


def test_remote_options_carry_memory_and_retries(tmp_path, monkeypatch):
    import gfp.sweep

    captured = {}

    def fake_run_sweep(spec, out, opts, **kw):
        captured["opts"] = opts
        raise SystemExit(0)

    monkeypatch.setattr(gfp.sweep, "run_sweep", fake_run_sweep)
    with pytest.raises(SystemExit):
        main(["sweep", "--tasks", TINY_TASK, "--agents", "bc", "--seeds", "0", "--out",
              str(tmp_path), "--max-retries", "5", "--memory-per-run", "2.5"])  # fmt: skip
    opts = captured["opts"]
    assert (opts.max_retries, opts.memory_per_run) == (5, 2.5)
    ray_opts = remote_options(opts, tmp_path, 3 * GIB)
    assert ray_opts["memory"] == 3 * GIB and ray_opts["max_retries"] == 5
    assert ray_opts["retry_exceptions"] is False  # errors are the run's failed.json, not retried
    assert (ray_opts["num_cpus"], ray_opts["num_gpus"]) == (1.0, 0.0)
    assert ray_opts["runtime_env"]["env_vars"]["JAX_PLATFORMS"] == "cpu"
    with pytest.raises(ConfigError, match="--memory-per-run 0 must be > 0"):
        Options(memory_per_run=0)


def test_a_run_larger_than_every_node_is_refused():
    class FakeRay:  # ray.nodes()'s documented fields only
        @staticmethod
        def nodes():
            return [{"Alive": True, "Resources": {"memory": 4.0 * GIB}},
                    {"Alive": False, "Resources": {"memory": 64.0 * GIB}}]  # fmt: skip

    check_memory_fits(FakeRay, 3 * GIB)
    with pytest.raises(ConfigError, match="needs about 5.0 GiB .* largest node offers 4.0 GiB"):
        check_memory_fits(FakeRay, 5 * GIB)


def test_dataset_sizes_are_recorded_when_checked(tmp_path, tiny_ogbench_dir):
    from gfp.data.load import load_dataset
    from gfp.sweep.datasets import CHECKED, dataset_size, prepare_datasets

    job = tiny_job(dataset_dir=str(tiny_ogbench_dir))
    with pytest.raises(DataError, match="no size recorded"):
        dataset_size(job, tmp_path)
    # a record of an older gfp (a time, no sizes) is checked once more
    (tmp_path / CHECKED).write_text(json.dumps({f"cube-single-noisy-v0|{tiny_ogbench_dir}": "x"}))
    assert prepare_datasets([job], tmp_path, log=print) == 1
    data = load_dataset(TINY_TASK, tiny_ogbench_dir)
    size = dataset_size(job, tmp_path)
    assert (size.rows, size.obs_dim, size.act_dim) == (data.size, data.obs_dim, data.act_dim)
    nbytes = sum(a.nbytes for a in [*data.train.values(), *data.val.values()])
    assert size.nbytes == nbytes
    assert prepare_datasets([job], tmp_path, log=print) == 0
