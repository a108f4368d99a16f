"""The preset table against the paper (Tab. 4, App. A, Tabs. 13-14), and the resolver's rules.

Expected values below are typed from the paper (OGBench App. A, D4RL Tab. 14a, Minari Tab. 14b,
baselines Tab. 13), not read from the table, so a wrong cell fails here. Most tests run against a
stand-in registry of frozen Config dataclasses with the agreed field names and the paper's
defaults, so they do not depend on which agents are written yet (nor import JAX); the last block
checks the real registry for whichever agents exist.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import pytest

from gfp import presets
from gfp import tasks as registry
from gfp.agents import configs
from gfp.errors import ConfigError

P512 = (512, 512, 512, 512)


# ----------------------------------------------------------------------------------------------
# Stand-in registry: the frozen field names, with paper / baseline defaults.
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Base:
    lr: float = 3e-4
    batch_size: int = 256
    gamma: float = 0.99
    tau: float = 0.005
    actor_hidden_dims: tuple[int, ...] = P512
    value_hidden_dims: tuple[int, ...] = P512
    layer_norm: bool = True
    encoder: Literal["none", "impala_small", "impala_cpu"] = "none"  # pixel tasks (Tab. 4, App. A)
    frame_stack: int = 1
    p_aug: float = 0.0


@dataclasses.dataclass(frozen=True)
class _GFP(_Base):
    alpha: float = 1.0
    eta: float = 1e-3
    flow_steps: int = 10
    q_agg: Literal["mean", "min"] = "mean"
    target_agg: Literal["actor", "mean", "vabc", "min", "max"] = "actor"
    target_use_next: bool = False
    guidance_agg: Literal["actor", "min"] = "actor"
    guidance_fn: Literal["softmax", "advantage"] = "softmax"
    guidance_critic: Literal["target", "online"] = "target"
    time_embedding: Literal["sinusoidal", "scalar"] = "sinusoidal"
    normalize_q_loss: bool = True
    horizon: int = 1  # action chunking (QC), which the qc preset sets
    action_chunking: bool = True


@dataclasses.dataclass(frozen=True)
class _FQL(_Base):
    alpha: float = 10.0
    flow_steps: int = 10
    q_agg: Literal["mean", "min"] = "mean"
    normalize_q_loss: bool = False
    time_embedding: Literal["sinusoidal", "scalar"] = "scalar"
    horizon: int = 1
    action_chunking: bool = True


@dataclasses.dataclass(frozen=True)
class _QC(_Base):  # Q-chunking's best-of-N agent (QC's get_config defaults)
    horizon: int = 5
    action_chunking: bool = True
    flow_steps: int = 10
    q_agg: Literal["mean", "min"] = "mean"
    num_samples: int = 32
    time_embedding: Literal["sinusoidal", "scalar"] = "scalar"


@dataclasses.dataclass(frozen=True)
class _ReBRAC(_Base):
    alpha_actor: float = 0.1
    alpha_critic: float = 0.1
    actor_freq: int = 2
    actor_noise: float = 0.2
    actor_noise_clip: float = 0.5
    q_agg: Literal["mean", "min"] = "min"  # ReBRAC's own default; the table must switch it


@dataclasses.dataclass(frozen=True)
class _IQL(_Base):
    alpha: float = 10.0
    expectile: float = 0.9


def _agent(config: type) -> type:
    return type(f"Agent{config.__name__}", (), {"Config": config})


FAKE = {
    "gfp": _agent(_GFP),
    "fql": _agent(_FQL),
    "rebrac": _agent(_ReBRAC),
    "iql": _agent(_IQL),
    "bc": _agent(_Base),
    "flow_bc": _agent(_Base),
    "qc": _agent(_QC),
}


@pytest.fixture(autouse=True)
def fake_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The table is checked against these hand-written mirrors of the paper's defaults, so that a
    wrong default in gfp/agents/configs.py cannot hide a wrong table value (and vice versa)."""
    monkeypatch.setattr(presets, "_configs", lambda: {k: v.Config for k, v in FAKE.items()})


def cfg(agent: str, task: str | None, preset: str = "paper", **overrides: Any) -> Any:
    return presets.resolve(agent, task, preset, overrides)[0]


