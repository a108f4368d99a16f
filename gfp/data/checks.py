"""Guards around a run: stopping cleanly on SIGINT/SIGTERM, checking that a dataset fits its
evaluation environment, and checking that a resumed run continues on the same data from a
checkpoint that fits its agent. gfp/run.py calls these; each raises a one-line GfpError."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from gfp.agents.base import TrainState
from gfp.data.load import Dataset
from gfp.errors import ConfigError, DataError


@contextlib.contextmanager
def stop_on_signals() -> Iterator[dict[str, int | None]]:
    """While training: SIGINT/SIGTERM only set a flag (the loop checkpoints at the next chunk
    boundary and stops); a second one stops at once, without a checkpoint."""
    flag: dict[str, int | None] = {"signum": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signal handlers can only be installed from the main thread
        return
    signums = (signal.SIGINT, signal.SIGTERM)
    old = {s: signal.getsignal(s) for s in signums}

    def handler(signum: int, frame: Any) -> None:
        if flag["signum"] is not None:
            for s, h in old.items():
                signal.signal(s, h)
            os.kill(os.getpid(), signum)  # the default action (SIGINT: KeyboardInterrupt)
            return
        flag["signum"] = signum
        print(
            f"\ngfp: {signal.Signals(signum).name} received: writing a checkpoint at the end of "
            "the current chunk, then stopping (send it again to stop at once, without one)",
            file=sys.stderr,
            flush=True,
        )

    for s in signums:
        signal.signal(s, handler)
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def check_env_matches(dataset: Dataset) -> None:
    """The dataset's observation/action shapes must be the evaluation environment's (ConfigError
    naming the mismatch otherwise); checked before anything is compiled. OGBench data is skipped:
    its loader already compared the arrays with the task's environment."""
    if dataset.env_name is None or dataset.source == "ogbench":
        return
    from gfp.evaluate import make_env

    with warnings.catch_warnings():  # e.g. gymnasium's float32 notes: keep the error one line
        warnings.simplefilter("ignore")
        try:
            env = make_env(dataset.env_name)
        except Exception as e:
            reason = " ".join(str(e).split()) or type(e).__name__
            raise ConfigError(
                f"cannot create the evaluation environment {dataset.env_name!r} of "
                f"{dataset.name!r}: {reason}"
            ) from e
        try:
            want = {"observations": env.observation_space.shape, "actions": env.action_space.shape}
        finally:
            env.close()
    problems = [
        f"{key} have shape {tuple(dataset.train[key].shape[1:])} in the dataset but "
        f"{tuple(shape)} in the environment"
        for key, shape in want.items()
        if shape is not None and tuple(dataset.train[key].shape[1:]) != tuple(shape)
    ]
    if problems:
        raise ConfigError(
            f"dataset {dataset.name!r} does not match its environment {dataset.env_name!r}: "
            + "; ".join(problems)
        )


def dataset_fingerprint(dataset: Dataset) -> str:
    """A cheap checksum of the training data (shapes, actions, rewards, masks): a resumed run must
    train on the same data."""
    h = hashlib.sha256()
    for key in ("observations", "actions", "rewards", "masks"):
        x = np.ascontiguousarray(dataset.train[key])
        h.update(f"{key}{x.shape}{x.dtype}".encode())
        if key != "observations":
            h.update(x.tobytes())
    return h.hexdigest()[:16]


def check_same_dataset(dataset: Dataset, recorded: dict[str, Any]) -> None:
    rec = recorded.get("dataset")
    if not isinstance(rec, dict):
        raise ConfigError(
            "config.json: key 'dataset' (the record of the data the run trains on) is missing or "
            "not an object; a resumed run must be checked against it"
        )
    now = {
        "size": dataset.size,
        "obs_dim": dataset.obs_dim,
        "act_dim": dataset.act_dim,
        "fingerprint": dataset_fingerprint(dataset),
    }
    diff = [f"{k} {rec[k]} -> {v}" for k, v in now.items() if k in rec and rec[k] != v]
    if diff:
        raise ConfigError(
            f"the dataset of {recorded['task']!r} changed since the run started "
            f"({', '.join(diff)}); a resumed run must train on the same data"
        )


def restore_state(template: TrainState, state_dict: Any, where: Path) -> TrainState:
    """A checkpoint's state dict as a TrainState shaped like `template` (one seed, host arrays);
    DataError if it is not this agent's state."""
    try:
        state = flax.serialization.from_state_dict(template, state_dict)
    except (KeyError, ValueError, TypeError) as e:
        raise DataError(f"{where}: the checkpoint does not fit this agent ({e})") from e
    leaves = jax.tree.leaves(state)
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(template)[0], leaves, strict=True):
        b = np.asarray(b)
        if a.shape != b.shape or a.dtype != b.dtype:
            raise DataError(
                f"{where}: checkpoint array {jax.tree_util.keystr(path)} is {b.dtype}"
                f"{list(b.shape)}, the agent needs {a.dtype}{list(a.shape)}"
            )
    return jax.tree.map(np.asarray, state)


def stack_states(states: Sequence[TrainState]) -> TrainState:
    return jax.tree.map(lambda *xs: jnp.asarray(np.stack(xs)), *states)
