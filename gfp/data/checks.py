"""Checks of a dataset before training on it: that it fits its evaluation environment
(`check_env_matches`), and that a resumed run continues on the same data (`dataset_fingerprint`,
recorded in config.json, and `check_same_dataset`). Each raises a one-line ConfigError."""

from __future__ import annotations

import hashlib
import warnings
from typing import Any

import numpy as np

from gfp.data.load import Dataset
from gfp.errors import ConfigError


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
