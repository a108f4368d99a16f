"""Every agent's hyperparameters: one frozen dataclass per agent, the only schema of its options.

The presets table (gfp/presets.csv), the `gfp train` flags, `gfp presets` and the sweep's grids all
read the fields, types, defaults, help texts and ranges from here. This module imports no JAX, so
the command line can build its help and validate a configuration without loading the agents.

Each field is declared with `option(default, help, ...)`; numeric fields carry their allowed range
(`gt`, `ge`, `le`, `lt`). A Config checks itself when it is built (`__post_init__`): a value of the
wrong type, out of its range, or not one of a Literal's choices raises ConfigError naming the field,
the value and what is allowed. So a configuration from the CLI, the Python API, a resumed run's
config.json or a sweep's grid goes through the same checks.

The values section below is the one parse / coerce / check path of every option, agent
hyperparameters and run settings (gfp/settings.py, declared with the same `option`) alike: the
presets table, flags, sweep grids and TOML specs, and config.json records all go through it.

Adding an agent: its Config here (subclass BaseConfig), its file in gfp/agents/, one line in
`AGENT_CLASSES` below.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from gfp.errors import ConfigError


def option(
    default: Any,
    help: str,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    **meta: Any,
) -> Any:
    """A config field with its documentation (shown by `gfp train --help` and `gfp presets`) and,
    for numbers, its allowed range. `meta`: more of the field's metadata (gfp/settings.py's run
    settings say there how they are recorded). `default` dataclasses.MISSING: a required field."""
    bounds = {k: v for k, v in (("gt", gt), ("ge", ge), ("lt", lt), ("le", le)) if v is not None}
    return dataclasses.field(default=default, metadata={"help": help, "bounds": bounds, **meta})


_RELATIONS = {
    "gt": (">", lambda x, b: x > b),
    "ge": (">=", lambda x, b: x >= b),
    "lt": ("<", lambda x, b: x < b),
    "le": ("<=", lambda x, b: x <= b),
}


def describe_bounds(bounds: dict[str, float]) -> str:
    """'> 0 and <= 1' for {'gt': 0, 'le': 1}."""
    return " and ".join(f"{_RELATIONS[k][0]} {v:g}" for k, v in bounds.items())


def require(ok: bool, message: str) -> None:
    """ConfigError(message) unless `ok`: a check of a job or a setting written as one line."""
    if not ok:
        raise ConfigError(message)


def is_int(x: Any) -> bool:
    """An integer, and not a bool (which Python counts as one)."""
    return isinstance(x, int) and not isinstance(x, bool)


# ---- values: one parse / coerce / check path for every option --------------------------------
# Agent hyperparameters and run settings (gfp/settings.py) alike: a field's annotation gives its
# kind, which says how a text (a presets.csv cell, a --grid value, a flag) is parsed and which
# values are valid. A kind is float / int / bool / str / Path, "dims" (a tuple of sizes), a tuple of
# allowed words (a Literal), or None (anything; not checked).
Kind = type | str | tuple[str, ...] | None
_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0"}


def kind_of(hint: Any) -> Kind:
    """The kind of an annotation; `X | None` has X's kind (None itself is checked by
    `check_value`)."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return tuple(str(a) for a in typing.get_args(hint))
    if origin is tuple:
        return "dims"
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return kind_of(args[0]) if len(args) == 1 else None
    return hint if hint in (float, int, bool, str, Path) else None


