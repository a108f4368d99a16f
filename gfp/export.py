"""Deployable policies: a trained policy as one ONNX or serialized StableHLO file that runs without
gfp (what `gfp export` calls).

The exported function is `agent.action` with the run's parameters baked in as constants:

    action = f(obs, z)    obs: (batch, *obs_shape) in the dataset's dtype (float32 state vectors,
                          stacked uint8 frames for pixel runs; any encoder is inside the graph),
                          z: (batch, action_dim) float32 noise ~ N(0, I), drawn by the caller;
    action = f(obs)       with `deterministic`: z = 0 is baked in.

Actions are clipped to [-1, 1], exactly as `gfp eval` acts (it draws z ~ N(0, I) per step).

A run trained on a LeRobot dataset (config.json's dataset.info: the loader's action
normalisation, gfp.data.lerobot_loader) exports with the un-normalisation inside the graph, so the
output is in robot units: action = a * (max - min) / 2 + (max + min) / 2 (`unnormalize`); its
sidecar's `robot` (gfp.api.robot_record) holds the observation preprocessing (the features in
order, each one's shape and dtype, the image size), the action normalisation record, and
`action_range` the dataset's min/max; gfp.deploy's `policy.act_raw(obs_dict)` applies it. The
check's tolerance grows with the output's size (`output_scale`). A combined observation (a
camera and a state vector, `ObsSpec.state_dim` d > 0) exports as f(obs, state, z): obs the
stacked frames, state float32 (batch, d), recorded as the sidecar's input 'state' and
`observation.state_dim`. Every other run's export is what it was (ONNX byte for byte; StableHLO
carries the source locations of the code that traced it, so any edit of that code changes its
bytes, never its computation).

Action chunks (Q-chunking, Li, Zhou & Levine 2025, Sec. 4): an agent trained with
action_chunking (`agent.chunk_len` k > 1) outputs k actions of the environment's size A at once;
the exported function returns that chunk as (batch, k, A) (step i at [:, i], executed in order,
open loop) and the sidecar's `chunk` says so ({"length": k, "action_dim": A, ...}); the
sidecar's `action_dim`, action names and bounds are those of one step (A). z has the agent's
noise shape (`agent.noise_shape`: (batch, k * A) for a chunk, (batch, N, k * A) for an agent
that samples N candidates). With k = 1 the output stays (batch, A) and `chunk.length` is 1.

Formats:
* ONNX through jax2onnx. The function is first traced to a jaxpr by JAX itself, under
  `jax.disable_jit()`, and jax2onnx converts that jaxpr (`_eval_for_onnx`). Two reasons: (1)
  jax2onnx, when it traces a function itself, swaps some jax/flax functions for its own versions,
  and those break on gfp's code (its `fori_loop` rejects `unroll=`, its `jnp.full` rejects a
  symbolic batch dimension); converting JAX's own trace avoids them and gives the computation
  `gfp eval` runs, primitive for primitive. (2) Without jit, `lax.scan`/`fori_loop` run as Python
  loops, so a flow's M Euler steps arrive unrolled: straight-line ONNX without a Loop node (the
  Loop form took 870 us per batch-1 VaBC call at paper size in onnxruntime here, the unrolled
  one 670 us, under the same load).
  ONNX opset: jax2onnx converts at `CONVERTER_OPSET`; the model is then stamped with the lowest
  opset whose operator schemas accept every node of the graph (`lowest_opset`, onnx's checker
  with full type checks), or with `--opset N`, and the check below runs the stamped model, so
  onnxruntime executes it with that opset's kernels. The sidecar's `onnx` records the opset, the
  IR version and the oldest onnxruntime that runs it (gfp_deploy.min_onnxruntime).
* StableHLO through `jax.export`: the jitted function exactly as `gfp eval` compiles it (the Euler
  steps unrolled, as `euler_flow` asks), loadable with `jax.export.deserialize` by anyone with
  JAX, without gfp.

Every export is checked before anything is written: the exported model is run (onnxruntime, or the
deserialized StableHLO) on random observations and noise and must give gfp's actions to within
`TOLERANCE`. Next to FILE, FILE.json (`sidecar_path`) records what a user needs to call it (see
`gfp.deploy`, which loads both with numpy and onnxruntime only), including for pixel policies the
frame stack and frame order they were trained on (`frame_info`).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gfp.agents import Agent
from gfp.deploy import (
    EPISODE_START,
    FRAME_ORDER,
    SELF_TEST_TOLERANCE,
    SIDECAR_SUFFIX,
    STACK_AXIS,
    min_onnxruntime,
    self_test_inputs,
    sidecar_path,
)
from gfp.errors import ConfigError, GfpError
from gfp.io import atomic_write_bytes, atomic_write_json

FORMATS = ("onnx", "stablehlo")
TOLERANCE = 1e-5  # max |exported - gfp| accepted by the check at export time
CONVERTER_OPSET = 23  # the opset jax2onnx converts at; the model is stamped lower (lowest_opset)
LOWEST_OPSET = 7  # the oldest opset onnxruntime runs (and the search's floor)
BATCH_NAME = "batch"  # the symbolic batch dimension's name in both formats

__all__ = [
    "FORMATS",
    "SIDECAR_SUFFIX",
    "cli_main",
    "dimension_info",
    "export_policy",
    "input_specs",
    "onnx_bytes",
    "parse_batch",
    "policy_function",
    "stablehlo_bytes",
]


# ---- the function ---------------------------------------------------------------------------
def chunk_shape(agent: Agent) -> tuple[int, int]:
    """(k, A): the actions one call of the agent's policy returns and the size of one
    (`agent.chunk_len`, `agent.env_action_dim`; k = 1 without action chunking)."""
    return int(agent.chunk_len), int(agent.env_action_dim)


def noise_shape(agent: Agent, batch_shape: tuple[Any, ...]) -> tuple[Any, ...]:
    """The shape of the noise input z for `batch_shape` (`agent.noise_shape`: (*batch_shape,
    action_dim) by default, (*batch_shape, N, action_dim) for QC's best-of-N)."""
    return tuple(agent.noise_shape(batch_shape))


def check_policy(agent: Agent, policy: str) -> None:
    """A ConfigError unless `agent` has the policy `policy`."""
    if policy not in agent.policies:
        raise ConfigError(
            f"agent {agent.name!r} has no policy {policy!r}; its policies: "
            + ", ".join(agent.policies)
        )


def policy_function(
    agent: Agent,
    params: Any,
    policy: str,
    deterministic: bool = False,
    action_normalization: Mapping[str, Any] | None = None,
) -> Callable[..., jax.Array]:
    """f(obs, z) (or f(obs) when `deterministic`: z = 0) = agent.action(params, obs, z, policy),
    the parameters closed over so that they become the exported graph's constants; a chunk of
    k > 1 actions as (batch, k, A) (`chunk_shape`). With `action_normalization` (a LeRobot run's
    record, gfp.data.lerobot_loader) the actions come out in robot units (`unnormalize`)."""
    check_policy(agent, policy)
    params = jax.tree.map(jnp.asarray, params)
    k, a = chunk_shape(agent)

    def shaped(actions: jax.Array) -> jax.Array:
        actions = actions if k == 1 else actions.reshape(*actions.shape[:-1], k, a)
        if action_normalization is None:
            return actions
        return unnormalize(actions, action_normalization)

    if state_dim(agent):  # a combined observation: the image input and the state input
        from gfp.agents.base import combined_obs

        if deterministic:

            def act_combined_deterministic(obs: jax.Array, state: jax.Array) -> jax.Array:
                z = jnp.zeros(noise_shape(agent, (obs.shape[0],)), jnp.float32)
                return shaped(agent.action(params, combined_obs(obs, state), z, policy))

            return act_combined_deterministic

        def act_combined(obs: jax.Array, state: jax.Array, z: jax.Array) -> jax.Array:
            return shaped(agent.action(params, combined_obs(obs, state), z, policy))

        return act_combined

    if deterministic:

        def act_deterministic(obs: jax.Array) -> jax.Array:
            z = jnp.zeros(noise_shape(agent, (obs.shape[0],)), jnp.float32)
            return shaped(agent.action(params, obs, z, policy))

        return act_deterministic

    def act(obs: jax.Array, z: jax.Array) -> jax.Array:
        return shaped(agent.action(params, obs, z, policy))

    return act


def unnormalize(actions: jax.Array, record: Mapping[str, Any]) -> jax.Array:
    """a in [-1, 1] -> robot units, a * (max - min) / 2 + (max + min) / 2 per dimension (the last
    axis): the inverse of the loader's normalisation (gfp.data.lerobot_loader, whose
    `unnormalize_actions` is the same map in numpy), as two float32 constants of the graph."""
    lo, hi = np.asarray(record["min"], np.float64), np.asarray(record["max"], np.float64)
    half, center = ((hi - lo) / 2).astype(np.float32), ((hi + lo) / 2).astype(np.float32)
    return actions * half + center


def output_scale(record: Mapping[str, Any] | None) -> float:
    """How much larger than in [-1, 1] the exported actions' float32 errors may be: 1 without
    un-normalisation, else the largest |min|, |max| (an error e in a becomes (max - min) / 2 * e,
    plus the rounding of values up to that size)."""
    if record is None:
        return 1.0
    bounds = np.abs(np.concatenate([record["min"], record["max"]]))
    return float(max(1.0, bounds.max()))


def parse_batch(batch: int | str) -> int | str:
    """A batch size >= 1, or 'dynamic' (a symbolic batch dimension); ConfigError otherwise."""
    if isinstance(batch, str) and batch.strip().lower() == "dynamic":
        return "dynamic"
    try:
        n = int(batch)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or (isinstance(batch, float) and batch != n):
        raise ConfigError(f"--batch must be a positive integer or 'dynamic', not {batch!r}")
    return n


def state_dim(agent: Agent) -> int:
    """d > 0 for a combined observation (a camera's frames and a state vector beside them,
    gfp.agents.base.ObsSpec.state_dim), 0 otherwise."""
    return int(getattr(agent.obs_spec, "state_dim", 0))


def input_specs(agent: Agent, batch: int | str, deterministic: bool) -> list[jax.ShapeDtypeStruct]:
    """Shapes and dtypes of the exported inputs: obs (a combined observation: obs, the stacked
    frames, and state (batch, d) float32), and z unless `deterministic`."""
    b = jax.export.symbolic_shape(BATCH_NAME)[0] if batch == "dynamic" else batch
    spec = agent.obs_spec
    specs = [jax.ShapeDtypeStruct((b, *spec.shape), np.dtype(spec.dtype))]
    if state_dim(agent):
        specs.append(jax.ShapeDtypeStruct((b, state_dim(agent)), np.float32))
    if not deterministic:
        specs.append(jax.ShapeDtypeStruct(noise_shape(agent, (b,)), np.float32))
    return specs


def _input_names(deterministic: bool, combined: bool = False) -> list[str]:
    return ["obs", *(["state"] if combined else []), *([] if deterministic else ["z"])]


# ---- the two formats ------------------------------------------------------------------------
def _require(module: str, fmt: str) -> Any:
    """Import a converter (or runtime) package, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"--format {fmt} needs the Python package {module!r}, which is not installed; "
            "install the 'export' extra: pip install 'gfp[export]'"
        ) from None


def parse_opset(opset: int | str | None) -> int | None:
    """None (the lowest the graph needs) or an opset the installed onnx package can check;
    ConfigError (one line) otherwise."""
    if opset is None or (isinstance(opset, str) and opset.strip().lower() in ("", "auto")):
        return None
    try:
        n = int(opset)
    except (TypeError, ValueError):
        n = 0
    if n < LOWEST_OPSET or (isinstance(opset, float) and opset != n):
        raise ConfigError(f"--opset must be an integer >= {LOWEST_OPSET} (or auto), not {opset!r}")
    onnx = _require("onnx", "onnx")
    newest = onnx.defs.onnx_opset_version()
    if n > newest:
        raise ConfigError(
            f"--opset {n}: the converter cannot produce it (the installed onnx "
            f"{onnx.__version__} knows opsets up to {newest})"
        )
    return n


def _stamped(model: Any, opset: int) -> Any:
    """A copy of `model` stamped with ONNX opset `opset` and the lowest IR version for it."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    for entry in out.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = opset
    ir = onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", opset)])
    out.ir_version = max(ir, 8) if out.functions else ir  # local functions: IR >= 8
    return out


def _opset_error(model: Any, opset: int) -> str | None:
    """None if every node of `model` stamped with `opset` passes onnx's checker (operator schemas
    of that opset, full type checks), else the checker's first line."""
    import onnx

    try:
        onnx.checker.check_model(_stamped(model, opset), full_check=True)
    except Exception as e:  # onnx's ValidationError / InferenceError
        return " ".join(str(e).split())[:240]
    return None


def lowest_opset(model: Any) -> int:
    """The lowest ONNX opset whose schemas accept every node of `model`."""
    converted = max(e.version for e in model.opset_import if e.domain in ("", "ai.onnx"))
    for opset in range(LOWEST_OPSET, converted):
        if _opset_error(model, opset) is None:
            return opset
    return converted


def onnx_bytes(
    fn: Callable[..., jax.Array], specs: list[jax.ShapeDtypeStruct], opset: int | None = None
) -> bytes:
    """`fn` as a serialized ONNX model (inputs 'obs'[, 'z'], output 'action') stamped with `opset`
    (None: the lowest the graph needs); see the module docstring for why JAX traces it first.
    ConfigError (one line) for an opset below what the graph needs."""
    return onnx_model(fn, specs, opset)[0].SerializeToString()


def onnx_model(
    fn: Callable[..., jax.Array],
    specs: list[jax.ShapeDtypeStruct],
    opset: int | None = None,
    names: list[str] | None = None,
) -> tuple[Any, int]:
    """(the ONNX model, the lowest opset its graph needs); see `onnx_bytes`."""
    jax2onnx = _require("jax2onnx", "onnx")
    opset = parse_opset(opset)

    with jax.disable_jit():
        closed = jax.make_jaxpr(fn)(*specs)
    # onnx_ir logs a warning for every shape constant it leaves untyped in the graph's value
    # info (the max-pool's slices); the model is valid without it (the check below runs it).
    serde = logging.getLogger("onnx_ir.serde")
    level = serde.level
    serde.setLevel(logging.ERROR)
    try:
        model = jax2onnx.to_onnx(
            functools.partial(_eval_for_onnx, closed.jaxpr, closed.consts),
            specs,
            model_name="gfp_policy",
            opset=max(opset or 0, CONVERTER_OPSET),
            input_names=names or _input_names(len(specs) == 1),
            output_names=["action"],
        )
    finally:
        serde.setLevel(level)
    needed = lowest_opset(model)
    if opset is not None and opset < needed:
        raise ConfigError(
            f"--opset {opset}: this policy's graph needs ONNX opset >= {needed} "
            f"(at {opset}: {_opset_error(model, opset)})"
        )
    return _stamped(model, needed if opset is None else opset), needed


def _eval_for_onnx(jaxpr: Any, consts: list[Any], *args: jax.Array) -> jax.Array:
    """Evaluate `jaxpr` primitive by primitive (as jax.core.eval_jaxpr does), so jax2onnx converts
    exactly this computation, with one substitution: `reduce_window_max` (the image encoders'
    max-pool) becomes `_max_pool_by_slices`. jax2onnx 0.17 lowers that primitive to one MaxPool
    over ALL its axes (a 4-axis window on NHWC images), which onnxruntime's CPU MaxPool rejects
    ('Unsupported pooling size': it pools at most 3 axes)."""
    from jax.extend.core import Literal

    env: dict[Any, Any] = dict(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))

    def read(v: Any) -> Any:
        return v.val if isinstance(v, Literal) else env[v]

    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        if eqn.primitive is jax.lax.reduce_window_max_p:
            outs = [_max_pool_by_slices(*invals, **eqn.params)]
        else:
            out = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
            outs = out if eqn.primitive.multiple_results else [out]
        env.update(zip(eqn.outvars, outs, strict=True))
    (out,) = [read(v) for v in jaxpr.outvars]
    return out