def src(agent: str, task: str | None, preset: str = "paper", **overrides: Any) -> dict[str, str]:
    return presets.resolve(agent, task, preset, overrides)[1]


def ogb(env: str, i: int = 3) -> str:
    return f"{env}-singletask-task{i}-v0"


# ----------------------------------------------------------------------------------------------
# GFP, OGBench (App. A): gamma, B, alpha, eta, q_agg, target_agg, guidance_agg (+ M)
# ----------------------------------------------------------------------------------------------
GFP_OGBENCH = {
    # locomotion: antmaze uses min/min; humanoidmaze-large uses M = 30 and GFP-only B 1024
    "antmaze-large-explore": (0.995, 1024, 0.01, 1e-6, "min", "actor", "min"),
    "antmaze-giant-navigate": (0.995, 1024, 0.1, 0.1, "min", "actor", "min"),
    "humanoidmaze-medium-stitch": (0.999, 256, 0.3, 1e-3, "mean", "mean", "min"),
    "humanoidmaze-large-navigate": (0.999, 1024, 0.3, 1e-4, "mean", "actor", "min"),
    "antsoccer-arena-navigate": (0.995, 256, 0.1, 1e-2, "mean", "actor", "min"),
    # manipulation
    "cube-single-noisy": (0.99, 256, 10.0, 1e-3, "mean", "mean", "actor"),
    "cube-double-noisy": (0.99, 256, 0.1, 1e-4, "mean", "mean", "actor"),
    "cube-triple-play": (0.99, 1024, 1.0, 1e-5, "mean", "mean", "actor"),
    "puzzle-4x4-play": (0.99, 256, 3.0, 1e-5, "mean", "actor", "actor"),
    "scene-noisy": (0.99, 256, 1.0, 1e-4, "mean", "actor", "actor"),
    # pixel (task1)
    "visual-cube-double-play": (0.99, 256, 0.3, 1e-2, "mean", "mean", "actor"),
    "visual-puzzle-3x3-play": (0.99, 256, 3.0, 1e-2, "mean", "actor", "actor"),
    "visual-puzzle-4x4-play": (0.99, 256, 1.0, 1e-4, "mean", "actor", "actor"),
}


@pytest.mark.parametrize("env", sorted(GFP_OGBENCH))
def test_gfp_ogbench_values(env: str) -> None:
    gamma, batch, alpha, eta, q_agg, target_agg, guidance_agg = GFP_OGBENCH[env]
    task = ogb(env, 1 if env.startswith("visual-") else 4)
    c = cfg("gfp", task)
    got = (c.gamma, c.batch_size, c.alpha, c.eta, c.q_agg, c.target_agg, c.guidance_agg)
    assert got == (gamma, batch, alpha, eta, q_agg, target_agg, guidance_agg)
    assert c.flow_steps == (30 if env == "humanoidmaze-large-navigate" else 10)
    # Nothing the paper leaves at its default is touched.
    assert (c.lr, c.tau, c.actor_hidden_dims, c.guidance_fn, c.target_use_next) == (
        3e-4,
        0.005,
        P512,
        "softmax",
        False,
    )


def test_brief_example_cube_double_noisy_task2() -> None:
    c, s = presets.resolve("gfp", "cube-double-noisy-singletask-task2-v0")
    assert (c.alpha, c.eta, c.target_agg) == (0.1, 1e-4, "mean")
    assert s["alpha"] == "paper Tab. 13" and s["eta"] == "paper Tab. 13"
    assert s["target_agg"] == "authors code gfp_params.csv"
    assert s["lr"] == "default (paper Tab. 4)" and s["flow_steps"] == "default (paper Tab. 4)"
    assert s["gamma"] == "paper Tab. 5"


