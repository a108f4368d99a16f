"""Run an exported gfp policy (`gfp export`) with numpy and onnxruntime only: no JAX, no Flax, no
gfp training code. This is the `gfp-deploy` distribution (deploy/ in gfp's repository:
`pip install ./deploy`); in gfp, `gfp.deploy` is this same module.

    from gfp_deploy import load_policy        # or: from gfp.deploy import load_policy
    policy = load_policy("policy.onnx")       # reads policy.onnx and policy.onnx.json
    action = policy(obs)                       # one observation -> (action_dim,)
    actions = policy(obs_batch, z)             # (batch, *obs_shape), z (batch, action_dim)

A policy that takes noise draws z ~ N(0, I) itself when none is given (seeded by `seed`), which
is how `gfp eval` acts; pass z to control the randomness. Actions are in [-1, 1].

Pixel policies trained with frame_stack K > 1 take K frames stacked along the channel (last) axis,
oldest first; at an episode's start the stack holds the episode's first frame K times. That is the
rule of training (gfp.engine.frames) and of `gfp eval` (gfp.evaluate.FrameStack), and the sidecar
records it (`frame_stack`, `frames`). Feed single frames as they come and the policy stacks them:

    policy.reset()                             # at every episode start
    action = policy.act(frame)                 # frame: (H, W, C) uint8, as the environment gives it

`FrameStack` is the same stacker on its own (for batched environments, or to see the inputs).

Action chunks (Q-chunking, Li, Zhou & Levine 2025, Sec. 4): a policy trained with
action_chunking outputs k actions at once, and the sidecar's `chunk` says so (`length` k, the
one-step `action_dim` A; the model's output is (batch, k, A), step i of the chunk at [:, i]).
`policy(obs)` and `policy.act_chunk(frame)` return the whole chunk; `policy.act(frame)` executes
it open loop, as gfp evaluates: a queue per batch row holds the chunk's actions not yet taken,
the policy is called again only when it is empty, and `reset()` clears it. With k = 1 (every
policy without chunking, and sidecars written before `chunk` was recorded) `act` calls the
policy at every step, as before. `ActionQueue` is that queue on its own.

Robot observations (a policy exported from a run on a LeRobot dataset; the sidecar's `robot`):
the model outputs robot units (the dataset's action normalisation undone inside it), and
`policy.act_raw(obs_dict)` takes the raw observation dict a robot produces ({feature name:
value}: state vectors as float arrays, a camera frame as uint8 (H, W, 3) at the training size),
makes the observation as training did (`RawObservation`), stacks it and executes chunks as `act`:

    policy.reset()                             # at every episode start
    action = policy.act_raw({"observation.state": state})   # robot units, (action_dim,)

A camera and state features together (a combined observation) make the model's inputs 'obs'
(the stacked frames) and 'state' (float32 (batch, d), the current step's), and the sidecar's
`observation.state_dim` d; `policy(obs)` and `policy.act(frame)` then take the dict
{'pixels': ..., 'state': ...} (`PIXELS`, `STATE`), which `act_raw` builds from the robot's dict.

ONNX versions: the sidecar's `onnx` records the model's opset and IR version and the oldest
onnxruntime that runs it (`min_onnxruntime`, from `ONNXRUNTIME_OPSETS`); a model the installed
onnxruntime cannot load is refused with one line naming both versions.

This module imports only the standard library and numpy (onnxruntime when a model is loaded), so
it can also be copied on its own onto a robot. Loading a `--format stablehlo` file is supported
too, but that needs JAX (`jax.export.deserialize`); ONNX is the format for machines without it.
Bad input raises `InvalidInput` (observations or noise of the wrong shape or dtype, NaN or inf in
them), a damaged or mismatched model `InvalidModel` (the sha256 differs from the sidecar's, the
runtime cannot load it, its inputs/outputs are not the sidecar's shapes, or it no longer gives the
actions recorded at export: `self_test`); both are ValueError (`DeployError`). A missing file
raises FileNotFoundError, a missing runtime ImportError; each with a one-line message.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

SIDECAR_SUFFIX = ".json"


class DeployError(ValueError):
    """A policy that cannot be loaded or called as asked; the message is one line naming the file
    or the input and what is wrong."""


class InvalidInput(DeployError):
    """Observations or noise the policy cannot take: shape, dtype, or NaN / inf values."""


class InvalidModel(DeployError):
    """A model file that is not the one its sidecar describes, or that the runtime cannot load."""


# The self-test recorded at export (sidecar `self_test`): inputs made by integer arithmetic alone
# (`self_test_inputs`, identical on every machine and numpy version), the actions the exported
# model gave on them, and the tolerance a load accepts. A flipped byte in the weights still loads
# and runs, and only gives other actions: this is what catches it.
SELF_TEST_TOLERANCE = 1e-4
_REQUIRED = (
    "format",
    "model_sha256",
    "observation",
    "action_dim",
    "batch",
    "deterministic",
    "inputs",
)


# The newest ONNX opset and IR version each onnxruntime release (major, minor) implements, from
# onnxruntime's version matrix (docs/Versioning.md); a release runs every model stamped with an
# opset and IR version up to its own. Releases after the last row implement at least its opset.
ONNXRUNTIME_OPSETS: tuple[tuple[tuple[int, int], int, int], ...] = (
    ((1, 14), 18, 8),
    ((1, 15), 19, 9),
    ((1, 17), 20, 9),
    ((1, 18), 21, 10),
    ((1, 21), 22, 10),
    ((1, 22), 23, 11),
)
OLDEST_ONNXRUNTIME = (1, 18)  # the oldest onnxruntime gfp-deploy declares and tests


def min_onnxruntime(opset: int, ir_version: int = 0) -> str:
    """The oldest onnxruntime (not older than OLDEST_ONNXRUNTIME) that implements `opset` and
    `ir_version`, as "MAJOR.MINOR"; ValueError when no listed release does."""
    for release, max_opset, max_ir in ONNXRUNTIME_OPSETS:
        if release >= OLDEST_ONNXRUNTIME and opset <= max_opset and ir_version <= max_ir:
            return f"{release[0]}.{release[1]}"
    newest = ONNXRUNTIME_OPSETS[-1]
    raise ValueError(
        f"ONNX opset {opset} (IR version {ir_version}) is newer than any onnxruntime this "
        f"gfp-deploy knows (onnxruntime {newest[0][0]}.{newest[0][1]}: opset {newest[1]})"
    )


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:2])


def runtime_max_opset(version: str) -> int | None:
    """The newest opset onnxruntime `version` implements (None when older than the table)."""
    found = None
    for release, max_opset, _ in ONNXRUNTIME_OPSETS:
        if _version_tuple(version) >= release:
            found = max_opset
    return found


# The frame order every gfp policy with frame_stack K expects (recorded in the sidecar's `frames`).
FRAME_ORDER = "oldest_first"  # channels [0:C] the oldest frame, [(K-1)C:KC] the newest
EPISODE_START = "repeat_first"  # the first observation of an episode fills all K places
STACK_AXIS = -1  # frames are concatenated along the last (channel) axis


class FrameStack:
    """The last `k` frames stacked along the last axis, oldest first, as gfp trains and evaluates:
    the first frame after `reset()` fills all `k` places, each later one pushes the oldest out.

        stack = FrameStack(3)
        obs = stack.push(first_frame)          # [f0, f0, f0]
        obs = stack.push(next_frame)           # [f0, f0, f1]
        stack.reset()                          # the next push starts a new episode

    A frame may carry leading batch axes (n environments reset together); only the last axis
    grows (C -> k * C). With k = 1 a frame is returned as it is."""

    def __init__(self, k: int):
        if int(k) != k or k < 1:
            raise ValueError(f"frame stack must be a positive integer, not {k!r}")
        self.k = int(k)
        self._frames: list[np.ndarray] = []
        self._restart: np.ndarray | None = None  # batch rows restarting at the next push

    def reset(self, rows: Any = None) -> None:
        """Start a new episode: the next frame pushed fills the whole stack. `rows` (indices or a
        boolean mask of the leading batch axis): only those environments restart; the next
        frame fills their stacks, the others push it as usual."""
        if rows is None or not self._frames:
            self._frames, self._restart = [], None
            return
        mask = np.zeros(len(self._frames[-1]), bool)
        mask[np.asarray(rows)] = True
        self._restart = mask if self._restart is None else self._restart | mask

    def push(self, frame: Any) -> np.ndarray:
        """Add `frame` (the first of an episode after `reset`) and return the stacked input."""
        frame = np.asarray(frame)
        if self._frames and frame.shape != self._frames[-1].shape:
            raise ValueError(
                f"frame has shape {frame.shape}; this episode's frames have "
                f"{self._frames[-1].shape}"
            )
        if not self._frames:
            self._frames = [frame] * self.k
        else:
            self._frames = [*self._frames[1:], frame]
            if self._restart is not None:  # rows whose episode restarts: `frame` fills them
                restart, self._restart = self._restart, None
                for j, old in enumerate(self._frames[:-1]):
                    old = np.array(old)
                    old[restart] = frame[restart]
                    self._frames[j] = old
        return self.stacked

    @property
    def stacked(self) -> np.ndarray:
        """The current input: the k frames concatenated along the last axis, oldest first."""
        if not self._frames:
            raise ValueError("no frame yet: push the episode's first frame after reset()")
        if self.k == 1:
            return self._frames[0]
        return np.concatenate(self._frames, axis=STACK_AXIS)


class ActionQueue:
    """Open-loop execution of action chunks (Q-chunking, Li, Zhou & Levine 2025, Sec. 4: a chunk
    of k actions is executed step by step before the policy acts again), per batch row.

        queue = ActionQueue(k)
        action = queue.pop(plan)               # plan() -> chunks (batch, k, A); called only
                                               # when some row has no action left
        queue.reset()                          # episode start: every row re-plans
        queue.reset(rows=[2])                  # only environment 2 re-plans at the next pop

    A row whose queue is empty takes its row of the new chunk; the others keep theirs (the
    policy is computed for the whole batch, as a fixed-batch model needs). With k = 1 `plan` is
    called at every pop and its action returned as it is."""

    def __init__(self, k: int):
        if int(k) != k or k < 1:
            raise ValueError(f"chunk length must be a positive integer, not {k!r}")
        self.k = int(k)
        self._chunks: np.ndarray | None = None  # (batch, k, A): the chunks being executed
        self._next: np.ndarray | None = None  # (batch,): index of each row's next action

    def reset(self, rows: Any = None) -> None:
        """Clear the queue (every row, or the batch rows `rows`: indices or a boolean mask); the
        next `pop` re-plans for them."""
        if rows is None or self._next is None:
            self._chunks, self._next = None, None
        else:
            self._next[np.asarray(rows)] = self.k

    @property
    def empty(self) -> np.ndarray | None:
        """Which rows the next `pop` re-plans (None: all, nothing is held)."""
        return None if self._next is None else self._next >= self.k

    def pop(self, plan: Callable[[], np.ndarray]) -> np.ndarray:
        """The next action of every row (batch, A): from the queue, after `plan()` (chunks of
        shape (batch, k, A)) refilled the rows that had none left."""
        empty = self.empty
        if empty is None or empty.any():
            chunks = np.asarray(plan())
            if chunks.ndim < 3 or chunks.shape[1] != self.k:
                raise ValueError(f"chunks have shape {chunks.shape}; expected (batch, {self.k}, A)")
            if self.k == 1:
                self._chunks, self._next = None, None
                return chunks[:, 0]
            if empty is None:
                self._chunks, self._next = chunks.copy(), np.zeros(len(chunks), np.int64)
            elif chunks.shape != self._chunks.shape:
                raise ValueError(
                    f"chunks have shape {chunks.shape}, the queued ones {self._chunks.shape} "
                    "(another batch size?); call reset() first"
                )
            else:
                self._chunks[empty], self._next[empty] = chunks[empty], 0
        rows = np.arange(len(self._next))
        action = self._chunks[rows, self._next]
        self._next = self._next + 1
        return action


def _hashed(n: int, salt: int) -> np.ndarray:
    """n pseudo-random integers in [0, 2**32) from Knuth's multiplicative hash (exact in int64)."""
    k = np.arange(n, dtype=np.int64) + salt * 1_000_003
    return (k * 2654435761 + 12345) % (1 << 32)


