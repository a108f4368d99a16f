"""Issue 9: validation lives in the job. Every hyperparameter and job setting has a range, checked
when a Config or a TrainJob is built, whoever builds it (CLI, Python API, --resume), before
anything is compiled or written; observations keep their dtype on the way to the update."""

from __future__ import annotations

import dataclasses
import json
import sys

import jax
import numpy as np
import pytest

from gfp.agents.configs import CONFIGS, GFPConfig, ReBRACConfig, config_from_dict
from gfp.errors import ConfigError
from gfp.job import TrainJob, make_train_job

TASK = "cube-single-noisy-singletask-task1-v0"

# (flag, value, words the one-line error must contain): one case per range the issue lists.
BAD_FLAGS = [
    ("--lr", "-1", "lr = -1.0", "> 0"),
    ("--lr", "0", "lr = 0.0", "> 0"),
    ("--batch-size", "0", "batch_size = 0", ">= 1"),
    ("--flow-steps", "0", "flow_steps = 0", ">= 1"),
    ("--tau", "0", "tau = 0.0", "> 0"),
    ("--tau", "1.5", "tau = 1.5", "<= 1"),
    ("--gamma", "-0.1", "gamma = -0.1", ">= 0"),
    ("--gamma", "1.01", "gamma = 1.01", "<= 1"),
    ("--alpha", "-3", "alpha = -3.0", ">= 0"),
    ("--eta", "-1e-3", "eta = -0.001", ">= 0"),
    ("--actor-hidden-dims", "0", "actor_hidden_dims", ">= 1"),
    ("--value-hidden-dims", "64 0", "value_hidden_dims", ">= 1"),
    ("--log-every", "0", "log_every = 0", ">= 1"),
    ("--eval-every", "-1", "eval_every = -1", "between 0"),
    ("--eval-every", "999999", "eval_every = 999999", "between 0"),
    ("--checkpoint-every", "-5", "checkpoint_every = -5", "between 0"),
    ("--eval-episodes", "0", "eval_episodes = 0", ">= 1"),
    ("--steps", "0", "steps = 0", ">= 1"),
    ("--q-agg", "median", "--q-agg", "'min'"),
    ("--target-update", "sometimes", "--target-update", "'pre_step'"),
    ("--success-timing", "during", "success_timing", "post, pre"),
]


@pytest.mark.parametrize(("flag", "value", "names", "allowed"), BAD_FLAGS)
def test_every_range_is_one_line_from_the_cli(flag, value, names, allowed, tmp_path, capsys):
    from gfp import cli

    out = tmp_path / "run"
    argv = ["train", "--task", TASK, "--steps", "1000", "--out", str(out), flag, *value.split()]
    if flag == "--steps":
        argv = ["train", "--task", TASK, "--out", str(out), flag, value]
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("gfp: error: ")
    assert names in err and allowed in err, err
    assert not out.exists()  # nothing written


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("lr", -1.0, "> 0"),
        ("batch_size", 0, ">= 1"),
        ("flow_steps", 0, ">= 1"),
        ("tau", 0.0, "> 0"),
        ("tau", 2.0, "<= 1"),
        ("gamma", 1.5, "<= 1"),
        ("alpha", -1.0, ">= 0"),
        ("eta", -1e-4, ">= 0"),
        ("actor_hidden_dims", (64, 0), ">= 1"),
        ("actor_hidden_dims", (), ">= 1"),
        ("q_agg", "median", "mean, min"),
        ("guidance_fn", "exp", "softmax, advantage"),
        ("lr", float("nan"), "finite"),
        ("batch_size", 2.5, "integer"),
        ("batch_size", True, "integer"),
        ("normalize_q_loss", 1, "true or false"),
    ],
)
def test_every_range_through_the_python_api(field, value, allowed):
    with pytest.raises(ConfigError, match=field) as e:
        GFPConfig(**{field: value})
    assert allowed in str(e.value)
    # the same through the job builder (presets + overrides), as the sweep builds jobs
    with pytest.raises(ConfigError, match=field):
        make_train_job(TASK, "gfp", overrides={field: value}, steps=100, out="unused")


def test_baseline_ranges():
    with pytest.raises(ConfigError, match="actor_freq = 0"):
        ReBRACConfig(actor_freq=0)
    with pytest.raises(ConfigError, match="expectile = 1.0"):
        CONFIGS["iql"](expectile=1.0)
    assert CONFIGS["iql"](expectile=0.7).expectile == 0.7  # in range: accepted


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("log_every", 0),
        ("steps", 0),
        ("eval_every", -1),
        ("eval_every", 101),
        ("checkpoint_every", 101),
        ("eval_episodes", 0),
        ("seeds", []),
        ("seeds", [1, 1]),
        ("seeds", [-1]),
        ("seeds", [2**31]),  # int32 PRNG seeds: it would wrap around
        ("success_timing", "whenever"),
    ],
)
def test_train_job_built_in_python_is_validated(setting, value, tmp_path):
    """Today's bug: a TrainJob with log_every 0 divided by zero deep in the loop."""
    good = dict(task=TASK, agent="gfp", config=GFPConfig(), steps=100, seeds=[0], out=tmp_path)
    TrainJob(**good)  # the baseline is valid
    with pytest.raises(ConfigError, match=setting):
        TrainJob(**{**good, setting: value})


