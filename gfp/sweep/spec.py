"""What a sweep runs: blocks of tasks x agents x seeds x a hyperparameter grid, from the command
line (`gfp sweep --tasks ... --grid KEY=V1,V2`) or a TOML file (`gfp sweep SPEC.toml`).

A TOML spec holds the same fields as the flags, with underscores (`eval_every`), at the top level
(the defaults of every block) and in any number of `[[block]]` tables, each one sweep on its own
(say one per agent with its own grid); a block's `grid` is merged key by key over the top-level
one. Without a `[[block]]` the top level is the one block:

    tasks = ["cube-double-noisy"]          # or "cube-double-noisy,ogbench-noisy"
    seeds = [0, 1, 2]                      # or "0-7", "0,1,2"
    preset = "cpu"
    steps = 40000
    [[block]]
    agents = ["gfp"]
    grid = { alpha = [0.3, 1, 3], eta = [1e-3] }
    [[block]]
    agents = ["fql"]
    grid = { alpha = [3, 10, 30] }

Besides tasks, agents, seeds and grid, a field is any run setting of `gfp train` (gfp/settings.py:
steps, preset, eval_every, log_every, success_timing, online_steps, balanced_sampling, online_envs,
buffer_size, eta_online, dataset_dir, ...), of its type; unset, it is gfp train's default.

A grid key is an agent hyperparameter (a field of gfp/agents/configs.py); `gfp.alpha` scopes it to
one agent of the block. An unscoped key every agent of the block must have, a scoped key must name
one of the block's agents: anything else is an error before anything runs. A value list is the
grid; a single value is one point. Hidden sizes are written `256x256` (in TOML also `[[256, 256]]`),
since a plain list is a list of grid values.

This module imports neither JAX nor Ray.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gfp import settings as run_settings
from gfp.agents.configs import config_class
from gfp.errors import ConfigError

_KEY = re.compile(r"(?:(?P<agent>[A-Za-z_]\w*)\.)?(?P<field>[A-Za-z_]\w*)")


@dataclasses.dataclass
class Block:
    """One sweep: every task x agent x grid point, each with all `seeds` (vmapped in one run).
    `settings`: the run settings the block gives (gfp/settings.py; read as `block.steps` too),
    each other one is gfp train's default."""

    tasks: list[str]
    agents: list[str]
    seeds: list[int]
    grid: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    where: str = ""  # where the block was given (a spec file's block), for error messages

    def __getattr__(self, name: str) -> Any:
        # only called for what the block itself lacks: a run setting
        if name in run_settings.names():
            return self.__dict__.get("settings", {}).get(name, _unset(name))
        raise AttributeError(f"'Block' object has no attribute {name!r}")

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ConfigError("a sweep needs tasks (--tasks or `tasks` in the spec)")
        if not self.agents:
            raise ConfigError("a sweep needs agents (--agents or `agents` in the spec)")
        if not self.seeds:
            raise ConfigError("a sweep needs seeds (--seeds or `seeds` in the spec)")
        for agent in self.agents:
            config_class(agent)  # ConfigError naming the agents there are
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds {self.seeds} has duplicates")
        self.grid_for_agents()  # every key checked against the agents now

    def grid_for_agents(self) -> dict[str, dict[str, list[Any]]]:
        """agent -> {field: values}: the grid each agent of the block is swept over."""
        out: dict[str, dict[str, list[Any]]] = {a: {} for a in self.agents}
        for key, values in self.grid.items():
            m = _KEY.fullmatch(key)
            if m is None:
                raise ConfigError(f"grid key {key!r} is not FIELD or AGENT.FIELD (e.g. gfp.alpha)")
            if not values:
                raise ConfigError(f"grid key {key!r} has no values")
            field, scope = m["field"], m["agent"]
            if scope is not None:
                config_class(scope)
                if scope not in self.agents:
                    raise ConfigError(
                        f"grid key {key!r} is scoped to agent {scope!r}, which this sweep does not "
                        f"run (agents: {', '.join(self.agents)})"
                    )
            for agent in [scope] if scope else self.agents:
                fields = [f.name for f in dataclasses.fields(config_class(agent))]
                if field not in fields:
                    hint = (
                        f"; scope it to the agents that have it, e.g. {_example(self, field)}"
                        if scope is None and len(self.agents) > 1
                        else ""
                    )
                    raise ConfigError(
                        f"grid key {key!r}: agent {agent!r} has no option {field!r}{hint} "
                        f"({agent} options: {', '.join(fields)})"
                    )
                if field in out[agent]:
                    raise ConfigError(f"grid key {field!r} is given twice for agent {agent!r}")
                out[agent][field] = list(values)
        return out


def _unset(name: str) -> Any:
    return next(s.flag_default for s in run_settings.schema() if s.name == name)


def _example(block: Block, field: str) -> str:
    having = [
        a for a in block.agents if field in {f.name for f in dataclasses.fields(config_class(a))}
    ]
    return f"{having[0]}.{field}=..." if having else f"AGENT.{field}=..."


