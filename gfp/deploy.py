"""Run an exported gfp policy (`gfp export`) with numpy and onnxruntime only: no JAX, no Flax, no
gfp training code.

    from gfp.deploy import load_policy
    policy = load_policy("policy.onnx")       # reads policy.onnx and policy.onnx.json
    action = policy(obs)                       # one observation -> (action_dim,)
    actions = policy(obs_batch, z)             # (batch, *obs_shape), z (batch, action_dim)

A policy that takes noise draws z ~ N(0, I) itself when none is given (seeded by `seed`), which
is how `gfp eval` acts; pass z to control the randomness. Actions are in [-1, 1].

This module imports only the standard library and numpy (onnxruntime when a model is loaded), so
it can also be copied on its own onto a robot. Loading a `--format stablehlo` file is supported
too, but that needs JAX (`jax.export.deserialize`); ONNX is the format for machines without it.
Bad input raises ValueError, a missing file FileNotFoundError, a missing runtime ImportError, each
with a one-line message.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

SIDECAR_SUFFIX = ".json"
_REQUIRED = (
    "format",
    "model_sha256",
    "observation",
    "action_dim",
    "batch",
    "deterministic",
    "inputs",
)


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


class Policy:
    """An exported policy: call it with observations (and optionally noise) to get actions.

    Attributes: `meta` (the sidecar), `obs_shape`, `obs_dtype`, `action_dim`, `batch` (an int,
    or None for a dynamic batch), `deterministic` (no noise input).
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
        self.batch = None if meta["batch"] == "dynamic" else int(meta["batch"])
        self.deterministic = bool(meta["deterministic"])
        self.rng = np.random.default_rng(seed)

    def __repr__(self) -> str:
        m = self.meta
        return (
            f"Policy({self.path.name}: {m.get('agent')} {m.get('policy')} on {m.get('task')}, "
            f"obs {self.obs_dtype}{list(self.obs_shape)} -> action[{self.action_dim}], "
            f"batch {m['batch']}, {m['format']})"
        )

    def __call__(self, obs: Any, z: Any | None = None) -> np.ndarray:
        """Actions for `obs` of shape (batch, *obs_shape), or (*obs_shape) for one observation
        (then the action has shape (action_dim,)). `z`: noise of shape (batch, action_dim), or
        (action_dim,) for one observation; drawn from N(0, I) when None."""
        obs = np.asarray(obs)
        single = obs.shape == self.obs_shape
        if single:
            obs = obs[None]
        if obs.shape[1:] != self.obs_shape:
            raise ValueError(
                f"observations have shape {obs.shape}; this policy takes {list(self.obs_shape)} "
                "or (batch, *that)"
            )
        if not np.can_cast(obs.dtype, self.obs_dtype, "same_kind"):
            raise ValueError(
                f"observations are {obs.dtype}; this policy takes {self.obs_dtype} "
                "(pixel policies take the uint8 frames, not normalised floats)"
            )
        n = obs.shape[0]
        if self.batch is not None and n != self.batch:
            raise ValueError(
                f"this policy was exported for batches of {self.batch}, not {n} "
                "(export with --batch dynamic for any batch size)"
            )
        inputs = [np.ascontiguousarray(obs, self.obs_dtype)]
        if self.deterministic:
            if z is not None:
                raise ValueError("this policy was exported with --deterministic: it takes no z")
        else:
            if z is None:
                z = self.rng.standard_normal((n, self.action_dim), np.float32)
            z = np.asarray(z, np.float32)
            if single and z.shape == (self.action_dim,):
                z = z[None]
            if z.shape != (n, self.action_dim):
                raise ValueError(f"z has shape {z.shape}; expected ({n}, {self.action_dim})")
            inputs.append(np.ascontiguousarray(z))
        actions = np.asarray(self._run(inputs))
        return actions[0] if single else actions


def _onnx_runner(
    blob: bytes, names: Sequence[str], threads: int | None, providers: Sequence[str] | None
) -> Callable[[list[np.ndarray]], np.ndarray]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError(
            "running an ONNX policy needs onnxruntime: pip install onnxruntime "
            "(or pip install 'gfp[onnx]')"
        ) from None
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # onnxruntime warns about every unused constant it prunes
    if threads is not None:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(blob, opts, providers=list(providers or ["CPUExecutionProvider"]))

    def run(inputs: list[np.ndarray]) -> np.ndarray:
        return sess.run(None, dict(zip(names, inputs, strict=True)))[0]

    return run


def _stablehlo_runner(blob: bytes) -> Callable[[list[np.ndarray]], np.ndarray]:
    try:
        from jax import export
    except ImportError:
        raise ImportError(
            "a --format stablehlo policy needs JAX (pip install jax); export with --format onnx "
            "to run without it"
        ) from None
    exported = export.deserialize(bytearray(blob))
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
        raise ValueError(f"{side}: cannot be read as JSON ({e})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{side}: not a gfp export sidecar")
    check_sidecar(meta, str(side))
    blob = path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != meta["model_sha256"]:
        raise ValueError(
            f"{path} is not the model {side.name} describes (sha256 differs); export it again"
        )
    if meta["format"] == "onnx":
        names = [i["name"] for i in meta["inputs"]]
        run = _onnx_runner(blob, names, threads, providers)
    else:
        run = _stablehlo_runner(blob)
    return Policy(path, meta, run, seed)