def _max_pool_by_slices(
    x: jax.Array,
    *,
    window_dimensions: tuple[int, ...],
    window_strides: tuple[int, ...],
    padding: tuple[tuple[int, int], ...],
    base_dilation: tuple[int, ...],
    window_dilation: tuple[int, ...],
) -> jax.Array:
    """reduce_window_max as the max over the window's offsets of strided slices of x padded with
    -inf: the same values exactly (a max is exact), in ops every ONNX runtime has (Concat, Slice,
    Max). Axes with a window of 1, stride 1 and no padding (batch, channels) are left alone, so a
    symbolic batch dimension stays symbolic."""
    if any(d != 1 for d in (*base_dilation, *window_dilation)):
        raise GfpError("ONNX export: a dilated max-pool is not supported")
    pooled = [
        i
        for i, (w, s, p) in enumerate(zip(window_dimensions, window_strides, padding, strict=True))
        if (w, s, tuple(p)) != (1, 1, (0, 0))
    ]
    for i in pooled:  # pad with -inf by concatenation (jax2onnx's Pad rejects a symbolic batch)
        lo, hi = padding[i]
        edge = [jnp.full_like(jax.lax.slice_in_dim(x, 0, n, axis=i), -jnp.inf) for n in (lo, hi)]
        x = jnp.concatenate([edge[0], x, edge[1]], axis=i)
    out = None
    for offsets in itertools.product(*(range(window_dimensions[i]) for i in pooled)):
        y = x
        for i, o in zip(pooled, offsets, strict=True):
            n = (x.shape[i] - window_dimensions[i]) // window_strides[i] + 1  # output size
            y = jax.lax.slice_in_dim(
                y, o, o + (n - 1) * window_strides[i] + 1, window_strides[i], i
            )
        out = y if out is None else jnp.maximum(out, y)
    return out