def test_every_paper_env_has_its_gfp_rows() -> None:
    rows = [r for r in presets.load_table() if r.preset == "paper" and r.agent == "gfp"]
    keys: dict[str, set[str]] = {}
    for r in rows:
        keys.setdefault(r.tasks, set()).add(r.key)
    og = {"gamma", "batch_size", "alpha", "eta", "q_agg", "target_agg", "guidance_agg"}
    for env in registry.OGBENCH_ENVS + registry.OGBENCH_PIXEL_ENVS:
        extra = {"flow_steps"} if env == "humanoidmaze-large-navigate" else set()
        assert keys[env] == og | extra, env
    for env in registry.D4RL_ENVS:
        assert keys[env] == {"alpha", "eta", "q_agg"}, env
    for env in registry.MINARI_ENVS:
        assert keys[env] == {"alpha", "eta", "batch_size"}, env
    assert set(keys) == {e for envs in registry.PAPER_ENVS.values() for e in envs}


def test_paper_task_list() -> None:
    tasks = registry.PAPER_TASKS
    assert len(tasks) == len(set(tasks)) == 144  # 105 OGBench + 18 D4RL + 21 Minari
    assert "visual-scene-play-singletask-task1-v0" in tasks
    assert "visual-scene-play-singletask-task2-v0" not in tasks
    assert {"antmaze-umaze-diverse-v2", "relocate-expert-v1", "D4RL/door/cloned-v2"} <= set(tasks)
    assert "mujoco/walker2d/medium-v0" in tasks
    # Every paper task lands on an environment that has GFP rows.
    selectors = {r.tasks for r in presets.load_table() if r.agent == "gfp"}
    assert {registry.task_env(t) for t in tasks} <= selectors


# ----------------------------------------------------------------------------------------------
# D4RL (3.3) and Minari (3.4)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "task, alpha, eta, q_agg",
    [
        ("antmaze-umaze-diverse-v2", 0.1, 1e-3, "min"),
        ("antmaze-medium-play-v2", 0.03, 1e-3, "min"),
        ("antmaze-large-play-v2", 0.03, 1e-5, "min"),
        ("pen-human-v1", 3.0, 1e-4, "mean"),
        ("pen-expert-v1", 1.0, 1e-3, "mean"),
        ("hammer-cloned-v1", 10.0, 1e-5, "mean"),
        ("hammer-expert-v1", 10.0, 1e-2, "mean"),
        ("relocate-human-v1", 10.0, 1e-4, "mean"),
    ],
)
def test_gfp_d4rl(task: str, alpha: float, eta: float, q_agg: str) -> None:
    c = cfg("gfp", task)
    assert (c.alpha, c.eta, c.q_agg) == (alpha, eta, q_agg)
    # D4RL keeps the shared defaults: gamma 0.99, B 256, M 10, actor target and guidance.
    assert (c.gamma, c.batch_size, c.flow_steps, c.target_agg, c.guidance_agg) == (
        0.99,
        256,
        10,
        "actor",
        "actor",
    )


@pytest.mark.parametrize(
    "task, alpha, eta, batch, fql_alpha",
    [
        ("D4RL/pen/human-v2", 3.0, 1e-6, 256, 1e4),
        ("D4RL/door/human-v2", 0.01, 1e-2, 256, 3e4),
        ("D4RL/relocate/human-v2", 3.0, 1e-5, 256, 3e3),
        ("mujoco/halfcheetah/simple-v0", 0.03, 1e-6, 1024, 1e2),
        ("mujoco/hopper/medium-v0", 3.0, 1e-3, 1024, 3e2),
        ("mujoco/walker2d/simple-v0", 3.0, 1e-1, 1024, 1e3),
    ],
)
def test_minari_gfp_and_fql(
    task: str, alpha: float, eta: float, batch: int, fql_alpha: float
) -> None:
    c = cfg("gfp", task)
    assert (c.alpha, c.eta, c.batch_size, c.gamma, c.q_agg) == (alpha, eta, batch, 0.99, "mean")
    f = cfg("fql", task)
    assert f.alpha == fql_alpha and f.normalize_q_loss is False
    assert src("fql", task)["alpha"] == "paper Tab. 14b"