def self_test_inputs(
    obs_shape: Sequence[int],
    obs_dtype: Any,
    action_dim: int,
    batch: int,
    deterministic: bool,
    noise_shape: Sequence[int] | None = None,
    state_dim: int = 0,
) -> list[np.ndarray]:
    """The self-test's inputs: obs (batch, *obs_shape) (floats in [-2, 2), or integers over the
    dtype's range), for a combined observation (`state_dim` d > 0) state (batch, d) in [-2, 2),
    and, unless `deterministic`, z (batch, *noise_shape) in [-2, 2) (noise_shape None:
    (action_dim,))."""
    dtype = np.dtype(obs_dtype)
    size = batch * int(np.prod(obs_shape))
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        obs = (info.min + _hashed(size, 1) % (int(info.max) - int(info.min) + 1)).astype(dtype)
    else:
        obs = (_hashed(size, 1) / float(1 << 32) * 4.0 - 2.0).astype(dtype)
    inputs = [obs.reshape(batch, *obs_shape)]
    if state_dim:
        state = _hashed(batch * int(state_dim), 3) / float(1 << 32) * 4.0 - 2.0
        inputs.append(state.astype(np.float32).reshape(batch, int(state_dim)))
    if not deterministic:
        noise = (int(action_dim),) if noise_shape is None else tuple(int(n) for n in noise_shape)
        z = _hashed(batch * int(np.prod(noise)), 2) / float(1 << 32) * 4.0 - 2.0
        inputs.append(z.astype(np.float32).reshape(batch, *noise))
    return inputs