def stablehlo_bytes(fn: Callable[..., jax.Array], specs: list[jax.ShapeDtypeStruct]) -> bytes:
    """`fn` exported with jax.export and serialized (`jax.export.deserialize` reads it back), for
    the CPU (a robot's computer) and the backend it was trained on (a policy exported on a GPU
    would otherwise run on GPUs only)."""
    platforms = tuple(dict.fromkeys(("cpu", jax.export.default_export_platform())))
    return bytes(jax.export.export(jax.jit(fn), platforms=platforms)(*specs).serialize())


def _run_exported(
    fmt: str, blob: bytes, inputs: list[np.ndarray], names: list[str] | None = None
) -> np.ndarray:
    """Run an exported model the way a user would: onnxruntime, or deserialized StableHLO."""
    if fmt == "onnx":
        ort = _require("onnxruntime", "onnx")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # onnxruntime warns about every unused constant it prunes
        try:
            sess = ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own pybind exception classes
            from gfp.deploy import _load_error

            raise GfpError(
                _load_error("the exported model", None, ort.__version__, str(e))
            ) from None
        names = names or _input_names(len(inputs) == 1)
        return sess.run(None, dict(zip(names, inputs, strict=True)))[0]
    return np.asarray(jax.export.deserialize(bytearray(blob)).call(*inputs))