# ----------------------------------------------------------------------------------------------
# Baselines (3.5 / Tab. 13, Tab. 5 gamma for every method, Tab. 3 settings)
# ----------------------------------------------------------------------------------------------
def test_fql_exceptions() -> None:
    hl = cfg("fql", ogb("humanoidmaze-large-navigate"))
    assert (hl.alpha, hl.gamma, hl.flow_steps, hl.batch_size) == (100.0, 0.999, 30, 256)
    st = cfg("fql", ogb("antmaze-large-stitch"))
    assert (st.alpha, st.gamma) == (3.0, 0.99)  # Tab. 5 footnote: FQL keeps 0.99 here...
    assert "FQL keeps 0.99" in presets._resolve("fql", ogb("antmaze-large-stitch")).notes["gamma"]
    for agent in ("gfp", "rebrac", "iql"):  # ... and every other method uses 0.995
        assert cfg(agent, ogb("antmaze-large-stitch")).gamma == 0.995, agent
    assert (
        cfg("fql", ogb("cube-triple-play")).alpha,
        cfg("fql", ogb("cube-triple-play")).batch_size,
    ) == (
        300.0,
        1024,
    )
    assert cfg("fql", ogb("antmaze-giant-navigate")).batch_size == 1024
    assert cfg("fql", ogb("puzzle-4x4-noisy")).alpha == 300.0


def test_rebrac_and_iql_values() -> None:
    ex = cfg("rebrac", ogb("antmaze-large-explore"))
    assert (ex.alpha_actor, ex.alpha_critic, ex.q_agg, ex.gamma) == (1e-3, 1e-1, "min", 0.995)
    sn = cfg("rebrac", ogb("scene-noisy"))
    assert (sn.alpha_actor, sn.alpha_critic, sn.q_agg) == (3e-3, 0.0, "mean")
    # ReBRAC with FQL's critic aggregation (Tab. 3) on humanoidmaze / antsoccer.
    assert cfg("rebrac", ogb("humanoidmaze-medium-navigate")).q_agg == "mean"
    assert cfg("rebrac", ogb("antsoccer-arena-navigate")).alpha_critic == 0.0
    assert cfg("rebrac", ogb("antmaze-giant-navigate")).batch_size == 1024  # bigger batch, Tab. 3
    assert cfg("rebrac", ogb("humanoidmaze-large-navigate")).batch_size == 256  # 1024 is GFP-only
    assert cfg("iql", ogb("cube-double-noisy")).alpha == 0.3
    assert cfg("iql", ogb("puzzle-4x4-noisy")).alpha == 1.0
    assert cfg("iql", ogb("humanoidmaze-medium-stitch")).gamma == 0.999


def test_dash_entries_are_not_invented() -> None:
    # Tab. 13 gives '-' here: the table must not carry a value, so the agent default stays.
    assert cfg("fql", ogb("cube-single-play")).alpha == _FQL.alpha
    assert cfg("rebrac", ogb("puzzle-3x3-play")).alpha_actor == _ReBRAC.alpha_actor
    assert cfg("iql", ogb("antmaze-giant-navigate")).alpha == _IQL.alpha
    assert src("fql", ogb("cube-single-play"))["alpha"] == "default (fql Config)"
    # ... but Tab. 5's gamma applies to every method.
    assert cfg("iql", ogb("antmaze-giant-navigate")).gamma == 0.995


# ----------------------------------------------------------------------------------------------
# Paper vs the authors' code: the code value wins, the note keeps the paper's.
# ----------------------------------------------------------------------------------------------
def test_antmaze_large_stitch_alpha_is_the_code_value() -> None:
    r = presets._resolve("gfp", ogb("antmaze-large-stitch"))
    assert r.config.alpha == 0.3
    assert r.sources["alpha"] == "authors code gfp_params.csv"
    assert "0.03" in r.notes["alpha"]


@pytest.mark.parametrize("agent", ["gfp", "fql", "rebrac", "iql"])
@pytest.mark.parametrize("env", ["antsoccer-arena-navigate", "antsoccer-arena-stitch"])
def test_antsoccer_gamma_is_the_code_value(agent: str, env: str) -> None:
    r = presets._resolve(agent, ogb(env))
    assert r.config.gamma == 0.995
    assert "Tab. 5 gives 0.99" in r.notes["gamma"]
    assert r.sources["gamma"] != "paper Tab. 5"


