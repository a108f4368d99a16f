"""Agents, one per file, on the shared core in `base.py` and `networks.py`.

A new agent is one file with a `Config` and an `Agent` subclass, plus one line here.
"""

from gfp.agents.base import Agent, BaseConfig, TrainState
from gfp.agents.bc import BC, FlowBC
from gfp.agents.fql import FQL
from gfp.agents.gfp import GFP
from gfp.agents.iql import IQL
from gfp.agents.rebrac import ReBRAC

AGENTS: dict[str, type[Agent]] = {cls.name: cls for cls in (GFP, FQL, ReBRAC, IQL, BC, FlowBC)}

__all__ = ["AGENTS", "Agent", "BaseConfig", "TrainState", "make_agent"]


def make_agent(
    name: str, config: BaseConfig | None = None, *, obs_dim: int, action_dim: int
) -> Agent:
    """Build agent `name` with `config` (its paper defaults if None)."""
    from gfp.errors import ConfigError

    if name not in AGENTS:
        raise ConfigError(f"unknown agent {name!r}; choose one of: {', '.join(AGENTS)}")
    cls = AGENTS[name]
    return cls(config if config is not None else cls.Config(), obs_dim, action_dim)