def _check(
    fmt: str,
    blob: bytes,
    fn: Callable[..., jax.Array],
    agent: Agent,
    batch: int | str,
    deterministic: bool,
    tolerance: float = TOLERANCE,
) -> dict[str, Any]:
    """Max |exported - gfp| over random inputs (batches 1 and 3 when dynamic); GfpError (nothing is
    written) if it exceeds `tolerance` (TOLERANCE, scaled by `output_scale` for robot units)."""
    rng = np.random.default_rng(0)
    spec = agent.obs_spec
    worst = 0.0
    sizes = [1, 3] if batch == "dynamic" else [int(batch)]
    for b in sizes:
        if np.issubdtype(np.dtype(spec.dtype), np.integer):
            info = np.iinfo(np.dtype(spec.dtype))
            obs = rng.integers(info.min, info.max, (b, *spec.shape), endpoint=True)
        else:
            obs = 2.0 * rng.standard_normal((b, *spec.shape))
        inputs = [obs.astype(spec.dtype)]
        if state_dim(agent):
            inputs.append((2.0 * rng.standard_normal((b, state_dim(agent)))).astype(np.float32))
        if not deterministic:
            inputs.append(rng.standard_normal(noise_shape(agent, (b,))).astype(np.float32))
        want = np.asarray(jax.jit(fn)(*inputs))
        got = _run_exported(fmt, blob, inputs, _input_names(deterministic, bool(state_dim(agent))))
        if got.shape != want.shape:
            raise GfpError(f"the exported {fmt} model returns shape {got.shape}, gfp {want.shape}")
        worst = max(worst, float(np.max(np.abs(got - want))))
    if not worst <= tolerance:
        raise GfpError(
            f"the exported {fmt} model's actions differ from gfp's by up to {worst:.3g} "
            f"(> {tolerance:g}); nothing was written"
        )
    return {"max_abs_diff": worst, "batch_sizes": sizes, "tolerance": tolerance}


# ---- what each dimension means (the sidecar's observation/action names) ----------------------
# OGBench's manipulation envs build a state observation from `compute_ob_info()` in a fixed order
# (ogbench/manipspace/envs/{cube,scene,puzzle}_env.py, `compute_observation`), with these
# constants; `_manipspace_observation` repeats that order to name each dimension, and the names
# are kept only when the values it rebuilds equal the env's own observation.
_XYZ_CENTER = np.array([0.425, 0.0, 0.0])
_XYZ_SCALE, _GRIPPER_SCALE = 10.0, 3.0
_BUTTON_SCALE, _DRAWER_SCALE, _WINDOW_SCALE = 120.0, 18.0, 15.0
_MANIPSPACE_OBJECTS = {  # env class -> the object groups its compute_observation appends
    "CubeEnv": ("cubes",),
    "SceneEnv": ("cubes", "buttons", "drawer_window"),
    "PuzzleEnv": ("buttons",),
}
# ManipSpaceEnv.set_control: action[:3] moves the effector (x, y, z), action[3] turns it about
# the vertical axis, action[4] changes the gripper opening; each relative to the current pose.
MANIPSPACE_ACTION_NAMES = ("dx", "dy", "dz", "dyaw", "gripper")


