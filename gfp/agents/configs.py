"""Every agent's hyperparameters: one frozen dataclass per agent, the only schema of its options.

The presets table (gfp/presets.csv), the `gfp train` flags, `gfp presets` and the sweep's grids all
read the fields, types, defaults, help texts and ranges from here. This module imports no JAX, so
the command line can build its help and validate a configuration without loading the agents.

Each field is declared with `option(default, help, ...)`; numeric fields carry their allowed range
(`gt`, `ge`, `le`, `lt`). A Config checks itself when it is built (`__post_init__`): a value of the
wrong type, out of its range, or not one of a Literal's choices raises ConfigError naming the field,
the value and what is allowed. So a configuration from the CLI, the Python API, a resumed run's
config.json or a sweep's grid goes through the same checks.

Adding an agent: its Config here (subclass BaseConfig), its file in gfp/agents/, one line in
`AGENT_CLASSES` below.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
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
) -> Any:
    """A config field with its documentation (shown by `gfp train --help` and `gfp presets`) and,
    for numbers, its allowed range."""
    bounds = {k: v for k, v in (("gt", gt), ("ge", ge), ("lt", lt), ("le", le)) if v is not None}
    return dataclasses.field(default=default, metadata={"help": help, "bounds": bounds})


_RELATIONS = {
    "gt": (">", lambda x, b: x > b),
    "ge": (">=", lambda x, b: x >= b),
    "lt": ("<", lambda x, b: x < b),
    "le": ("<=", lambda x, b: x <= b),
}


def describe_bounds(bounds: dict[str, float]) -> str:
    """'> 0 and <= 1' for {'gt': 0, 'le': 1}."""
    return " and ".join(f"{_RELATIONS[k][0]} {v:g}" for k, v in bounds.items())


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """Field name -> its resolved annotation (Literal[...], tuple[int, ...], float, ...)."""
    return typing.get_type_hints(cls)


def check_field(cls: type, name: str, value: Any) -> None:
    """Raise ConfigError if `value` is not a valid `name` of config class `cls`."""
    hint = field_types(cls)[name]
    field = {f.name: f for f in dataclasses.fields(cls)}[name]
    origin = typing.get_origin(hint)
    problem = None
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            problem = f"must be one of {', '.join(map(str, choices))}"
    elif origin is tuple:
        if not (isinstance(value, tuple) and value and all(_is_int(v) and v >= 1 for v in value)):
            problem = "must be a non-empty list of sizes, each >= 1 (e.g. 256x256)"
    elif hint is bool:
        if not isinstance(value, bool):
            problem = "must be true or false"
    elif hint is int:
        if not _is_int(value):
            problem = "must be an integer"
    elif hint is float and (
        not (_is_int(value) or isinstance(value, float)) or not math.isfinite(value)
    ):
        problem = "must be a finite number"
    if problem is None and hint in (int, float):
        bounds = field.metadata.get("bounds", {})
        if not all(_RELATIONS[k][1](value, b) for k, b in bounds.items()):
            problem = f"is out of range (must be {describe_bounds(bounds)})"
    if problem is not None:
        raise ConfigError(f"{name} = {value!r} {problem}")


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
        4,
        "Random shift: images are edge-padded by aug_pad pixels and cropped back at a random "
        "offset, the same for every frame of a sample (the issue's 4; FQL's code uses 3).",
        ge=0,
        le=32,
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check_field(type(self), f.name, getattr(self, f.name))

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
        "'min' on antmaze (GFP.md ambiguity 9).",
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
        "(False, the authors' code and the published numbers; GFP.md 1.2 'implementation note').",
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
        "paper's text). Either way g carries no gradient (GFP.md ambiguity 1).",
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
        "implementation) or 'mean' (FQL's/GFP's, which the GFP authors used, GFP.md 5.2).",
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


# ---- the registry --------------------------------------------------------------------------------
CONFIGS: dict[str, type[BaseConfig]] = {
    "gfp": GFPConfig,
    "fql": FQLConfig,
    "rebrac": ReBRACConfig,
    "iql": IQLConfig,
    "bc": BCConfig,
    "flow_bc": FlowBCConfig,
}
# Where each agent's implementation lives ("module:class"); imported only when an agent is built.
AGENT_CLASSES: dict[str, str] = {
    "gfp": "gfp.agents.gfp:GFP",
    "fql": "gfp.agents.fql:FQL",
    "rebrac": "gfp.agents.rebrac:ReBRAC",
    "iql": "gfp.agents.iql:IQL",
    "bc": "gfp.agents.bc:BC",
    "flow_bc": "gfp.agents.bc:FlowBC",
}
AGENT_NAMES: tuple[str, ...] = tuple(CONFIGS)


def config_class(agent: str) -> type[BaseConfig]:
    """The Config class of `agent`; ConfigError listing the agents otherwise."""
    if agent not in CONFIGS:
        raise ConfigError(f"unknown agent {agent!r}; choose one of: {', '.join(CONFIGS)}")
    return CONFIGS[agent]


def config_from_dict(agent: str, values: dict[str, Any], where: str = "config") -> BaseConfig:
    """A Config from plain values (e.g. a config.json's agent_config): lists become tuples; an
    unknown or missing key, or a bad value, is a ConfigError naming the key and `where`."""
    cls = config_class(agent)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(
            f"{where}: unknown {agent} option(s) {', '.join(unknown)} (valid: {', '.join(names)})"
        )
    missing = [n for n in names if n not in values]
    if missing:
        raise ConfigError(f"{where}: missing {agent} option(s) {', '.join(missing)}")
    kept = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        return cls(**kept)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