def test_fql_antmaze_large_navigate_alpha_is_the_code_value() -> None:
    r = presets._resolve("fql", ogb("antmaze-large-navigate"))
    assert r.config.alpha == 30.0
    assert r.sources["alpha"] == "authors code fql_params.csv"
    assert "gives 10" in r.notes["alpha"]
    out = presets.format_presets("fql", ogb("antmaze-large-navigate"))
    assert "paper Tab. 13 gives 10" in out


# ----------------------------------------------------------------------------------------------
# Matching
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "task, env",
    [
        ("cube-double-noisy-singletask-task2-v0", "cube-double-noisy"),
        ("cube-double-noisy-singletask-v0", "cube-double-noisy"),
        ("cube-double-noisy-v0", "cube-double-noisy"),
        ("cube-double-noisy", "cube-double-noisy"),
        ("visual-cube-single-play-singletask-task1-v0", "visual-cube-single-play"),
        ("antmaze-large-play-v2", "antmaze-large-play"),
        ("antmaze-large-navigate-singletask-task1-v0", "antmaze-large-navigate"),
        ("pen-human-v1", "pen-human"),
        ("D4RL/pen/human-v2", "D4RL/pen/human"),
        ("mujoco/hopper/simple-v0", "mujoco/hopper/simple"),
    ],
)
def test_task_env(task: str, env: str) -> None:
    assert registry.task_env(task) == env


def test_state_and_pixel_rows_do_not_mix() -> None:
    state, pixel = cfg("gfp", ogb("puzzle-4x4-play")), cfg("gfp", ogb("visual-puzzle-4x4-play", 1))
    assert (state.alpha, state.eta) == (3.0, 1e-5)
    assert (pixel.alpha, pixel.eta) == (1.0, 1e-4)
    assert cfg("gfp", ogb("puzzle-3x3-play")).eta == 1e-3
    assert cfg("gfp", ogb("visual-puzzle-3x3-play", 1)).eta == 1e-2


def test_ogbench_and_d4rl_antmaze_do_not_mix() -> None:
    og = cfg("gfp", ogb("antmaze-large-navigate"))
    d4 = cfg("gfp", "antmaze-large-play-v2")
    assert (og.alpha, og.eta, og.gamma, og.guidance_agg) == (0.3, 1e-4, 0.995, "min")
    assert (d4.alpha, d4.eta, d4.gamma, d4.guidance_agg) == (0.03, 1e-5, 0.99, "actor")
    # D4RL Adroit vs Minari Adroit: same hand/quality, different table rows.
    assert cfg("gfp", "pen-human-v1").eta == 1e-4
    assert cfg("gfp", "D4RL/pen/human-v2").eta == 1e-6


@pytest.mark.parametrize(
    "task", ["pointmaze-medium-navigate-singletask-v0", "antmaze-large", "cube-double", "pen"]
)
def test_unknown_or_partial_names_match_nothing(task: str) -> None:
    c, s = presets.resolve("gfp", task)
    assert c == _GFP()
    assert set(s.values()) == {"default (paper Tab. 4)"}
    assert "not one of the paper's 144 tasks" in presets.format_presets("gfp", task)


# ----------------------------------------------------------------------------------------------
# Presets and overrides
# ----------------------------------------------------------------------------------------------
def test_cpu_keeps_the_per_task_algorithm_values() -> None:
    c, s = presets.resolve("gfp", "cube-double-noisy-singletask-task2-v0", "cpu")
    assert (c.alpha, c.eta, c.target_agg, c.gamma) == (0.1, 1e-4, "mean", 0.99)
    assert c.actor_hidden_dims == c.value_hidden_dims == (128, 128) and c.batch_size == 256
    assert "cpu preset" in s["actor_hidden_dims"] and s["alpha"] == "paper Tab. 13"
    assert (
        "replaces"
        not in presets._resolve("gfp", ogb("cube-double-noisy"), "cpu").notes["batch_size"]
    )
    # The cpu batch replaces a paper batch of 1024; the note says so.
    r = presets._resolve("gfp", ogb("cube-triple-play"), "cpu")
    assert (r.config.batch_size, r.config.eta) == (256, 1e-5)
    assert "1024" in r.notes["batch_size"]
    # Every agent gets the cpu networks on top of its own per-task values.
    ex = cfg("rebrac", ogb("antmaze-large-explore"), "cpu")
    assert (ex.alpha_actor, ex.actor_hidden_dims, ex.value_hidden_dims) == (
        1e-3,
        (128, 128),
        (128, 128),
    )
    assert cfg("bc", None, "cpu").actor_hidden_dims == (128, 128)
    # ... and the paper preset is untouched by it.
    assert cfg("gfp", "cube-double-noisy-singletask-task2-v0").actor_hidden_dims == P512