def _manipspace_observation(env: Any) -> tuple[list[str], np.ndarray] | None:
    """(a name per dimension, the values rebuilt from compute_ob_info()) of an OGBench
    manipulation env's state observation, or None for an env class whose layout is not known."""
    groups = _MANIPSPACE_OBJECTS.get(type(env).__name__)
    if groups is None:
        return None
    info = env.compute_ob_info()
    names: list[str] = []
    values: list[np.ndarray] = []

    def add(label: str, value: Any) -> None:
        value = np.atleast_1d(np.asarray(value, np.float64))
        names.extend([label] if value.size == 1 else [f"{label}[{i}]" for i in range(value.size)])
        values.append(value.ravel())

    def add_yaw(key: str) -> None:
        add(f"cos({key})", np.cos(info[key]))
        add(f"sin({key})", np.sin(info[key]))

    add("proprio/joint_pos", info["proprio/joint_pos"])
    add("proprio/joint_vel", info["proprio/joint_vel"])
    add("proprio/effector_pos", (info["proprio/effector_pos"] - _XYZ_CENTER) * _XYZ_SCALE)
    add_yaw("proprio/effector_yaw")
    add("proprio/gripper_opening", info["proprio/gripper_opening"] * _GRIPPER_SCALE)
    add("proprio/gripper_contact", info["proprio/gripper_contact"])
    if "cubes" in groups:
        for i in range(env._num_cubes):
            key = f"privileged/block_{i}"
            add(f"{key}_pos", (info[f"{key}_pos"] - _XYZ_CENTER) * _XYZ_SCALE)
            add(f"{key}_quat", info[f"{key}_quat"])
            add_yaw(f"{key}_yaw")
    if "buttons" in groups:
        for i in range(env._num_buttons):
            key = f"privileged/button_{i}"
            state = np.eye(env._num_button_states)[env._cur_button_states[i]]
            for s, v in enumerate(state):
                add(f"{key}_state=={s}", v)
            add(f"{key}_pos", info[f"{key}_pos"] * _BUTTON_SCALE)
            add(f"{key}_vel", info[f"{key}_vel"])
    if "drawer_window" in groups:
        add("privileged/drawer_pos", info["privileged/drawer_pos"] * _DRAWER_SCALE)
        add("privileged/drawer_vel", info["privileged/drawer_vel"])
        add("privileged/window_pos", info["privileged/window_pos"] * _WINDOW_SCALE)
        add("privileged/window_vel", info["privileged/window_vel"])
    return names, np.concatenate(values)


_NO_DATA_NAMES = "; the dataset stores plain arrays, without feature names"


def _unnamed(reason: str) -> dict[str, Any]:
    return {"names": None, "names_source": reason}


def _env_dimensions(
    env_name: str, pixels: bool, obs_dim: int, act_dim: int
) -> dict[str, dict[str, Any]]:
    """The environment's word on each dimension (see `dimension_info`); raises whatever building
    the environment raises."""
    import gymnasium

    from gfp.tasks import parse_task

    task = parse_task(env_name)
    if task.source == "ogbench":
        import ogbench  # noqa: F401  (registers the OGBench environments)

        # A visual task's env renders every observation (needs OpenGL); its state twin has the
        # same class and action space, which is all that is read here.
        env = gymnasium.make(task.env_id, **({"ob_type": "states"} if pixels else {}))
    else:
        from gfp.evaluate import make_env

        env = make_env(env_name)
    try:
        space, base = env.action_space, env.unwrapped
        kind = f"{task.env_id or env_name} ({type(base).__name__})"
        action: dict[str, Any]
        if isinstance(space, gymnasium.spaces.Box) and space.shape == (act_dim,):
            action = {
                "low": np.asarray(space.low, np.float64).tolist(),
                "high": np.asarray(space.high, np.float64).tolist(),
                "bounds_source": f"{kind}: its gymnasium action space",
            }
        else:
            action = {
                "low": None,
                "high": None,
                "bounds_source": f"{kind}: its action space {space} is not a Box of {act_dim}",
            }
        manipspace = type(base).__name__ in _MANIPSPACE_OBJECTS
        if manipspace and act_dim == len(MANIPSPACE_ACTION_NAMES):
            action |= {
                "names": list(MANIPSPACE_ACTION_NAMES),
                "names_source": f"{kind}: ogbench ManipSpaceEnv.set_control (action[:3] moves "
                "the effector in x, y, z, action[3] turns it about z, action[4] changes the "
                "gripper opening; relative to the current pose)",
            }
        else:
            action |= _unnamed(f"{kind} does not name its action dimensions" + _NO_DATA_NAMES)

        if pixels:
            observation = _unnamed("pixel observations: frames, see 'frames'")
        elif manipspace:
            base.reset(seed=0)
            layout = _manipspace_observation(base)
            own = np.asarray(base.compute_observation(), np.float64).ravel()
            if layout is None or len(layout[0]) != obs_dim or own.size != obs_dim:
                observation = _unnamed(
                    f"{kind}: its observation ({own.size} dims) is not the run's ({obs_dim})"
                )
            elif not np.allclose(layout[1], own, rtol=1e-6, atol=1e-6):
                observation = _unnamed(
                    f"{kind}: the installed ogbench builds its observation in another order "
                    "than the one gfp names"
                )
            else:
                observation = {
                    "names": layout[0],
                    "names_source": f"{kind}: ogbench's compute_observation, the keys of "
                    "compute_ob_info() in its order (positions centred at (0.425, 0, 0) and "
                    "scaled by 10, gripper opening by 3, buttons by 120, drawer by 18, window "
                    "by 15, as there), checked against the env's own observation",
                }
        else:
            observation = _unnamed(
                f"{kind} does not name its observation dimensions (a gymnasium Box has bounds "
                "only)" + _NO_DATA_NAMES
            )
    finally:
        env.close()
    return {"observation": observation, "action": action}


@functools.lru_cache(maxsize=16)
def _cached_env_dimensions(
    env_name: str, pixels: bool, obs_dim: int, act_dim: int
) -> str:  # JSON text: every caller gets its own copy
    import json
    import warnings

    with warnings.catch_warnings():  # gymnasium's Box and GLFW warnings say nothing to a user
        warnings.simplefilter("ignore")
        return json.dumps(_env_dimensions(env_name, pixels, obs_dim, act_dim))