def allows_none(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in (
        typing.get_args(hint)
    )


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """Field name -> its resolved annotation (Literal[...], tuple[int, ...], float, ...)."""
    return typing.get_type_hints(cls)


def field_kinds(cls: type) -> dict[str, Kind]:
    """Field name -> kind, from the dataclass's own annotations."""
    hints = field_types(cls)
    return {f.name: kind_of(hints.get(f.name)) for f in dataclasses.fields(cls)}


def describe_kind(kind: Kind) -> str:
    if isinstance(kind, tuple):
        return "one of " + ", ".join(kind)
    if kind == "dims":
        return "hidden sizes like 256x256, each >= 1"
    if kind is Path:
        return "a path"
    return getattr(kind, "__name__", "any value")


def kind_problem(value: Any, kind: Kind) -> str | None:
    """What is wrong with a (normalized) value of `kind`, or None: the one type check."""
    if isinstance(kind, tuple):
        return None if value in kind else f"must be one of {', '.join(kind)}"
    if kind == "dims":
        ok = isinstance(value, tuple) and value and all(is_int(v) and v >= 1 for v in value)
        return None if ok else "must be a non-empty list of sizes, each >= 1 (e.g. 256x256)"
    if kind is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if kind is int:
        return None if is_int(value) else "must be an integer"
    if kind is float:
        ok = (is_int(value) or isinstance(value, float)) and math.isfinite(value)
        return None if ok else "must be a finite number"
    if kind is str:
        return None if isinstance(value, str) else "must be a string"
    if kind is Path:
        return None if isinstance(value, str | os.PathLike) else "must be a path"
    return None


def normalize(value: Any, kind: Kind) -> Any:
    """The lossless conversions to a field's type, else `value` unchanged (for the check to judge):
    a list of sizes to a tuple, an integer to a float, a text to a Path ('' is no path, as
    config.json records read it)."""
    if kind == "dims" and isinstance(value, list):
        return tuple(value)
    if kind is float and is_int(value):
        return float(value)
    if kind is Path and isinstance(value, str | os.PathLike):
        return Path(value) if str(value) else None
    return value


def parse_value(text: str, kind: Kind) -> Any:
    """Parse a text (a presets.csv cell, a flag or --grid value) as `kind`; ValueError saying what
    was expected otherwise. Floats `0.3`, `1e-4`; ints `256`; bools `true`/`false`; sizes `256x256`
    (also `(256, 256)`, `256,256`); choices as the bare word."""
    s = text.strip()
    if kind is bool:
        if s.lower() in _TRUE:
            return True
        if s.lower() in _FALSE:
            return False
    elif kind is int:
        if re.fullmatch(r"[+-]?\d+", s):
            return int(s)
    elif kind is float:
        try:
            x = float(s)
        except ValueError:
            pass
        else:
            if math.isfinite(x):
                return x
    elif kind == "dims":
        parts = [p for p in re.split(r"[x,]", s.strip("()[] ")) if p.strip()]
        if parts and all(re.fullmatch(r"\d+", p.strip()) and int(p) > 0 for p in parts):
            return tuple(int(p) for p in parts)
    elif isinstance(kind, tuple):
        if s in kind:
            return s
    elif kind is Path:
        return normalize(s, Path)
    else:  # str or an unchecked kind: keep the text
        return s
    raise ValueError(f"{text!r} is not {describe_kind(kind)}")


def coerce(value: Any, kind: Kind) -> Any:
    """A value given loosely (a text, parsed; or a Python object) as `kind`: normalized and type
    checked, ValueError naming what was expected otherwise. Ranges are the Config's to check."""
    if isinstance(value, str) and kind not in (str, None):
        return parse_value(value, kind)
    value = normalize(value, kind)
    if kind_problem(value, kind) is not None:
        raise ValueError(f"{value!r} is not {describe_kind(kind)}")
    return value


def format_value(value: Any) -> str:
    """Display form, the syntax `parse_value` reads (so it can be pasted back as a flag)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
        return "x".join(str(v) for v in value)
    return str(value)


def check_value(name: str, value: Any, hint: Any, meta: Mapping[str, Any]) -> None:
    """Raise ConfigError if `value` is not a valid `name` (annotation `hint`, field metadata `meta`
    with its bounds): the one type, choice and range check of every option."""
    if value is None and allows_none(hint):
        return
    kind = kind_of(hint)
    problem = kind_problem(value, kind)
    bounds = meta.get("bounds", {})
    numeric = problem is None and kind in (int, float)
    if numeric and not all(_RELATIONS[k][1](value, b) for k, b in bounds.items()):
        # run settings say "must be >= 1", agent options "is out of range (must be >= 1)":
        # both as the messages users have seen
        problem = f"must be {describe_bounds(bounds)}"
        if not meta.get("plain_range"):
            problem = f"is out of range ({problem})"
        if meta.get("note"):
            problem += f" ({meta['note']})"
    if problem is not None:
        raise ConfigError(f"{name} = {value!r} {problem}")


def check_field(cls: type, name: str, value: Any) -> None:
    """Raise ConfigError if `value` is not a valid `name` of config class `cls`."""
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    check_value(name, value, field_types(cls)[name], field.metadata)


def check_fields(obj: Any) -> None:
    """Normalize and check every field of a frozen dataclass, in order (its `__post_init__`)."""
    cls = type(obj)
    kinds = field_kinds(cls)
    for f in dataclasses.fields(obj):
        value = normalize(getattr(obj, f.name), kinds[f.name])
        object.__setattr__(obj, f.name, value)
        check_field(cls, f.name, value)


@dataclasses.dataclass(frozen=True)
class BaseConfig:
    """Hyperparameters every agent has. Defaults are the paper's (GFP Tab. 4, App. A)."""

    lr: float = option(3e-4, "Adam learning rate, one optimizer over all networks (Tab. 4).", gt=0)
    batch_size: int = option(256, "Minibatch size, sampled uniformly with replacement.", ge=1)
    gamma: float = option(
        0.99, "Discount factor (per-task values in the presets table).", ge=0, le=1
    )
    tau: float = option(
        0.005,
        "Polyak rate of the target networks: target <- tau*online + (1-tau)*target.",
        gt=0,
        le=1,
    )
    target_update: Literal["pre_step", "post_step"] = option(
        "pre_step",
        "Which online parameters the Polyak average takes: 'pre_step' (those before this update's "
        "gradient step, as the FQL and GFP reference code do) or 'post_step' (those after it).",
    )
    actor_hidden_dims: tuple[int, ...] = option(
        (512, 512, 512, 512), "Hidden layer sizes of the policy networks (actor and flow)."
    )
    value_hidden_dims: tuple[int, ...] = option(
        (512, 512, 512, 512), "Hidden layer sizes of the critic / value networks."
    )
    layer_norm: bool = option(True, "LayerNorm after each hidden activation of the critic.")
    encoder: Literal["none", "impala_small", "impala_cpu"] = option(
        "none",
        "Observation encoder in front of every network (each module has its own): 'none' feeds "
        "the flattened observation (cast to float32 inside the update); 'impala_small' is the "
        "paper's IMPALA CNN for pixel tasks (16/32/32 channels, 1 residual block per stage, "
        "512-unit layer); 'impala_cpu' a smaller CNN for CPU smoke runs (4/8 channels, 64 units; "
        "not the paper's). gfp/agents/encoders.py.",
    )
    frame_stack: int = option(
        1,
        "Pixel tasks: the last frame_stack frames, stacked along channels, are one observation "
        "(3 in the paper's pixel runs); frames before an episode's start repeat its first frame.",
        ge=1,
        le=16,
    )
    p_aug: float = option(
        0.0,
        "Pixel tasks: probability that a minibatch gets random-shift augmentation (0.5 in the "
        "paper's pixel runs), drawn once per minibatch as in the reference code.",
        ge=0,
        le=1,
    )
    aug_pad: int = option(
        3,
        "Random shift: images are edge-padded by aug_pad pixels and cropped back at a random "
        "offset in [0, 2 aug_pad], the same for every frame of a sample (the reference code's "
        "padding of 3).",
        ge=0,
        le=32,
    )
    horizon: int = option(
        1,
        "Action chunking (Q-chunking, QC; Li, Zhou, Levine 2025): the length h of the action "
        "chunks the policy outputs and the critic scores, trained on h-step windows with the "
        "h-step return r_t + ... + gamma^(h-1) r_(t+h-1) + gamma^h Q(s_(t+h), a'). 1 = one action "
        "per step (no chunking). gfp, fql, flow_bc and qc only.",
        ge=1,
        le=64,
    )
    action_chunking: bool = option(
        True,
        "With horizon > 1: True = the policy and critic act on the whole chunk of h actions (QC); "
        "False = one action with the h-step return (QC's 'FQL-n' / 'BFN-n' baselines).",
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.horizon > 1 and isinstance(self, SINGLE_STEP_CONFIGS):
            name = next((n for n, c in CONFIGS.items() if c is type(self)), type(self).__name__)
            raise ConfigError(
                f"{name} does not support horizon = {self.horizon} (action chunking): "
                f"horizon > 1 is for {', '.join(CHUNKING_AGENTS)}"
            )

    @classmethod
    def field_help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


# ---- GFP and FQL ---------------------------------------------------------------------------------
_FLOW_STEPS = "Euler steps M of the flow (30 on humanoidmaze-large)."
_TIME_EMB = "Flow time input: 'sinusoidal' (GFP's 64-d embedding) or 'scalar' (FQL's raw t)."


@dataclasses.dataclass(frozen=True)
class GFPConfig(BaseConfig):
    alpha: float = option(
        1.0,
        "Distillation weight alpha in the actor loss (Eq. 8), on the scale of the normalised Q "
        "loss (mean over action dims). Per-task values in the presets table.",
        ge=0,
    )
    eta: float = option(
        1e-3,
        "Guidance temperature eta of g (Eq. 10); small eta gives a near-binary filter; "
        "eta = 0 switches the weighting off (plain flow BC, i.e. FQL with Q normalisation).",
        ge=0,
    )
    flow_steps: int = option(10, _FLOW_STEPS, ge=1)
    q_agg: Literal["mean", "min"] = option(
        "mean",
        "Aggregation of the 2 critics everywhere (target, actor loss, lambda, guidance); "
        "'min' on antmaze (docs/paper-vs-code.md #9).",
    )
    target_agg: Literal["actor", "mean", "vabc", "min", "max"] = option(
        "actor",
        "Bellman target: 'actor' = standard target (Eq. 6); 'mean' = y_VaBC, the average of the "
        "actor and VaBC next-action values (Eq. 7, used on cube and humanoidmaze-medium); "
        "'vabc', 'min', 'max' are the authors' code's other choices.",
    )
    target_use_next: bool = option(
        False,
        "y_VaBC only: compute the VaBC next action at s' (True, the equation as written) or at s "
        "(False, the authors' code and the published numbers; the paper's Implementation Note on "
        "Eq. 7; docs/paper-vs-code.md #2).",
    )
    guidance_agg: Literal["actor", "min"] = option(
        "actor",
        "Reference action value in g: 'actor' = Q(s, a_theta) (Eq. 10); 'min' = "
        "min(Q(s, a_theta), Q(s, a_omega)), g_min of Eq. 13 (antmaze, humanoidmaze, antsoccer).",
    )
    guidance_fn: Literal["softmax", "advantage"] = option(
        "softmax",
        "'softmax' = g_eta, a two-way softmax = sigmoid of the scaled Q gap (Eq. 10); 'advantage' "
        "= AWR-style exp((lambda/eta) gap), unbounded and unclipped as in the code (Eq. 11/12).",
    )
    guidance_critic: Literal["target", "online"] = option(
        "target",
        "Critic inside g: 'target' Q_phibar (the authors' code, default) or 'online' Q_phi (the "
        "paper's text). Either way g carries no gradient (docs/paper-vs-code.md #1).",
    )
    time_embedding: Literal["sinusoidal", "scalar"] = option("sinusoidal", _TIME_EMB)
    normalize_q_loss: bool = option(
        True, "Scale the actor's -Q term by lambda = sg(1/mean|Q|) (always on in GFP, Eq. 8)."
    )


@dataclasses.dataclass(frozen=True)
class FQLConfig(BaseConfig):
    alpha: float = option(
        10.0,
        "Distillation weight alpha (FQL's BC coefficient), on the scale of the UNnormalised Q "
        "loss (mean over action dims); FQL's default 10, per-task values in the presets table.",
        ge=0,
    )
    flow_steps: int = option(10, _FLOW_STEPS, ge=1)
    q_agg: Literal["mean", "min"] = option(
        "mean",
        "Aggregation of the 2 target critics in the Bellman target only; the actor loss always "
        "uses their mean (FQL).",
    )
    normalize_q_loss: bool = option(
        False, "Scale the actor's -Q term by lambda = sg(1/mean|Q|) (off in FQL, always on in GFP)."
    )
    time_embedding: Literal["sinusoidal", "scalar"] = option("scalar", _TIME_EMB)


# ---- ReBRAC, IQL, BC -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ReBRACConfig(BaseConfig):
    alpha_actor: float = option(
        0.01,
        "Actor BC weight alpha_1 on sum_j (pi(s) - a)_j^2 next to the normalised Q term; tuned per "
        "task (presets table). FQL's code defaults to 0, the GFP authors' config to 0.01.",
        ge=0,
    )
    alpha_critic: float = option(
        0.01,
        "Critic BC weight alpha_2: the target value is lowered by "
        "alpha_2 * sum_j (a' - a'_data)_j^2 (0 turns the critic penalty off); tuned per task.",
        ge=0,
    )
    actor_freq: int = option(
        2, "Delayed updates: actor and both target networks change every actor_freq-th step.", ge=1
    )
    actor_noise: float = option(0.2, "Std sigma of the target policy smoothing noise.", ge=0)
    actor_noise_clip: float = option(0.5, "The smoothing noise is clipped to [-c, c].", ge=0)
    q_agg: Literal["min", "mean"] = option(
        "min",
        "Aggregation of the 2 critics in the target and the actor loss: 'min' (ReBRAC and FQL's "
        "implementation) or 'mean' (FQL's/GFP's, which the GFP authors used, paper Tab. 3).",
    )
    tanh_squash: bool = option(True, "Squash the actor's output with tanh (else clip it to act).")


@dataclasses.dataclass(frozen=True)
class IQLConfig(BaseConfig):
    alpha: float = option(
        10.0,
        "AWR inverse temperature: weights exp(alpha * (Q - V)), clipped at 100 (FQL's default 10; "
        "per-task values in the presets table).",
        ge=0,
    )
    expectile: float = option(
        0.9, "Expectile tau of the value regression (0.5 = mean).", gt=0, lt=1
    )
    const_std: bool = option(
        True, "Fix the policy's std at 1 (FQL's const_std) instead of learning a log-std vector."
    )


@dataclasses.dataclass(frozen=True)
class BCConfig(BaseConfig):
    const_std: bool = option(
        True,
        "Fix the std at 1 (FQL's/OGBench's const_std; the loss is then a squared error) instead "
        "of learning a state-independent log-std vector.",
    )


@dataclasses.dataclass(frozen=True)
class FlowBCConfig(BaseConfig):
    flow_steps: int = option(10, "Euler steps M used to sample an action.", ge=1)
    time_embedding: Literal["sinusoidal", "scalar"] = option(
        "sinusoidal",
        "Flow time input: GFP's 64-d sinusoidal embedding (the VaBC network) or the raw scalar t "
        "(FQL's BC flow).",
    )


# ---- QC (Q-chunking, best-of-N) -----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class QCConfig(BaseConfig):
    """QC's `actor_type='best-of-n'` (Li, Zhou, Levine 2025, Sec. 4): a BC flow over action chunks
    and a chunk critic; the policy draws num_samples chunks from the flow and takes the one the
    critic values most. Defaults are QC's (its get_config: 4x512 networks, critic LayerNorm, no
    actor LayerNorm, lr 3e-4, batch 256, discount 0.99, tau 0.005, horizon 5)."""

    horizon: int = option(
        5,
        "Action chunk length h (QC's horizon_length, 5 in its experiments); the critic learns the "
        "h-step return of the chunk.",
        ge=1,
        le=64,
    )
    flow_steps: int = option(10, _FLOW_STEPS, ge=1)
    q_agg: Literal["mean", "min"] = option(
        "mean",
        "Aggregation of the 2 critics in the Bellman target and in the best-of-N choice (QC's "
        "q_agg; 'mean' by default).",
    )
    num_samples: int = option(
        32,
        "N: chunks drawn from the BC flow per state; the policy (and the Bellman target's next "
        "chunk) is the one with the highest Q (QC's actor_num_samples).",
        ge=1,
    )
    time_embedding: Literal["sinusoidal", "scalar"] = option("scalar", _TIME_EMB)


# ---- the registry --------------------------------------------------------------------------------
CONFIGS: dict[str, type[BaseConfig]] = {
    "gfp": GFPConfig,
    "fql": FQLConfig,
    "rebrac": ReBRACConfig,
    "iql": IQLConfig,
    "bc": BCConfig,
    "flow_bc": FlowBCConfig,
    "qc": QCConfig,
}
# Where each agent's implementation lives ("module:class"); imported only when an agent is built.
AGENT_CLASSES: dict[str, str] = {
    "gfp": "gfp.agents.gfp:GFP",
    "fql": "gfp.agents.fql:FQL",
    "rebrac": "gfp.agents.rebrac:ReBRAC",
    "iql": "gfp.agents.iql:IQL",
    "bc": "gfp.agents.bc:BC",
    "flow_bc": "gfp.agents.bc:FlowBC",
    "qc": "gfp.agents.qc:QC",
}
AGENT_NAMES: tuple[str, ...] = tuple(CONFIGS)
# Action chunking (BaseConfig.horizon > 1): the flow agents; the others refuse it when built.
CHUNKING_AGENTS: tuple[str, ...] = ("gfp", "fql", "flow_bc", "qc")
SINGLE_STEP_CONFIGS: tuple[type[BaseConfig], ...] = (ReBRACConfig, IQLConfig, BCConfig)

# Options added after runs were recorded: a config.json's agent_config without them reads back
# with the agent's default (`config_from_dict`), and at that default they are left out of the
# record and of the run-defining hash (`recorded_agent_config`; gfp.job.job_record, config_hash),
# so a run recorded before them keeps its record, its identity, and --resume accepts it.
LATER_OPTIONS: tuple[str, ...] = ("horizon", "action_chunking")


def recorded_agent_config(agent: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """An agent_config as config.json records it and the run-defining hash sees it: the
    LATER_OPTIONS at `agent`'s default values left out (what a record made before them holds)."""
    cls = CONFIGS.get(agent)
    defaults = {f.name: f.default for f in dataclasses.fields(cls)} if cls else {}

    def at_default(k: str, v: Any) -> bool:
        return (
            k in LATER_OPTIONS
            and k in defaults
            and type(v) is type(defaults[k])
            and v == defaults[k]
        )

    return {k: v for k, v in values.items() if not at_default(k, v)}


def config_class(agent: str, configs: Mapping[str, type] | None = None) -> type[BaseConfig]:
    """The Config class of `agent` in `configs` (default: CONFIGS); ConfigError listing the
    agents otherwise."""
    configs = CONFIGS if configs is None else configs
    if agent not in configs:
        raise ConfigError(f"unknown agent {agent!r} (choices: {', '.join(configs)})")
    return configs[agent]


def config_from_dict(agent: str, values: dict[str, Any], where: str = "config") -> BaseConfig:
    """A Config from plain values (e.g. a config.json's agent_config; the Config normalizes them,
    lists of sizes to tuples); an unknown or missing key, or a bad value, is a ConfigError naming
    the key and `where`. A missing LATER_OPTIONS key (a record made before it) takes its
    default."""
    cls = config_class(agent)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(
            f"{where}: unknown {agent} option(s) {', '.join(unknown)} (valid: {', '.join(names)})"
        )
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    values = {**{n: defaults[n] for n in LATER_OPTIONS if n not in values}, **values}
    missing = [n for n in names if n not in values]
    if missing:
        raise ConfigError(f"{where}: missing {agent} option(s) {', '.join(missing)}")
    try:
        return cls(**values)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