@dataclasses.dataclass
class SweepSpec:
    blocks: list[Block]

    @property
    def grid_keys(self) -> list[str]:
        """The swept fields (scopes dropped), in order: the extra columns of results.csv."""
        keys: dict[str, None] = {}
        for block in self.blocks:
            for key in block.grid:
                keys[_KEY.fullmatch(key)["field"]] = None
        return list(keys)


# ---- values -------------------------------------------------------------------------------------
def parse_seeds(text: str | Sequence[int] | int, where: str = "--seeds") -> list[int]:
    """'0,1,2', '0-7', '0-3,8' or a list of ints."""
    if isinstance(text, int) and not isinstance(text, bool):
        return [text]
    if isinstance(text, list | tuple):
        if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in text):
            raise ConfigError(f"{where}: seeds must be integers >= 0, got {list(text)!r}")
        return list(text)
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if m is None or (m[2] is not None and int(m[2]) < int(m[1])):
            raise ConfigError(
                f"{where}: {part!r} is not a seed or a range like 0-7 (got {str(text)!r})"
            )
        out += list(range(int(m[1]), int(m[2] or m[1]) + 1))
    return out


def parse_grid_arg(text: str) -> tuple[str, list[str]]:
    """'alpha=0.3,1,3' -> ('alpha', ['0.3', '1', '3']); the values are parsed by the field's type
    when each run's configuration is resolved (the presets' parser: 1e-3, 256x256, true)."""
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--grid {text!r}: expected KEY=V1,V2,... (e.g. --grid alpha=0.3,1,3)")
    items = [v.strip() for v in values.split(",")]
    if not all(items):
        raise ConfigError(f"--grid {text!r}: an empty value")
    return key, items


def split_list(value: str | Sequence[str], where: str) -> list[str]:
    """'a,b' or ['a', 'b'] -> ['a', 'b']."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value]
    else:
        raise ConfigError(f"{where}: expected a comma-separated string or a list of names")
    return [v for v in items if v]


# ---- TOML ---------------------------------------------------------------------------------------
# A block's own fields; every other field is a run setting (gfp/settings.py), of its type.
_OWN: dict[str, tuple[type, ...]] = {
    "tasks": (str, list),
    "agents": (str, list),
    "seeds": (str, list, int),
    "grid": (dict,),
}


def _check_fields(table: Mapping[str, Any], where: str) -> dict[str, Any]:
    fields = [*_OWN, *run_settings.names()]
    out = {}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(f"{where}: unknown field {key!r} (fields: {', '.join(fields)})")
        if key in _OWN and (not isinstance(value, _OWN[key]) or isinstance(value, bool)):
            kinds = " or ".join(t.__name__ for t in _OWN[key])
            raise ConfigError(f"{where}: {key} must be a {kinds}, got {value!r}")
        out[key] = value
    return out | run_settings.spec_values({k: v for k, v in out.items() if k not in _OWN}, where)


def _grid_values(key: str, value: Any, where: str) -> list[Any]:
    if isinstance(value, dict):
        raise ConfigError(f"{where}: grid.{key} must be a value or a list of values")
    return list(value) if isinstance(value, list) else [value]


def block_from_fields(fields: Mapping[str, Any], where: str) -> Block:
    """A Block from spec fields (TOML names); ConfigError naming `where` and the field."""
    f = _check_fields({k: v for k, v in fields.items() if v is not None}, where)
    grid = {k: _grid_values(k, v, where) for k, v in (f.pop("grid", None) or {}).items()}
    try:
        return Block(
            tasks=split_list(f.pop("tasks", []), f"{where}: tasks"),
            agents=split_list(f.pop("agents", []), f"{where}: agents"),
            seeds=parse_seeds(f.pop("seeds", []), f"{where}: seeds"),
            grid=grid,
            settings=f,
            where=where,
        )
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    """A spec file's tables; ConfigError in one line for a file that cannot be read, a binary
    file or one that is not UTF-8 (TOML files are UTF-8 by definition), and for invalid TOML."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror or e})") from None
    if b"\0" in raw:
        raise ConfigError(f"{path}: a binary file, not a TOML sweep spec")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {raw[e.start]:#04x} on line {line}); a TOML sweep "
            "spec must be UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


def load_spec(path: Path | str, **overrides: Any) -> SweepSpec:
    """A TOML spec file. `overrides` (fields given on the command line next to it, e.g. steps)
    replace the file's values in every block; a `grid` override is merged key by key."""
    path = Path(path)
    data = _read_toml(path)
    blocks = data.pop("block", None)
    top = _check_fields(data, str(path))
    overrides = {k: v for k, v in overrides.items() if v is not None}
    extra_grid = overrides.pop("grid", None) or {}
    top["grid"] = {**top.get("grid", {}), **extra_grid}
    if blocks is None:
        return SweepSpec([block_from_fields({**top, **overrides}, str(path))])
    if not isinstance(blocks, list) or not blocks or not all(isinstance(b, dict) for b in blocks):
        raise ConfigError(f"{path}: block must be an array of tables ([[block]])")
    out = []
    for i, raw in enumerate(blocks, start=1):
        where = f"{path} [[block]] {i}"
        own = _check_fields(raw, where)
        grid = {**top["grid"], **own.pop("grid", {}), **extra_grid}
        out.append(block_from_fields({**top, **own, "grid": grid, **overrides}, where))
    return SweepSpec(out)