def dimension_info(
    cfg: Mapping[str, Any], agent: Agent, robot: Mapping[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """What each observation and action dimension means, as the run's environment states it:
    {"observation": {"names", "names_source"}, "action": {"names", "names_source", "low",
    "high", "bounds_source"}}. Names only where the env or dataset gives them (OGBench's
    manipulation envs: their compute_observation layout, checked against the env; their action
    [dx, dy, dz, dyaw, gripper]); otherwise "names": null and "names_source" says why. Bounds from
    the env's gymnasium action space. The datasets gfp loads carry no feature names: OGBench and
    D4RL files store plain arrays, and Minari datasets are loaded only with a flat Box
    observation space (gfp.data.minari_loader). A run on a LeRobot dataset (`robot`:
    gfp.api.robot_record) names each state dimension by its feature and index, and bounds the
    actions by the dataset's action stats (`robot_dimensions`)."""
    import json

    if robot is not None:
        return robot_dimensions(robot)

    ds = cfg.get("dataset") or {}
    env_name = ds.get("env_name") or cfg.get("task")
    pixels = np.dtype(agent.obs_spec.dtype) == np.uint8
    obs_dim, act_dim = int(np.prod(agent.obs_spec.shape)), chunk_shape(agent)[1]  # one step
    if not env_name:
        reason = "the run records no environment" + _NO_DATA_NAMES
        return {
            "observation": _unnamed(reason),
            "action": _unnamed(reason) | {"low": None, "high": None, "bounds_source": reason},
        }
    try:
        found = json.loads(_cached_env_dimensions(str(env_name), pixels, obs_dim, act_dim))
    except Exception as e:  # any environment package's failure: the export goes on without
        reason = f"the environment {env_name} could not be built ({' '.join(str(e).split())[:200]})"
        return {
            "observation": _unnamed(reason + _NO_DATA_NAMES),
            "action": _unnamed(reason) | {"low": None, "high": None, "bounds_source": reason},
        }
    return found


def robot_dimensions(robot: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`dimension_info` of a LeRobot run: observation dimension i of state feature KEY is
    'KEY[i]' (a one-value feature: 'KEY'), in the order the features were concatenated; the
    actions' bounds are the dataset's min/max (the range the model's robot units lie in)."""
    features = robot["observation"]["features"]
    if any(f["kind"] != "state" for f in features) and len(features) > 1:
        observation = _unnamed(
            "a camera's frames (see 'frames') and a state vector (input 'state'): the LeRobot "
            "features of robot.observation.features"
        )
    elif any(f["kind"] != "state" for f in features):
        observation = _unnamed("pixel observations: frames, see 'frames'")
    else:
        names: list[str] = []
        for f in features:
            n = int(np.prod(f["shape"]))
            names.extend([f["key"]] if n == 1 else [f"{f['key']}[{i}]" for i in range(n)])
        observation = {
            "names": names,
            "names_source": "the LeRobot features of the run's observation "
            "(robot.observation.features), in the order training concatenated them: "
            "'KEY[i]' is value i of feature KEY",
        }
    norm = robot["action_normalization"]
    action = _unnamed(
        f"the LeRobot dataset's {norm.get('key', 'action')!r} feature; gfp does not record "
        "its dimensions' names"
    ) | {
        "low": [float(v) for v in norm["min"]],
        "high": [float(v) for v in norm["max"]],
        "bounds_source": f"the dataset's action statistics ({norm.get('stats')} min/max): the "
        "model outputs robot units, in this range",
    }
    return {"observation": observation, "action": action}


def _self_test(
    fmt: str,
    blob: bytes,
    agent: Agent,
    batch: int | str,
    deterministic: bool,
    scale: float = 1.0,
) -> dict[str, Any]:
    """The sidecar's `self_test`: the exported model's actions on gfp_deploy.self_test_inputs,
    which every load repeats, so a damaged file that still loads is refused."""
    n = 1 if batch == "dynamic" else int(batch)
    spec = agent.obs_spec
    noise = noise_shape(agent, (n,))[1:]
    a = chunk_shape(agent)[1]
    d = state_dim(agent)
    extra = {"state_dim": d} if d else {}  # a combined observation's state input
    inputs = self_test_inputs(spec.shape, spec.dtype, a, n, deterministic, noise, **extra)
    names = _input_names(deterministic, bool(d))
    actions = np.asarray(_run_exported(fmt, blob, inputs, names), np.float64)
    how = "deterministic" if noise == (a,) else "deterministic, noise shape"
    if d:
        how += ", state_dim"
    return {
        "batch": n,
        "inputs": "gfp_deploy.self_test_inputs(observation shape, dtype, action_dim, batch, "
        f"{how})",
        "actions": actions.tolist(),
        "tolerance": SELF_TEST_TOLERANCE * scale,
    }


# ---- export ---------------------------------------------------------------------------------
def _versions(fmt: str, blob: bytes) -> dict[str, Any]:
    import gfp

    out: dict[str, Any] = {"gfp": gfp.__version__, "jax": jax.__version__}
    if fmt == "onnx":
        from importlib.metadata import version

        out |= {"jax2onnx": version("jax2onnx"), "onnx": version("onnx")}
        out |= {"opset": _onnx_info(blob)["opset"], "onnxruntime_checked": version("onnxruntime")}
    return out


def _onnx_info(blob: bytes, lowest: int | None = None) -> dict[str, Any]:
    """The sidecar's `onnx`: the model's opset and IR version, the oldest onnxruntime that runs
    it, and the lowest opset its graph needs."""
    import onnx

    model = onnx.load_from_string(blob)
    opset = max(e.version for e in model.opset_import if e.domain in ("", "ai.onnx"))
    info = {
        "opset": opset,
        "ir_version": int(model.ir_version),
        "min_onnxruntime": min_onnxruntime(opset, int(model.ir_version)),
    }
    return info if lowest is None else info | {"lowest_opset": lowest}


def export_policy(
    agent: Agent,
    params: Any,
    policy: str,
    fmt: str,
    out: str | Path,
    *,
    batch: int | str = "dynamic",
    deterministic: bool = False,
    run_info: dict[str, Any] | None = None,
    opset: int | str | None = None,
    dimensions: Mapping[str, Mapping[str, Any]] | None = None,
    robot: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Export `policy` of `agent` with `params` to `out` (format `fmt`), check it against gfp's own
    actions, then write the model and its sidecar FILE.json (each atomically, the sidecar last, with
    the model's sha256 so a mismatched pair is detected). `run_info` adds the run's task, agent
    and config hash to the sidecar; `opset` the ONNX opset (None: the lowest the graph needs);
    `dimensions` what each observation and action dimension means (`dimension_info`; None: not
    recorded, names null); `robot` a LeRobot run's preprocessing and action normalisation
    (gfp.api.robot_record): the model then outputs robot units, the sidecar records it as
    `robot` (which gfp.deploy's `policy.act_raw(obs_dict)` applies) and the action range is the
    dataset's. Returns the sidecar's content."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown --format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    batch = parse_batch(batch)
    if fmt == "onnx":
        opset = parse_opset(opset)
    elif opset is not None:
        raise ConfigError("--opset is for --format onnx")
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory; give a file name, e.g. {out / 'policy'}")
    if out.name.endswith(SIDECAR_SUFFIX):
        raise ConfigError(f"--out {out} ends in {SIDECAR_SUFFIX}, the sidecar's suffix")
    if fmt == "onnx":  # all three before any work: converter, model format, runtime (the check)
        for module in ("jax2onnx", "onnx", "onnxruntime"):
            _require(module, fmt)
    norm = None if robot is None else robot["action_normalization"]
    fn = policy_function(agent, params, policy, deterministic, norm)
    scale = output_scale(norm)
    specs = input_specs(agent, batch, deterministic)
    lowest = None
    if fmt == "onnx":
        names = _input_names(deterministic, bool(state_dim(agent)))
        model, lowest = onnx_model(fn, specs, opset, names)
        blob = model.SerializeToString()
    else:
        blob = stablehlo_bytes(fn, specs)
    check = _check(fmt, blob, fn, agent, batch, deterministic, TOLERANCE * scale)
    self_test = _self_test(fmt, blob, agent, batch, deterministic, scale)

    dim = BATCH_NAME if batch == "dynamic" else batch
    k, a = chunk_shape(agent)
    noise = list(noise_shape(agent, (dim,)))
    inputs = [{"name": "obs", "shape": [dim, *agent.obs_spec.shape], "dtype": agent.obs_spec.dtype}]
    if state_dim(agent):
        inputs.append({"name": "state", "shape": [dim, state_dim(agent)], "dtype": "float32"})
    if not deterministic:
        inputs.append({"name": "z", "shape": noise, "dtype": "float32"})
    output = [dim, a] if k == 1 else [dim, k, a]
    if deterministic:
        noise_text = "z = 0 (baked in)"
    elif noise == [dim, a]:  # the text of sidecars before chunks: unchanged
        noise_text = (
            "z ~ N(0, I), float32 (batch, action_dim), drawn by the caller per action, as gfp "
            "eval does"
        )
    else:
        noise_text = (
            f"z ~ N(0, I), float32 {_shape_text(['batch', *noise[1:]])}, drawn by the caller per "
            "call of the policy (per chunk), as gfp eval does"
        )
    meta: dict[str, Any] = {
        "format": fmt,
        "model_file": out.name,
        "model_sha256": hashlib.sha256(blob).hexdigest(),
        "task": None,
        "agent": agent.name,
        "policy": policy,
        **(run_info or {}),
        "observation": {
            "shape": list(agent.obs_spec.shape),
            "dtype": agent.obs_spec.dtype,
            # a combined observation: the frames above and a float32 state input beside them
            **({"state_dim": state_dim(agent)} if state_dim(agent) else {}),
            **_dimensions_part(dimensions, "observation"),
        },
        **frame_info(agent),
        "action_dim": a,
        "action_range": [-1.0, 1.0] if norm is None else _robot_range(norm),
        "action": {"dim": a, **_dimensions_part(dimensions, "action")},
        "chunk": chunk_record(k, a),
        **({} if robot is None else {"robot": dict(robot)}),
        "batch": batch,
        "deterministic": deterministic,
        "noise": noise_text,
        "inputs": inputs,
        "outputs": [{"name": "action", "shape": output, "dtype": "float32"}],
        **({"onnx": _onnx_info(blob, lowest)} if fmt == "onnx" else {}),
        "check": check,
        "self_test": self_test,
        "versions": _versions(fmt, blob),
    }
    atomic_write_bytes(out, blob)
    atomic_write_json(sidecar_path(out), meta)
    return meta


def _robot_range(record: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "low": [float(v) for v in record["min"]],
        "high": [float(v) for v in record["max"]],
        "units": "robot: the dataset's action min/max (robot.action_normalization), which the "
        "model's un-normalisation maps [-1, 1] onto",
    }


def _dimensions_part(dimensions: Mapping[str, Mapping[str, Any]] | None, part: str) -> dict:
    """The sidecar's names (and for actions bounds) of `part`; null ones saying why when the
    caller gave none."""
    if dimensions is not None:
        return dict(dimensions[part])
    reason = "not recorded: exported without the run's environment (export_policy(dimensions=None))"
    out = _unnamed(reason)
    return out | {"low": None, "high": None, "bounds_source": reason} if part == "action" else out


def _shape_text(shape: list[Any]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def chunk_record(k: int, a: int) -> dict[str, Any]:
    """The sidecar's `chunk`: how many actions one call returns and how to execute them (the
    open-loop rule of Q-chunking, Li, Zhou & Levine 2025, Sec. 4, as gfp eval runs them)."""
    if k == 1:
        return {
            "length": 1,
            "action_dim": a,
            "output": "one action per call: output (batch, action_dim); act at every step",
        }
    return {
        "length": k,
        "action_dim": a,
        "output": f"(batch, {k}, {a}): output[:, i] is the chunk's step i, for i = 0..{k - 1}",
        "execution": f"open loop, as gfp eval does: execute the {k} actions in order, one per "
        "environment step, then call the policy again (at once after an episode ends); "
        "gfp.deploy's policy.act(frame) / policy.reset() or ActionQueue do this",
    }


def frame_info(agent: Agent) -> dict[str, Any]:
    """The sidecar's record of how single frames become the policy's observation: `frame_stack`
    K and `frames` (one frame's shape, the stacking axis, the order, the episode-start rule), the
    rule of training (gfp.engine.frames: clip_indices + stack_clip) and evaluation
    (gfp.evaluate.FrameStack), which gfp.deploy.FrameStack repeats. K = 1 for state policies."""
    k = int(agent.config.frame_stack)
    shape = list(agent.obs_spec.shape)
    frame_shape = [*shape[:-1], shape[-1] // k]
    return {
        "frame_stack": k,
        "frames": {
            "frame_shape": frame_shape,
            "dtype": agent.obs_spec.dtype,
            "axis": STACK_AXIS,
            "order": FRAME_ORDER,
            "episode_start": EPISODE_START,
            "rule": f"observation = concatenate([f(t-{k - 1}), ..., f(t)], axis={STACK_AXIS}) "
            "with f(i) = the episode's first frame for i < 0; gfp.deploy's policy.reset() / "
            "policy.act(frame) or FrameStack do this",
        },
    }


def check_out(run_dir: str | Path, out: str | Path, overwrite: bool) -> None:
    """ConfigError (one line) when writing `out` and its sidecar would replace a file: one of the
    run's own files or any other file already in the run directory, at any depth (never,
    --overwrite or not: the run is what the export comes from), or any existing file without
    `overwrite`. Symbolic links are followed, so a link into the run counts as the run."""
    from gfp.rundir import RUN_FILES

    run = Path(run_dir).resolve()
    for path in (Path(out), sidecar_path(out)):
        target = path.resolve()
        if target.parent == run and (target.name in RUN_FILES or target.name == "tb"):
            raise ConfigError(
                f"--out {out}: {path} is the run's own {target.name}; export to another file"
            )
        if target.is_file() and target.is_relative_to(run):
            raise ConfigError(
                f"--out {out}: {path} is a file of the run directory {run}, never replaced "
                "(--overwrite or not); export to another file"
            )
        if path.is_dir():
            raise ConfigError(f"--out {out}: {path} is a directory; give a file name")
        if path.exists() and not overwrite:
            raise ConfigError(f"{path} exists; pass --overwrite to replace it")


def run_info(cfg: dict[str, Any]) -> dict[str, Any]:
    """The run's identity for the sidecar: task, agent, seed and config hash. Runs recorded before
    config.json carried `config_hash` get it recomputed from their config.json by gfp.job (same
    function), and the sidecar says so (`config_hash_source`)."""
    info = {"task": cfg.get("task"), "agent": cfg.get("agent"), "seed": cfg.get("seed")}
    if cfg.get("config_hash"):
        return info | {"config_hash": cfg["config_hash"], "config_hash_source": "config.json"}
    from gfp.job import config_hash

    return info | {
        "config_hash": config_hash(cfg),
        "config_hash_source": "recomputed from config.json (the run did not record one)",
    }


def cli_main(
    run_dir: str | Path,
    policy: str,
    format: str,  # the CLI flag's name (shadows the builtin here only)
    out: str | Path,
    batch: int | str = "dynamic",
    deterministic: bool = False,
    opset: int | str | None = None,
    overwrite: bool = False,
) -> None:
    """`gfp export RUN_DIR --policy P --format F --out FILE [--batch N|dynamic]
    [--deterministic] [--opset N] [--overwrite]`: ConfigError (one line) for a run without final
    parameters, a policy the agent does not have, an unknown format, a converter that is not
    installed, a bad batch or opset, an existing FILE (or FILE.json) without --overwrite, and a
    FILE that is one of the run's own files (never overwritten)."""
    from gfp.run import load_run

    if format not in FORMATS:  # before loading anything
        raise ConfigError(f"unknown --format {format!r}; choose one of: {', '.join(FORMATS)}")
    parse_batch(batch)
    if format == "onnx":
        parse_opset(opset)
    elif opset is not None:
        raise ConfigError("--opset is for --format onnx")
    from gfp.api import robot_record

    agent, params, cfg = load_run(run_dir)
    check_policy(agent, policy)  # what was asked for, before whether it may be written
    check_out(run_dir, out, overwrite)
    robot = robot_record(cfg, str(Path(run_dir) / "config.json"))
    meta = export_policy(
        agent,
        params,
        policy,
        format,
        out,
        batch=batch,
        deterministic=deterministic,
        run_info=run_info(cfg),
        opset=opset,
        dimensions=dimension_info(cfg, agent, robot),
        robot=robot,
    )
    spec = meta["observation"]
    k = meta["frame_stack"]
    stacked = f" ({k} frames of {meta['frames']['frame_shape']}, oldest first)" if k > 1 else ""
    if spec.get("state_dim"):
        stacked += f" + state float32[{spec['state_dim']}]"
    onnx_v = f", ONNX opset {meta['onnx']['opset']}" if "onnx" in meta else ""
    steps = meta["chunk"]["length"]
    action = f"action[{meta['action_dim']}]"
    if steps > 1:
        action = f"chunk[{steps}, {meta['action_dim']}]"
    if robot is not None:
        keys = ", ".join(f["key"] for f in robot["observation"]["features"])
        action += f" in robot units (raw observation: {keys})"
    print(
        f"gfp: wrote {out} and {sidecar_path(out)}: {meta['agent']} {policy} policy{onnx_v}, "
        f"obs {spec['dtype']}{spec['shape']}{stacked} -> {action}, batch "
        f"{meta['batch']}{', deterministic (z = 0)' if deterministic else ', noise input z'}; "
        f"max |{format} - gfp| = {meta['check']['max_abs_diff']:.2g}"
    )