def test_train_job_needs_the_agents_config(tmp_path):
    with pytest.raises(ConfigError, match="GFPConfig"):
        TrainJob(task=TASK, agent="gfp", config=ReBRACConfig(), steps=10, seeds=[0], out=tmp_path)


def test_config_from_a_record_names_the_bad_key():
    values = json.loads(json.dumps(dataclasses.asdict(GFPConfig())))
    assert config_from_dict("gfp", values) == GFPConfig()  # lists become tuples again
    with pytest.raises(ConfigError, match="q_agg = 'median'"):
        config_from_dict("gfp", {**values, "q_agg": "median"})
    with pytest.raises(ConfigError, match="unknown gfp option.*alpah"):
        config_from_dict("gfp", {**values, "alpah": 1.0})
    missing = dict(values)
    del missing["eta"]
    with pytest.raises(ConfigError, match="missing gfp option.*eta"):
        config_from_dict("gfp", missing)
    with pytest.raises(ConfigError, match="alpha = 'ten'"):
        config_from_dict("gfp", {**values, "alpha": "ten"})


def test_cli_help_and_presets_do_not_import_jax():
    import subprocess

    code = (
        "import sys, gfp.cli, gfp.presets, gfp.job\n"
        "gfp.presets.resolve('gfp', 'cube-double-play-singletask-task2-v0', 'cpu')\n"
        "assert 'jax' not in sys.modules, 'jax imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_uint8_observations_reach_the_update_as_uint8():
    """Pixel data stays uint8 on the device and inside the jitted update (the encoder casts), so
    the device holds no float32 copy of the observations."""
    from gfp.agents import make_agent
    from gfp.agents.base import ObsSpec
    from gfp.engine.chunk import init_states
    from gfp.engine.driver import train
    from gfp.engine.placement import make_sampler

    rng = np.random.default_rng(0)
    n, shape = 64, (6, 6, 3)
    transitions = {
        "observations": rng.integers(0, 256, (n, *shape), dtype=np.uint8),
        "next_observations": rng.integers(0, 256, (n, *shape), dtype=np.uint8),
        "actions": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "masks": np.ones(n, np.float32),
        "terminals": np.zeros(n, np.float32),
    }
    config = GFPConfig(actor_hidden_dims=(8,), value_hidden_dims=(8,), batch_size=4, flow_steps=2)
    agent = make_agent("gfp", config, obs_spec=ObsSpec(shape, "uint8"), action_dim=2)
    sampler = make_sampler(transitions, agent.batch_keys)
    data = sampler.data
    images = [
        v for v in data.values() if v.ndim == 4
    ]  # the frames, stored once (gfp.engine.frames)
    assert images and all(v.dtype == np.uint8 for v in images)
    assert not any(v.dtype == np.float32 and v.ndim >= 2 and v.shape[1:] == shape for v in
                   data.values())  # fmt: skip
    assert data["actions"].dtype == np.float32

    seen: list = []
    update = agent.update

    def spy(state, batch):
        seen.append((batch["observations"].dtype, batch["next_observations"].dtype))
        return update(state, batch)

    agent.update = spy  # traced once inside the fused chunk
    states = train(agent, sampler, init_states(agent, [0]), steps=4, log_every=2, progress=False)
    assert seen and all(d == (np.uint8, np.uint8) for d in seen)
    assert int(jax.device_get(states.step)[0]) == 4


def test_a_new_agents_config_is_the_only_schema(monkeypatch):
    """Issue 9: presets (and so `gfp presets` and the CLI flags) read an agent's options from its
    Config; a new agent needs no hand-kept copy of its fields anywhere else."""
    from gfp import presets
    from gfp.agents.configs import BaseConfig, option

    @dataclasses.dataclass(frozen=True)
    class NewConfig(BaseConfig):
        beta: float = option(0.5, "A new agent's own option.", gt=0)

    monkeypatch.setattr(presets, "_configs", lambda: {**CONFIGS, "new": NewConfig})
    assert not hasattr(presets, "AGENT_FIELDS")
    config, sources = presets.resolve("new", TASK, "paper", {"beta": "2"})
    assert config.beta == 2.0 and sources["beta"] == "flag"
    assert config.gamma == 0.99  # the paper row for every agent ('*') applies to it too
    with pytest.raises(ConfigError, match="beta = -1.0 is out of range"):
        presets.resolve("new", TASK, "paper", {"beta": -1.0})
    assert "beta" in presets.format_presets("new", TASK)