def test_awr_preset() -> None:
    c, s = presets.resolve("gfp", ogb("cube-triple-noisy"), "awr")
    assert (c.alpha, c.eta, c.guidance_fn, c.target_agg) == (3e-2, 1.0, "advantage", "mean")
    assert s["alpha"] == "paper Tab. 13 (GFP-AWR)"
    hl = cfg("gfp", ogb("humanoidmaze-large-navigate"), "awr")
    # y_VaBC for AWR on humanoidmaze (paper), while M = 30 and gamma stay from the paper rows.
    assert (hl.alpha, hl.eta, hl.target_agg, hl.flow_steps, hl.gamma) == (
        0.3,
        0.1,
        "mean",
        30,
        0.999,
    )
    ps = cfg("gfp", ogb("puzzle-3x3-play"), "awr")
    assert (ps.alpha, ps.eta, ps.target_agg) == (3.0, 1.0, "mean")
    st = cfg("gfp", ogb("antmaze-large-stitch"), "awr")
    assert (st.alpha, st.eta, st.target_agg, st.q_agg) == (0.1, 0.3, "actor", "min")
    with pytest.raises(ConfigError, match="does not apply to agent 'fql'.*gfp"):
        presets.resolve("fql", ogb("cube-triple-noisy"), "awr")


def test_overrides_win_and_are_marked_flag() -> None:
    task = "cube-double-noisy-singletask-task2-v0"
    c, s = presets.resolve(
        "gfp",
        task,
        "cpu",
        {
            "alpha": "3",
            "batch_size": 512,
            "value_hidden_dims": "64x64x64",
            "target_use_next": "true",
            "eta": None,
        },
    )
    assert c.alpha == 3.0 and isinstance(c.alpha, float)
    assert (c.batch_size, c.value_hidden_dims, c.target_use_next) == (512, (64, 64, 64), True)
    assert s["alpha"] == s["batch_size"] == s["value_hidden_dims"] == s["target_use_next"] == "flag"
    assert (c.eta, s["eta"]) == (1e-4, "paper Tab. 13")  # None = flag not given
    assert c.actor_hidden_dims == (128, 128)  # the rest of the cpu preset still applies
    assert cfg("gfp", task, actor_hidden_dims=[128, 128]).actor_hidden_dims == (128, 128)
    assert cfg("gfp", task, actor_hidden_dims="(32, 16)").actor_hidden_dims == (32, 16)
    r = presets._resolve("gfp", task, "paper", {"alpha": 2})
    assert "0.1 (paper Tab. 13)" in r.notes["alpha"]


def test_errors_list_the_choices() -> None:
    with pytest.raises(ConfigError, match="unknown option.*alfa.*valid: .*alpha.*eta"):
        presets.resolve("gfp", None, overrides={"alfa": 1.0})
    with pytest.raises(
        ConfigError, match="unknown agent 'gpf'.*gfp, fql, rebrac, iql, bc, flow_bc"
    ):
        presets.resolve("gpf", None)
    with pytest.raises(ConfigError, match="unknown preset 'gpu'.*paper, cpu, awr"):
        presets.resolve("gfp", None, "gpu")
    with pytest.raises(ConfigError, match="q_agg.*one of mean, min"):
        presets.resolve("gfp", None, overrides={"q_agg": "avg"})
    with pytest.raises(ConfigError, match="alpha.*float"):
        presets.resolve("gfp", None, overrides={"alpha": "big"})
    with pytest.raises(ConfigError, match="batch_size.*int"):
        presets.resolve("gfp", None, overrides={"batch_size": 1.5})
    with pytest.raises(ConfigError, match="alpha_actor"):  # an fql-only call cannot set ReBRAC's
        presets.resolve("fql", None, overrides={"alpha_actor": 0.1})


