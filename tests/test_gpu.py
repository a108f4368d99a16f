"""The code paths that change when training runs on an accelerator (marked `gpu`).

benchmarks/device/run.sh runs these on the device machine (`pytest -m gpu`); they pass on the CPU
as well, where they exercise the same code: the dataset put on the default device once
(gfp.engine.placement), seeds vmapped in one chunk (gfp.engine.chunk.over_seeds), pixel frames
kept in host memory and fed a block at a time (gfp.engine.frames.HostFrameSampler), and a policy
trained on the default device exported and run where a robot runs it (gfp.export).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gfp.agents import make_agent
from gfp.agents.base import ObsSpec
from gfp.agents.configs import GFPConfig
from gfp.engine import frames as F
from gfp.engine import placement as P
from gfp.engine.chunk import init_states, unstack
from gfp.engine.driver import train
from gfp.engine.samplers import ArraySampler

pytestmark = [pytest.mark.gpu, pytest.mark.slow]  # about 20-30 CPU-s each (compiles)

TINY = dict(actor_hidden_dims=(16, 16), value_hidden_dims=(16, 16), batch_size=8, flow_steps=2)


def state_transitions(n: int = 64, obs_dim: int = 6, act_dim: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    return {
        "observations": obs,
        "next_observations": np.roll(obs, -1, axis=0),
        "actions": rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "masks": np.ones(n, np.float32),
        "terminals": np.zeros(n, np.float32),
    }


def pixel_transitions(lengths: tuple[int, ...] = (30, 25), size: int = 4) -> dict[str, np.ndarray]:
    """Episodes of uint8 frames (frame r filled with r % 256), as OGBench's loader returns them."""
    obs, nxt, term, r = [], [], [], 0
    for length in lengths:
        rows = np.arange(r, r + length + 1)
        r += length + 1
        obs.append(rows[:-1])
        nxt.append(rows[1:])
        term.append(np.eye(length, dtype=np.float32)[-1])
    n = sum(lengths)

    def frames(rows: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(
            np.broadcast_to(rows[:, None, None, None] % 256, (len(rows), size, size, 3))
        ).astype(np.uint8)

    rng = np.random.default_rng(1)
    return {
        "observations": frames(np.concatenate(obs)),
        "next_observations": frames(np.concatenate(nxt)),
        "terminals": np.concatenate(term),
        "actions": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "masks": np.ones(n, np.float32),
    }


def state_agent():
    return make_agent("gfp", GFPConfig(**TINY), obs_dim=6, action_dim=3)


def assert_trees_close(a, b, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_the_dataset_is_put_on_the_default_device_once():
    """Every training array of a state dataset lives on the default device (the GPU there), as
    float32, with the dataset's values: minibatches are then gathered inside the jitted chunk."""
    tr = state_transitions()
    agent = state_agent()
    sampler = P.make_sampler(tr, agent.batch_keys)
    assert isinstance(sampler, ArraySampler)
    device = jax.devices()[0]
    assert set(sampler.data) == set(agent.batch_keys)
    for key, x in sampler.data.items():
        assert isinstance(x, jax.Array) and x.devices() == {device}, key
        assert x.dtype == jnp.float32, key
        np.testing.assert_array_equal(np.asarray(x), tr[key])


def test_vmapped_seeds_train_as_each_seed_alone():
    """Two seeds vmapped in one chunk reach the parameters each seed reaches trained alone (the
    one-seed chunk skips the vmap, so this compares two different programs), and the two seeds
    differ from each other. Highest matmul precision: TF32 would differ between the programs."""
    tr = state_transitions()
    agent = state_agent()
    sampler = P.make_sampler(tr, agent.batch_keys)
    with jax.default_matmul_precision("highest"):
        both = train(agent, sampler, init_states(agent, [3, 4]), steps=5, log_every=5,
                     progress=False)  # fmt: skip
        alone = [
            train(agent, sampler, init_states(agent, [s]), steps=5, log_every=5, progress=False)
            for s in (3, 4)
        ]
    assert both.step.tolist() == [5, 5]
    for i, one in enumerate(alone):
        np.testing.assert_array_equal(np.asarray(both.rng[i]), np.asarray(one.rng[0]))
        assert_trees_close(unstack(both, i).params, unstack(one, 0).params)
    first, second = (jax.tree.leaves(unstack(both, i).params)[0] for i in (0, 1))
    assert not np.allclose(np.asarray(first), np.asarray(second))


def test_frames_in_host_memory_train_as_frames_on_the_device():
    """Pixel frames kept in host memory (what a dataset too large for the device gets) stay numpy,
    and host threads feed the same minibatches the device sampler draws: same keys, same
    parameters after a chunk, for two vmapped seeds."""
    tr = pixel_transitions()
    cfg = GFPConfig(**TINY, encoder="none", frame_stack=3, p_aug=0.5, aug_pad=1)
    agent = make_agent("gfp", cfg, obs_spec=ObsSpec((4, 4, 3), "uint8"), action_dim=2)
    on_device = P.frame_sampler(tr, agent.batch_keys, placement="device")
    on_host = P.frame_sampler(tr, agent.batch_keys, placement="host")
    assert isinstance(on_host, F.HostFrameSampler) and on_host.fed
    assert isinstance(on_host.arrays["frames"], np.ndarray)
    assert on_device.data["frames"].devices() == {jax.devices()[0]}
    with jax.default_matmul_precision("highest"):
        a = train(agent, on_device, init_states(agent, [1, 2]), steps=6, log_every=6,
                  progress=False)  # fmt: skip
        b = train(agent, on_host, init_states(agent, [1, 2]), steps=6, log_every=6,
                  progress=False)  # fmt: skip
    np.testing.assert_array_equal(np.asarray(a.rng), np.asarray(b.rng))
    assert_trees_close(a.params, b.params, rtol=1e-5, atol=1e-6)
    assert a.step.tolist() == b.step.tolist() == [6, 6]


def test_a_policy_trained_on_the_default_device_exports_and_runs_on_the_cpu(tmp_path):
    """A policy trained on the default device (the GPU there) is exported as StableHLO, and the
    file runs on the CPU, where a robot runs it, giving the trained actor's actions."""
    from gfp.export import export_policy, policy_function

    tr = state_transitions()
    agent = state_agent()
    states = train(agent, P.make_sampler(tr, agent.batch_keys), init_states(agent, [0]),
                   steps=4, log_every=4, progress=False)  # fmt: skip
    params = unstack(states, 0).params
    assert jax.tree.leaves(params)[0].devices() == {jax.devices()[0]}
    out = tmp_path / "actor.stablehlo"
    export_policy(agent, params, "actor", "stablehlo", out, batch=4)
    exported = jax.export.deserialize(bytearray(out.read_bytes()))
    assert "cpu" in exported.platforms, exported.platforms
    cpu = jax.devices("cpu")[0]
    rng = np.random.default_rng(2)
    obs = rng.normal(size=(4, 6)).astype(np.float32)
    z = rng.normal(size=(4, 3)).astype(np.float32)
    with jax.default_device(cpu):
        got = np.asarray(exported.call(jnp.asarray(obs), jnp.asarray(z)))
        want = np.asarray(policy_function(agent, jax.device_put(params, cpu), "actor")(obs, z))
    assert got.shape == (4, 3) and np.all(np.abs(got) <= 1.0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