def _non_finite(name: str, x: np.ndarray, names: Sequence[str] | None = None) -> str | None:
    """None if `x` (batch, *shape) is finite, else a message naming the input, the rows and the
    dimensions (with their names when known) that hold NaN or inf."""
    if not np.issubdtype(x.dtype, np.floating):
        return None
    bad = ~np.isfinite(x)
    if not bad.any():
        return None
    flat = bad.reshape(len(x), -1)
    rows = np.flatnonzero(flat.any(axis=1))
    dims = np.flatnonzero(flat.any(axis=0))
    kinds = " and ".join(k for k, m in (("NaN", np.isnan(x)), ("inf", np.isinf(x))) if m.any())
    shown = [
        f"{d} ({names[d]})" if names is not None and d < len(names) else str(d) for d in dims[:8]
    ]
    more = f" and {len(dims) - 8} more" if len(dims) > 8 else ""
    return (
        f"{name} holds {kinds} in row(s) {', '.join(map(str, rows[:8]))}"
        f"{' ...' if len(rows) > 8 else ''} at dimension(s) {', '.join(shown)}{more}; the "
        "policy takes finite values only"
    )


def _shape_text(shape: Sequence[Any]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _dims_agree(recorded: Sequence[Any], model: Sequence[Any]) -> bool:
    """Sidecar shape (ints, 'batch') against a model's (ints, or str / None for a free axis)."""
    if len(recorded) != len(model):
        return False
    for r, m in zip(recorded, model, strict=True):
        r_free, m_free = not isinstance(r, int), not isinstance(m, int)
        if r_free != m_free or (not r_free and r != m):
            return False
    return True


def check_model_signature(
    where: str,
    meta: Mapping[str, Any],
    inputs: Sequence[tuple[str, Sequence[Any]]],
    outputs: Sequence[tuple[str, Sequence[Any]]],
) -> None:
    """InvalidModel unless the model's inputs and outputs (name, shape) are the sidecar's
    `inputs` / `outputs`, and those agree with its `observation` shape, `action_dim` and `chunk`
    (output (batch, action_dim), or (batch, k, action_dim) for a chunk of k > 1; the noise's last
    axis k * action_dim)."""
    obs_shape = list(meta["observation"]["shape"])
    action_dim = int(meta["action_dim"])
    k = chunk_length(meta)
    for kind, recorded, actual in (
        ("input", meta["inputs"], inputs),
        ("output", meta.get("outputs") or [], outputs),
    ):
        if not recorded:
            continue
        if [r["name"] for r in recorded] != [a[0] for a in actual]:
            raise InvalidModel(
                f"{where}: the sidecar lists {kind}s {[r['name'] for r in recorded]}, the model "
                f"has {[a[0] for a in actual]}; export it again"
            )
        for r, (name, shape) in zip(recorded, actual, strict=True):
            if not _dims_agree(r["shape"], shape):
                raise InvalidModel(
                    f"{where}: the sidecar says {kind} {name!r} has shape "
                    f"{_shape_text(r['shape'])}, the model's is {_shape_text(shape)}; "
                    "export it again"
                )
    obs_in = list(meta["inputs"][0]["shape"][1:])
    if obs_in != obs_shape:
        raise InvalidModel(
            f"{where}: the sidecar's observation shape {_shape_text(obs_shape)} is not its input "
            f"'obs' shape {_shape_text(obs_in)} without the batch axis; export it again"
        )
    noise = [spec for spec in meta["inputs"][1:] if spec["name"] != "state"]
    wanted = [(spec, spec["shape"][-1:], [k * action_dim]) for spec in noise]
    d = int(meta["observation"].get("state_dim", 0))
    wanted += [(s, s["shape"][1:], [d]) for s in meta["inputs"] if s["name"] == "state"]
    out_shape = [action_dim] if k == 1 else [k, action_dim]
    wanted += [(spec, spec["shape"][1:], out_shape) for spec in meta.get("outputs") or []]
    for spec, have, want in wanted:
        if list(have) != want:
            chunk = f" and chunk length {k}" if k > 1 else ""
            raise InvalidModel(
                f"{where}: the sidecar's action_dim {action_dim}{chunk} does not fit its "
                f"{spec['name']!r} shape {_shape_text(spec['shape'])}; export it again"
            )


def chunk_length(meta: Mapping[str, Any]) -> int:
    """k, the actions one call of the policy returns (the sidecar's `chunk.length`; 1 for
    sidecars without `chunk`, written before gfp recorded it, when every policy returned one)."""
    chunk = meta.get("chunk") or {}
    k = chunk.get("length", 1)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidModel(f"the sidecar's chunk length {k!r} is not a positive integer")
    return k


def sidecar_path(model: str | Path) -> Path:
    """The JSON written next to an exported model: FILE.json (so `policy.onnx` and
    `policy.stablehlo` exported side by side keep separate ones)."""
    return Path(f"{model}{SIDECAR_SUFFIX}")


def check_sidecar(meta: Mapping[str, Any], where: str) -> None:
    """ValueError unless `meta` is a sidecar this module can use (the keys it reads)."""
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise ValueError(f"{where}: sidecar lacks {', '.join(missing)}; re-export with gfp export")
    if meta["format"] not in ("onnx", "stablehlo"):
        raise ValueError(f"{where}: unknown model format {meta['format']!r} in the sidecar")
    try:
        chunk_length(meta)
    except InvalidModel as e:
        raise InvalidModel(f"{where}: {e}; re-export with gfp export") from None


def _names(part: Mapping[str, Any] | None, flat: bool) -> list[str] | None:
    names = (part or {}).get("names")
    return list(names) if names is not None and flat else None


# ---- raw robot observations (policies trained on a LeRobot dataset) ------------------------------
RAW_STATE, RAW_CAMERA = "state", "camera"
# A combined observation (a camera's frames and a state vector) as a policy takes it: a dict
# {PIXELS: uint8 frames (stacked), STATE: float32 (d,)} (gfp.agents.base's PIXELS and STATE).
PIXELS, STATE = "pixels", "state"


class RawObservation:
    """The observation preprocessing of a policy trained on a LeRobot dataset, as its sidecar's
    `robot.observation` records it: a raw observation dict {feature name: value}, as a robot
    produces it, becomes one observation as training saw it (before frame stacking).

    * state features (`kind` 'state'): float (or integer) vectors of the recorded shape,
      concatenated in the recorded order into one float32 vector, as the loader concatenated
      the dataset's columns (gfp.data.lerobot_loader);
    * a camera (`kind` 'camera'): a uint8 (H, W, 3) RGB frame at the training size. A frame of
      another size is refused: training decoded the video at that size with FFmpeg's scaler
      (PyAV's `to_ndarray(height=, width=)`), which scales the video's YUV 4:2:0 planes and
      converts them to RGB in one fixed-point pass; that operation cannot be repeated exactly on
      the RGB frame a camera gives, so resizing is left to the robot, never approximated here.

    Every value may carry one leading batch axis (n robots), the same n for every feature. Keys
    the policy does not read are ignored. A missing key, a wrong shape or dtype, NaN or inf
    raise `InvalidInput` with one line naming the key."""

    def __init__(self, record: Mapping[str, Any], where: str = "sidecar"):
        try:
            self.features = [
                (str(f["key"]), str(f["kind"]), tuple(int(n) for n in f["shape"]), f)
                for f in record["features"]
            ]
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidModel(f"{where}: robot.observation is malformed ({e!r})") from None
        kinds = {kind for _, kind, _, _ in self.features}
        if not self.features or not kinds <= {RAW_STATE, RAW_CAMERA}:
            raise InvalidModel(
                f"{where}: robot.observation.features lists kinds {sorted(kinds)}; this gfp.deploy "
                f"reads {RAW_STATE!r} and {RAW_CAMERA!r} features"
            )
        if sum(kind == RAW_CAMERA for _, kind, _, _ in self.features) > 1:
            raise InvalidModel(
                f"{where}: robot.observation lists several cameras; this gfp.deploy reads one"
            )
        self.keys = [key for key, _, _, _ in self.features]
        self.combined = RAW_CAMERA in kinds and RAW_STATE in kinds

    def __call__(self, obs: Mapping[str, Any]) -> Any:
        """The observation (a float32 vector, or a uint8 frame, or for a camera and state
        features together the dict {PIXELS: frame, STATE: float32 vector}; with a leading batch
        axis when the values have one) the policy's frame stack takes."""
        if not isinstance(obs, Mapping):
            raise InvalidInput(
                f"the raw observation is a {type(obs).__name__}; pass a dict {{feature name: "
                f"value}} holding {', '.join(self.keys)}"
            )
        parts, sizes = [], []  # sizes: each value's leading batch size (None: no batch axis)
        for key, kind, shape, _ in self.features:
            if key not in obs:
                raise InvalidInput(
                    f"raw observation: {key!r} is missing (this policy reads "
                    f"{', '.join(self.keys)}, in that order)"
                )
            value = np.asarray(obs[key])
            check = _raw_camera if kind == RAW_CAMERA else _raw_state
            value = check(key, value, shape)
            n = value.shape[0] if value.ndim > len(shape) else None
            if sizes and n != sizes[0]:

                def text(m: int | None) -> str:
                    return "no batch axis" if m is None else f"a batch of {m}"

                raise InvalidInput(
                    f"raw observation: {key!r} has {text(n)}, {self.keys[0]!r} {text(sizes[0])}; "
                    "give every feature the same leading batch axis (or none)"
                )
            parts.append(value)
            sizes.append(n)
        kinds = [kind for _, kind, _, _ in self.features]
        state = [p for p, kind in zip(parts, kinds, strict=True) if kind == RAW_STATE]
        if RAW_CAMERA not in kinds:
            return state[0] if len(state) == 1 else np.concatenate(state, axis=-1)
        frame = parts[kinds.index(RAW_CAMERA)]
        if not state:
            return frame
        return {PIXELS: frame, STATE: np.concatenate(state, axis=-1)}


def _raw_batched(key: str, value: np.ndarray, shape: tuple[int, ...], what: str) -> None:
    if value.shape != shape and (value.ndim != len(shape) + 1 or value.shape[1:] != shape):
        raise InvalidInput(
            f"raw observation: {key!r} has shape {list(value.shape)}; this policy takes "
            f"{what} {list(shape)} (or (batch, *that))"
        )


def _raw_state(key: str, value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A state feature as the float32 vector(s) training read (the parquet column's values)."""
    if value.dtype == bool or not (
        np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)
    ):
        raise InvalidInput(
            f"raw observation: {key!r} is {value.dtype}; this policy takes it as a float vector "
            f"of shape {list(shape)}"
        )
    _raw_batched(key, value, shape, "a vector of")
    value = value.astype(np.float32)
    flat = value.reshape(1 if value.ndim == len(shape) else len(value), -1)
    bad = _non_finite(f"raw observation {key!r}", flat)
    if bad is not None:
        raise InvalidInput(bad)
    return value.reshape(*value.shape[: value.ndim - len(shape)], -1)


def _raw_camera(key: str, value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A camera frame as training decoded it: uint8 RGB at the training size (class docstring:
    why another size is refused)."""
    if value.dtype != np.uint8:
        raise InvalidInput(
            f"raw observation: {key!r} is {value.dtype}; this policy takes uint8 RGB frames "
            f"{list(shape)} as the camera gives them (not normalised floats)"
        )
    size = value.shape[-3:-1] if value.ndim >= 3 else None
    if value.ndim in (3, 4) and value.shape[-1] == shape[-1] and size != shape[:2]:
        raise InvalidInput(
            f"raw observation: {key!r} is a {size[0]}x{size[1]} frame; this policy was trained "
            f"on {shape[0]}x{shape[1]} frames (the video decoded at that size by FFmpeg's scaler, "
            "from its YUV frames, which gfp.deploy cannot repeat exactly on an RGB frame): "
            f"resize it to {shape[0]}x{shape[1]} before act_raw"
        )
    _raw_batched(key, value, shape, "frames of")
    return value


class Policy:
    """An exported policy: call it with observations (and optionally noise) to get actions.

    Attributes: `meta` (the sidecar), `obs_shape`, `obs_dtype`, `action_dim` (A, one step's
    action), `chunk_len` (k: the actions one call returns, 1 without action chunking),
    `chunk_shape` ((k, A)), `noise_shape` (z of one observation, None when `deterministic`),
    `batch` (an int, or None for a dynamic batch), `deterministic` (no noise input),
    `frame_stack` (K, None when the sidecar predates recording it), `frame_shape` (one frame
    as the environment gives it), `observation_names`, `action_names`, `action_low`,
    `action_high` (what each dimension means and the environment's action bounds of one step,
    None where the sidecar records none), `robot`, `raw`, `action_normalization` (a LeRobot
    run's record, its `RawObservation` and action normalisation; None for other policies).

    Two ways to call it: `policy(obs)` with observations already stacked as the policy takes them
    (`obs_shape`), or `policy.reset()` at an episode's start and `policy.act(frame)` with each
    single frame, which stacks them as training and `gfp eval` did (`FrameStack`) and executes
    a chunk (k > 1) open loop (`ActionQueue`); `policy.act_chunk(frame)` gives the whole chunk.
    """

    def __init__(
        self,
        path: Path,
        meta: dict[str, Any],
        run: Callable[[list[np.ndarray]], np.ndarray],
        seed: int | None,
    ):
        self.path = path
        self.meta = meta
        self._run = run
        self.obs_shape = tuple(int(n) for n in meta["observation"]["shape"])
        self.obs_dtype = np.dtype(meta["observation"]["dtype"])
        self.action_dim = int(meta["action_dim"])
        self.chunk_len = chunk_length(meta)
        self.chunk_shape = (self.chunk_len, self.action_dim)
        self.batch = None if meta["batch"] == "dynamic" else int(meta["batch"])
        self.deterministic = bool(meta["deterministic"])
        self.noise_shape = None
        # A combined observation (a camera's frames and a state vector): d > 0, input 'state'.
        self.state_dim = int(meta["observation"].get("state_dim", 0))
        if not self.deterministic:
            inputs = [i for i in meta["inputs"] if i["name"] != "state"]
            noise = inputs[1]["shape"][1:] if len(inputs) > 1 else [self.action_dim]
            self.noise_shape = tuple(int(n) for n in noise)
        self._queue = ActionQueue(self.chunk_len)
        # What each dimension means, where the run's environment says (None otherwise, and for
        # sidecars written before gfp recorded it); the sidecar's names_source says why.
        self.observation_names = _names(meta.get("observation"), len(self.obs_shape) == 1)
        action = meta.get("action") or {}
        self.action_names = _names(action, True)
        self.action_low = None if action.get("low") is None else np.asarray(action["low"])
        self.action_high = None if action.get("high") is None else np.asarray(action["high"])
        self.rng = np.random.default_rng(seed)
        k = meta.get("frame_stack")
        self.frame_stack = None if k is None else int(k)
        frames = meta.get("frames") or {}
        if self.frame_stack is None:
            self.frame_shape = None
        elif "frame_shape" in frames:
            self.frame_shape = tuple(int(n) for n in frames["frame_shape"])
        else:
            self.frame_shape = (*self.obs_shape[:-1], self.obs_shape[-1] // self.frame_stack)
        if self.frame_stack is not None:
            order = (frames.get("order", FRAME_ORDER), frames.get("episode_start", EPISODE_START))
            if (
                order != (FRAME_ORDER, EPISODE_START)
                or frames.get("axis", STACK_AXIS) != STACK_AXIS
            ):
                raise ValueError(
                    f"{path}: the sidecar asks for frames stacked as {frames}; this gfp.deploy "
                    f"stacks {FRAME_ORDER}, {EPISODE_START} along axis {STACK_AXIS}"
                )
        self._stack = FrameStack(self.frame_stack) if self.frame_stack is not None else None
        # A policy trained on a LeRobot dataset: the raw observation's preprocessing and the
        # action normalisation the graph undoes (its output is in robot units).
        self.robot = meta.get("robot")
        self.action_normalization = (self.robot or {}).get("action_normalization")
        self.raw = None
        if self.robot is not None:
            self.raw = RawObservation(self.robot.get("observation") or {}, f"{path}.json")

    def __repr__(self) -> str:
        m = self.meta
        out = f"action[{self.action_dim}]"
        if self.chunk_len > 1:
            out = f"chunk[{self.chunk_len}, {self.action_dim}]"
        if self.robot is not None:
            out += " in robot units"
        return (
            f"Policy({self.path.name}: {m.get('agent')} {m.get('policy')} on {m.get('task')}, "
            f"obs {self.obs_dtype}{list(self.obs_shape)} -> {out}, "
            f"batch {m['batch']}, {m['format']})"
        )

    def __call__(self, obs: Any, z: Any | None = None) -> np.ndarray:
        """Actions for `obs` of shape (batch, *obs_shape), or (*obs_shape) for one observation
        (then the action has shape (action_dim,)); for a chunked policy (chunk_len k > 1) the
        chunks, (batch, k, action_dim) or (k, action_dim). `z`: noise of shape
        (batch, *noise_shape), or noise_shape for one observation (noise_shape is (action_dim,)
        without chunking); drawn from N(0, I) when None. A combined policy (`state_dim` d > 0)
        takes `obs` as the dict {'pixels': the stacked frames, 'state': (batch, d) or (d,)}."""
        state = None
        if self.state_dim:
            obs, state = self._split(obs)
        obs = np.asarray(obs)
        single = obs.shape == self.obs_shape
        if single:
            obs = obs[None]
        if obs.shape[1:] != self.obs_shape:
            hint = ""
            if (self.frame_stack or 1) > 1:
                hint = (
                    f" ({self.frame_stack} frames of {list(self.frame_shape)} stacked; feed "
                    "single frames with policy.reset() and policy.act(frame))"
                )
            raise InvalidInput(
                f"observations have shape {obs.shape}; this policy takes {list(self.obs_shape)} "
                f"or (batch, *that){hint}"
            )
        if not np.can_cast(obs.dtype, self.obs_dtype, "same_kind"):
            raise InvalidInput(
                f"observations are {obs.dtype}; this policy takes {self.obs_dtype} "
                "(pixel policies take the uint8 frames, not normalised floats)"
            )
        bad = _non_finite("observation (input 'obs')", obs, self.observation_names)
        if bad is not None:
            raise InvalidInput(bad)
        n = obs.shape[0]
        if self.batch is not None and n != self.batch:
            raise InvalidInput(
                f"this policy was exported for batches of {self.batch}, not {n} "
                "(export with --batch dynamic for any batch size)"
            )
        inputs = [np.ascontiguousarray(obs, self.obs_dtype)]
        if state is not None:
            inputs.append(self._state_input(state, single, n))
        if self.deterministic:
            if z is not None:
                raise InvalidInput("this policy was exported with --deterministic: it takes no z")
        else:
            noise = self.noise_shape
            if z is None:
                z = self.rng.standard_normal((n, *noise), np.float32)
            z = np.asarray(z, np.float32)
            if single and z.shape == noise:
                z = z[None]
            if z.shape != (n, *noise):
                want = ", ".join(str(d) for d in (n, *noise))
                raise InvalidInput(f"z has shape {z.shape}; expected ({want})")
            bad = _non_finite("noise (input 'z')", z)
            if bad is not None:
                raise InvalidInput(bad)
            inputs.append(np.ascontiguousarray(z))
        actions = np.asarray(self._run(inputs))
        return actions[0] if single else actions

    def _split(self, obs: Any) -> tuple[Any, Any]:
        """(the frames, the state) of a combined observation {PIXELS: ..., STATE: ...}."""
        if not isinstance(obs, Mapping) or not {PIXELS, STATE} <= set(obs):
            raise InvalidInput(
                f"this policy takes a camera's frames and a state vector: pass {{{PIXELS!r}: "
                f"frames {list(self.obs_shape)}, {STATE!r}: float32 [{self.state_dim}]}} (or "
                f"act_raw with the robot's observation dict), not {type(obs).__name__}"
            )
        return obs[PIXELS], obs[STATE]

    def _state_input(self, state: Any, single: bool, n: int) -> np.ndarray:
        """The combined observation's state as the model's input 'state' (n, d) float32."""
        state = np.asarray(state)
        want = (self.state_dim,) if single else (n, self.state_dim)
        if state.shape != want or not (
            np.issubdtype(state.dtype, np.floating) or np.issubdtype(state.dtype, np.integer)
        ):
            raise InvalidInput(
                f"state is {state.dtype}{list(state.shape)}; this policy takes a float32 "
                f"{list(want)} beside its frames"
            )
        state = state.astype(np.float32).reshape(n, self.state_dim)
        bad = _non_finite("state (input 'state')", state)
        if bad is not None:
            raise InvalidInput(bad)
        return np.ascontiguousarray(state)

    def _frames(self) -> FrameStack:
        if self._stack is None:
            raise ValueError(
                f"{self.path.name}.json does not record the frame stack (exported by an older "
                "gfp); export it again, or stack the frames yourself and call policy(obs)"
            )
        return self._stack

    def reset(self, rows: Any = None) -> None:
        """Start an episode: the next `act(frame)` fills the frame stack with that frame and
        plans a new chunk. `rows` (indices or a boolean mask of the batch axis): only those
        environments start a new episode."""
        self._frames().reset(rows)
        self._queue.reset(rows)

    def _push(self, frame: Any) -> tuple[Any, bool]:
        """(the stacked input after `frame`, whether `frame` was one frame without batch axis);
        a combined observation's frame is pushed, its state passed on as it is."""
        if self.state_dim:
            pixels, state = self._split(frame)
            stacked, single = self._push_frame(pixels)
            return {PIXELS: stacked, STATE: state}, single
        return self._push_frame(frame)

    def _push_frame(self, frame: Any) -> tuple[np.ndarray, bool]:
        stack = self._frames()
        frame = np.asarray(frame)
        n = len(self.frame_shape)
        if frame.ndim < n or frame.shape[frame.ndim - n :] != self.frame_shape:
            raise ValueError(
                f"frame has shape {frame.shape}; this policy takes single frames of "
                f"{list(self.frame_shape)} (or (batch, *that)), {self.frame_stack} stacked"
            )
        return stack.push(frame), frame.ndim == n

    def act_chunk(self, frame: Any, z: Any | None = None) -> np.ndarray:
        """The whole chunk (chunk_len, action_dim) (or (batch, chunk_len, action_dim)) for the
        newest single frame, pushed onto the frame stack as `act` does; the action queue is left
        alone (in one episode, call either `act` or `act_chunk` at each step)."""
        obs, _ = self._push(frame)
        out = self(obs, z)
        return out[..., None, :] if self.chunk_len == 1 else out

    def act(self, frame: Any, z: Any | None = None) -> np.ndarray:
        """The action for the newest single frame (`frame_shape`, or (batch, *frame_shape) for
        environments reset together): the frame is pushed onto the stack (the first after
        `reset()` fills it; at every step) and the action is the next one of the chunk being
        executed open loop (`ActionQueue`): only when a row has none left is the policy called
        on the stacked input (`stacked_input`, with `z` when given) and the new chunk queued.
        With chunk_len 1 the policy acts at every step, as `policy(stacked_input, z)`."""
        obs, single = self._push(frame)

        def plan() -> np.ndarray:
            out = self(obs, z)
            out = out[None] if single else out
            return out[:, None, :] if self.chunk_len == 1 else out

        action = self._queue.pop(plan)
        return action[0] if single else action

    def preprocess(self, obs: Mapping[str, Any]) -> np.ndarray:
        """The observation (a state vector or a frame, before stacking) training made of the raw
        observation dict `obs` ({feature name: value}, as the robot produces it; `RawObservation`);
        only for policies exported from a LeRobot run (the sidecar's `robot`)."""
        if self.raw is None:
            raise DeployError(
                f"{self.path.name}.json records no raw-observation preprocessing (only policies "
                "exported from a run on a LeRobot dataset do); call policy.act(obs) with the "
                f"observation {list(self.frame_shape or self.obs_shape)} itself"
            )
        return self.raw(obs)

    def act_raw(self, obs: Mapping[str, Any], z: Any | None = None) -> np.ndarray:
        """The action, in robot units, for the raw observation dict `obs` ({feature name:
        value}: state vectors as float arrays, camera frames as uint8 (H, W, 3) at the training
        size; one leading batch axis allowed), preprocessed as training did (`preprocess`), then
        pushed onto the frame stack and executed open loop as `act` does: call `reset()` at
        every episode start. The model itself un-normalises (the sidecar's
        `robot.action_normalization`)."""
        return self.act(self.preprocess(obs), z)

    @property
    def stacked_input(self) -> np.ndarray:
        """The stacked observation the last `act` fed the policy."""
        return self._frames().stacked


def _onnx_runner(
    blob: bytes,
    names: Sequence[str],
    threads: int | None,
    providers: Sequence[str] | None,
    where: str = "model",
    meta: Mapping[str, Any] | None = None,
) -> Callable[[list[np.ndarray]], np.ndarray]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError(
            "running an ONNX policy needs onnxruntime: pip install onnxruntime "
            "(pip install ./deploy installs gfp-deploy with it; in gfp: pip install 'gfp[onnx]')"
        ) from None
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # onnxruntime warns about every unused constant it prunes
    if threads is not None:
        opts.intra_op_num_threads = threads
    try:
        sess = ort.InferenceSession(
            blob, opts, providers=list(providers or ["CPUExecutionProvider"])
        )
    except Exception as e:  # onnxruntime raises its own pybind classes
        raise InvalidModel(_load_error(where, meta, ort.__version__, str(e))) from None
    if meta is not None:
        check_model_signature(
            where,
            meta,
            [(i.name, list(i.shape)) for i in sess.get_inputs()],
            [(o.name, list(o.shape)) for o in sess.get_outputs()],
        )

    def run(inputs: list[np.ndarray]) -> np.ndarray:
        return sess.run(None, dict(zip(names, inputs, strict=True)))[0]

    return run


def _model_versions(meta: Mapping[str, Any] | None) -> tuple[int | None, int | None]:
    """(opset, IR version) of the model as its sidecar records them (None when it does not)."""
    onnx = (meta or {}).get("onnx") or {}
    opset = onnx.get("opset", ((meta or {}).get("versions") or {}).get("opset"))
    return (None if opset is None else int(opset)), onnx.get("ir_version")


def _load_error(where: str, meta: Mapping[str, Any] | None, version: str, error: str) -> str:
    """One line for a model onnxruntime `version` refused: the model's opset (and IR version)
    against the ones this onnxruntime implements when that is the reason, else its own message's
    first line."""
    opset, ir = _model_versions(meta)
    text = " ".join(error.split())
    m_opset = re.search(r"Opset (\d+) is under development", text)
    m_max = re.search(r"official support for domain ai\.onnx is till opset (\d+)", text)
    m_ir = re.search(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)", text)
    if m_opset or m_max or m_ir or (opset and (runtime_max_opset(version) or opset) < opset):
        if m_opset:
            opset = int(m_opset.group(1))
        top = int(m_max.group(1)) if m_max else runtime_max_opset(version)
        what = f"ONNX opset {opset}" if opset is not None else "its ONNX opset"
        if m_ir:
            what += f", IR version {m_ir.group(1)}"
            top_ir = f", IR version {m_ir.group(2)}"
        else:
            top_ir = ""
        need = (meta or {}).get("onnx", {}).get("min_onnxruntime")
        return (
            f"{where}: the model is {what}{f' (needs onnxruntime >= {need})' if need else ''}; "
            f"the installed onnxruntime {version} supports up to opset "
            f"{top if top is not None else '?'}{top_ir}: upgrade onnxruntime, or re-export with "
            f"gfp export --opset {top if top is not None else 'N'}"
        )
    first = text[:300]
    return f"{where}: onnxruntime {version} cannot load the model: {first}"


def _stablehlo_runner(
    blob: bytes, where: str = "model"
) -> Callable[[list[np.ndarray]], np.ndarray]:
    try:
        from jax import export
    except ImportError:
        raise ImportError(
            "a --format stablehlo policy needs JAX (pip install jax); export with --format onnx "
            "to run without it"
        ) from None
    try:
        exported = export.deserialize(bytearray(blob))
    except Exception as e:  # flatbuffers / MLIR errors of a damaged file
        raise InvalidModel(
            f"{where}: JAX cannot deserialize the model ({' '.join(str(e).split())[:300]})"
        ) from None
    return lambda inputs: np.asarray(exported.call(*inputs))


def load_policy(
    path: str | Path,
    *,
    seed: int | None = None,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
) -> Policy:
    """Load an exported policy and its sidecar (FILE.json). `seed` seeds the noise drawn when no z
    is given; `threads` sets onnxruntime's intra-op threads (its default: one per core);
    `providers` its execution providers (default: CPU)."""
    path = Path(path)
    side = sidecar_path(path)
    for f in (path, side):
        if not f.is_file():
            raise FileNotFoundError(
                f"{f}: no such file (gfp export writes the model and FILE.json)"
            )
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError) as e:
        raise InvalidModel(f"{side}: cannot be read as JSON ({' '.join(str(e).split())})") from None
    if not isinstance(meta, dict):
        raise InvalidModel(f"{side}: not a gfp export sidecar")
    check_sidecar(meta, str(side))
    blob = path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != meta["model_sha256"]:
        raise InvalidModel(
            f"{path} is not the model {side.name} describes (sha256 differs); export it again"
        )
    if meta["format"] == "onnx":
        names = [i["name"] for i in meta["inputs"]]
        run = _onnx_runner(blob, names, threads, providers, str(path), meta)
    else:
        run = _stablehlo_runner(blob, str(path))
    policy = Policy(path, meta, run, seed)
    run_self_test(policy, run)
    return policy


def run_self_test(policy: Policy, run: Callable[[list[np.ndarray]], np.ndarray]) -> None:
    """InvalidModel unless the model gives the actions its sidecar's `self_test` recorded at
    export (sidecars without one, from older exports, are not tested)."""
    test = policy.meta.get("self_test")
    if not test:
        return
    where = str(policy.path)
    inputs = self_test_inputs(
        policy.obs_shape,
        policy.obs_dtype,
        policy.action_dim,
        int(test["batch"]),
        policy.deterministic,
        policy.noise_shape,
        policy.state_dim,
    )
    want = np.asarray(test["actions"], np.float64)
    try:
        got = np.asarray(run(inputs), np.float64)
    except Exception as e:  # the runtime's own classes
        raise InvalidModel(
            f"{where}: the model fails on its self-test inputs ({' '.join(str(e).split())[:300]})"
            "; export it again"
        ) from None
    if got.shape != want.shape:
        raise InvalidModel(
            f"{where}: the model returns shape {list(got.shape)} on its self-test, the sidecar "
            f"recorded {list(want.shape)}; export it again"
        )
    diff = float(np.max(np.abs(got - want))) if got.size else 0.0
    tol = float(test.get("tolerance", SELF_TEST_TOLERANCE))
    if not diff <= tol:  # NaN fails too
        raise InvalidModel(
            f"{where}: the model's actions on its self-test differ from those recorded at export "
            f"by {diff:.3g} (> {tol:g}): the file is damaged; export it again"
        )