def test_unknown_agent_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presets, "_configs", lambda: {"gfp": _GFP})
    with pytest.raises(ConfigError, match="unknown agent 'iql'.*choices: gfp"):
        presets.resolve("iql", None)


# ----------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------
def test_format_presets() -> None:
    out = presets.format_presets("gfp", ogb("antmaze-large-stitch"))
    lines = out.splitlines()
    assert "environment antmaze-large-stitch" in lines[1]
    assert lines[2].split() == ["field", "value", "source", "note"]
    body = {ln.split()[0]: ln for ln in lines[3:]}
    assert set(body) == {f.name for f in dataclasses.fields(_GFP)}
    assert body["alpha"].split()[1] == "0.3" and "gives 0.03" in body["alpha"]
    assert body["eta"].split()[1] == "1e-06" and "paper Tab. 13" in body["eta"]
    assert body["actor_hidden_dims"].split()[1] == "512x512x512x512"
    assert body["normalize_q_loss"].split()[1] == "true"
    # fql has a Tab. 5 gamma row on cube-single-play (its alpha is '-'); bc has no rows at all.
    assert presets.format_presets("fql", ogb("cube-single-play")).splitlines()[1] == (
        "environment cube-single-play"
    )
    assert "gives no bc values" in presets.format_presets("bc", ogb("cube-single-play"))
    assert "no task given" in presets.format_presets("gfp", None, "cpu")


# ----------------------------------------------------------------------------------------------
# Table validation: a bad row fails loudly, naming its line.
# ----------------------------------------------------------------------------------------------
HEADER = "preset,agent,tasks,key,value,source,note\n"
GOOD = "paper,gfp,cube-double-noisy,alpha,0.1,paper Tab. 13,\n"


@pytest.mark.parametrize(
    "bad, message",
    [
        ("paper,gfp,cube-double-noisy,alfa,0.1,paper Tab. 13,\n", "line 3: 'alfa' is not a field"),
        ("paper,gfp,cube-double-noisy,eta,1e-4x,paper Tab. 13,\n", "line 3: bad value for eta"),
        ("paper,gfp,cube-double-noisy,q_agg,avg,paper Tab. 13,\n", "line 3: bad value for q_agg"),
        ("paper,gfp,cube-double-noisy,batch_size,1e3,paper Tab. 5,\n", "line 3: bad value"),
        ("paper,gpf,cube-double-noisy,eta,1e-4,paper Tab. 13,\n", "line 3: unknown agent 'gpf'"),
        ("papr,gfp,cube-double-noisy,eta,1e-4,paper Tab. 13,\n", "line 3: unknown preset"),
        (
            "paper,gfp,cube-double-noisy-singletask-task2-v0,eta,1e-4,x,\n",
            "did you mean 'cube-double",
        ),
        (
            "paper,gfp,cube-dobule-noisy,eta,1e-4,paper Tab. 13,\n",
            "line 3: tasks 'cube-dobule-noisy'",
        ),
        ("paper,gfp,cube-double-noisy,eta,1e-4,,\n", "line 3: empty source"),
        ("paper,gfp,cube-double-noisy,alpha,0.2,paper Tab. 13,\n", "line 3: duplicates line 2"),
        ("cpu,*,*,alpha,0.2,gfp cpu preset,\n", "line 3: 'alpha' is not a field of every agent"),
        ("paper,gfp,cube-double-noisy,eta,1e-4\n", "line 3: expected 7 cells"),
    ],
)
def test_bad_rows_are_rejected(tmp_path: Any, bad: str, message: str) -> None:
    path = tmp_path / "presets.csv"
    path.write_text(HEADER + GOOD + bad)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        presets.load_table(path)


