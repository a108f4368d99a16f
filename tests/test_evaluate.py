"""Evaluation's environment pool: worker processes and kept environments only change speed."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gfp import evaluate as ev

ENV = "Pendulum-v1"  # cheap to build and step; deterministic given the reset seed and actions


def recording_policy():
    """A stochastic policy (noise from the key) that records every observation batch it sees."""
    fn = jax.jit(
        lambda obs, key: jnp.tanh(obs[:, :1] + 0.5 * jax.random.normal(key, (len(obs), 1)))
    )
    seen: list[np.ndarray] = []

    def policy(obs, key):
        seen.append(np.array(obs))
        return fn(obs, key)

    return policy, seen


@pytest.fixture
def fresh_pools():
    ev.close_env_pools()
    yield
    ev.close_env_pools()


def test_workers_and_reuse_change_nothing(fresh_pools):
    runs = []
    for workers in (0, 2, 2, 0, 3):  # fresh, fresh, kept, kept, fresh
        policy, seen = recording_policy()
        result = ev.evaluate(policy, ENV, episodes=5, num_envs=3, seed=11, workers=workers)
        runs.append((result, np.stack(seen)))
    first_result, first_obs = runs[0]
    assert first_obs.std(axis=0).mean() > 0  # the trajectories do move
    for result, obs in runs[1:]:
        np.testing.assert_equal(result, first_result)  # NaN success (no such info) included
        np.testing.assert_array_equal(obs, first_obs)
    assert len(ev._POOLS) == 3  # one kept pool per worker count


def test_worker_errors_surface_and_drop_the_pool(fresh_pools):
    policy, _ = recording_policy()
    with pytest.raises(RuntimeError, match="evaluation worker"):
        ev.evaluate(policy, "NoSuchEnv-v0", episodes=2, num_envs=2, workers=2)
    assert not ev._POOLS


def test_close_env_pools_ends_the_workers(fresh_pools):
    policy, _ = recording_policy()
    ev.evaluate(policy, ENV, episodes=2, num_envs=2, workers=2)
    procs = list(ev._POOLS[(ENV, 2)].procs)
    assert all(p.poll() is None for p in procs)
    ev.close_env_pools()
    assert all(p.poll() is not None for p in procs)


def test_default_workers():
    assert ev.default_workers(1) == 0
    assert ev.default_workers(10) in (0, *range(2, 11))


def test_key_stream_is_the_split_chain():
    """The policy gets the keys of `rng, key = jax.random.split(rng)`, step after step."""
    rng, stream = jax.random.PRNGKey(3), ev._key_stream(jax.random.PRNGKey(3), block=5)
    for _ in range(12):
        rng, key = jax.random.split(rng)
        np.testing.assert_array_equal(next(stream), np.asarray(key))


# ---- evaluation seeds (issue 19): distinct across run seeds and evaluations, reproducible -------
def test_evaluation_seeds_differ_across_run_seeds_and_steps_and_repeat():
    seeds = {(s, step): ev.evaluation_seed(s, step) for s in range(8) for step in (0, 1, 500_000)}
    assert len(set(seeds.values())) == len(seeds)  # 24 evaluations, 24 seeds
    assert ev.evaluation_seed(3, 1000) == ev.evaluation_seed(3, 1000)
    # the episodes of two evaluations share no reset seed (episode i: seed + i)
    a, b = ev.evaluation_seed(0, 1000), ev.evaluation_seed(1, 1000)
    assert not set(range(a, a + 100)) & set(range(b, b + 100))


def test_two_run_seeds_evaluations_start_from_different_initial_states(fresh_pools):
    def first_observations(run_seed: int) -> np.ndarray:
        policy, seen = recording_policy()
        ev.evaluate(policy, ENV, episodes=2, num_envs=2, seed=ev.evaluation_seed(run_seed, 1000))
        return seen[0]

    a, b = first_observations(0), first_observations(1)
    assert a.shape == b.shape == (2, 3)
    assert not np.allclose(a, b)


@pytest.mark.slow
def test_gfp_train_records_each_evaluations_seed(tiny_ogbench_dir, tmp_path):
    import csv

    from gfp.job import make_train_job
    from gfp.run import run_training

    tiny = {"actor_hidden_dims": (8,), "value_hidden_dims": (8,), "batch_size": 8, "flow_steps": 2}
    job = make_train_job("cube-single-noisy-singletask-task1-v0", preset="cpu", overrides=tiny,
                         steps=20, seeds=[0, 1], out=tmp_path / "run", dataset_dir=tiny_ogbench_dir,
                         log_every=10, eval_every=10, eval_episodes=1, progress=False)  # fmt: skip
    run_training(job)
    used = []
    for seed, run in zip(job.seeds, job.run_dirs(), strict=True):
        rows = list(csv.DictReader((run / "eval.csv").open()))
        assert [int(r["step"]) for r in rows] == [10, 20]
        for r in rows:
            assert int(r["eval_seed"]) == ev.evaluation_seed(seed, int(r["step"]))
            used.append(int(r["eval_seed"]))
    assert len(set(used)) == 4  # seeds x evaluations, all distinct
