"""Agents, one per file, on the shared core in `base.py` and `networks.py`; their hyperparameters
in `configs.py` (which imports no JAX, so `gfp --help` and `gfp presets` stay fast).

A new agent is its Config in `configs.py`, one file here with an `Agent` subclass, and one line
in `configs.AGENT_CLASSES`. The implementations are imported on first use: `gfp.agents.AGENTS`
(name -> class) and `make_agent` load JAX; `gfp.agents.configs` does not.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gfp.agents.configs import AGENT_CLASSES, AGENT_NAMES, CONFIGS, BaseConfig, config_class

if TYPE_CHECKING:
    from gfp.agents.base import Agent, ObsSpec

__all__ = ["AGENTS", "AGENT_NAMES", "CONFIGS", "BaseConfig", "agent_class", "make_agent"]


def agent_class(name: str) -> type[Agent]:
    """The Agent subclass registered as `name` (imports its module, and JAX)."""
    config_class(name)  # ConfigError for an unknown name
    module, cls = AGENT_CLASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_agent(
    name: str,
    config: BaseConfig | None = None,
    *,
    obs_spec: ObsSpec | None = None,
    obs_dim: int | None = None,
    action_dim: int,
) -> Agent:
    """Build agent `name` with `config` (its paper defaults if None) for observations described by
    `obs_spec` (shape and dtype), or float32 vectors of size `obs_dim`."""
    from gfp.agents.base import ObsSpec

    cls = agent_class(name)
    if obs_spec is None:
        if obs_dim is None:
            raise TypeError("make_agent needs obs_spec or obs_dim")
        obs_spec = ObsSpec((obs_dim,))
    return cls(config if config is not None else cls.Config(), obs_spec, action_dim)


def __getattr__(name: str) -> Any:
    if name == "AGENTS":
        return {n: agent_class(n) for n in AGENT_NAMES}
    if name in ("Agent", "TrainState", "ObsSpec"):
        from gfp.agents import base

        return getattr(base, name)
    raise AttributeError(f"module 'gfp.agents' has no attribute {name!r}")