def test_good_table_and_bad_header(tmp_path: Any) -> None:
    path = tmp_path / "ok.csv"
    path.write_text(HEADER + GOOD + '\ncpu,*,*,actor_hidden_dims,"(64,64)",gfp cpu preset,\n')
    rows = presets.load_table(path)
    assert [(r.key, r.value, r.line) for r in rows] == [
        ("alpha", 0.1, 2),
        ("actor_hidden_dims", (64, 64), 4),
    ]
    path = tmp_path / "bad.csv"
    path.write_text("preset,agent,task,key,value,source,note\n" + GOOD)
    with pytest.raises(ConfigError, match="line 1: header"):
        presets.load_table(path)


def test_specific_rows_beat_star_rows_whatever_the_file_order(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "presets.csv"
    path.write_text(
        HEADER
        + "paper,gfp,cube-triple-play,batch_size,1024,paper Tab. 5,\n"
        + "cpu,gfp,cube-triple-play,batch_size,512,tuned,\n"  # specific row first in the file
        + "cpu,*,cube-triple-play,batch_size,384,any agent,\n"
        + "cpu,*,*,batch_size,256,gfp cpu preset,\n"
        + "cpu,*,cube-triple-noisy,batch_size,640,task row,\n"
        + "cpu,gfp,*,batch_size,300,agent row,\n"
    )
    monkeypatch.setattr(presets, "load_table", lambda: presets._load_table(str(path)))
    c, s = presets.resolve("gfp", ogb("cube-triple-play"), "cpu")
    assert (c.batch_size, s["batch_size"]) == (512, "tuned")
    assert cfg("iql", ogb("cube-triple-play"), "cpu").batch_size == 384
    assert cfg("iql", ogb("cube-triple-noisy"), "cpu").batch_size == 640
    assert cfg("iql", ogb("scene-play"), "cpu").batch_size == 256
    assert cfg("gfp", ogb("scene-play"), "cpu").batch_size == 300
    # A task-specific row beats an agent-specific one: the task rows are the finer setting.
    assert cfg("gfp", ogb("cube-triple-noisy"), "cpu").batch_size == 640
    assert cfg("gfp", ogb("cube-triple-play")).batch_size == 1024


# ----------------------------------------------------------------------------------------------
# The real registry, for the agents that exist: field names and types agree with the table
# schema, the defaults are the paper's, and every paper task resolves.
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def real_agents(monkeypatch: pytest.MonkeyPatch) -> dict[str, type]:
    """The real Config classes (gfp/agents/configs.py), name -> Config."""
    from gfp.agents.configs import CONFIGS

    monkeypatch.setattr(presets, "_configs", lambda: CONFIGS)
    return dict(CONFIGS)


def _same_kind(a: Any, b: Any) -> bool:
    # Choice lists compare as sets: the order of a Literal's words carries no meaning.
    if isinstance(a, tuple) and isinstance(b, tuple):
        return set(a) == set(b)
    return a == b


def test_real_configs_match_the_mirrors(real_agents: dict[str, type]) -> None:
    """Every option of the mirrors exists in the real Config with the same kind, and the real
    defaults are the paper's (Tab. 4; GFP's own defaults in full)."""
    for name, config in real_agents.items():
        kinds = configs.field_kinds(config)
        for key, kind in configs.field_kinds(FAKE[name].Config).items():
            assert key in kinds, f"{name} Config lacks {key}"
            assert _same_kind(kinds[key], kind), f"{name}.{key}: {kinds[key]} vs mirror {kind}"
        default = config()
        for key in configs.field_kinds(_Base):  # the paper's shared defaults (Tab. 4)
            assert getattr(default, key) == getattr(_Base(), key), f"{name}.{key}"
        if name == "gfp":
            assert default == dataclasses.replace(default, **dataclasses.asdict(_GFP()))


def test_real_registry_resolves_every_paper_task(real_agents: dict[str, type]) -> None:
    for name in real_agents:
        for task in registry.PAPER_TASKS:
            for preset in ("paper", "cpu"):
                presets.resolve(name, task, preset)
    if "gfp" in real_agents:
        c = cfg("gfp", "cube-double-noisy-singletask-task2-v0")
        assert (c.alpha, c.eta, c.target_agg) == (0.1, 1e-4, "mean")
        assert type(c) is real_agents["gfp"]
