"""The paper's per-task hyperparameters as data (`presets.csv`), and the resolver behind them.

`gfp train` and `gfp presets` turn (agent, task, preset, flags) into one agent `Config` with
`resolve()`. Every value's origin is kept, so `gfp presets TASK` can say where it came from.

The table (`gfp/presets.csv`, one row per value)
------------------------------------------------
Columns: `preset, agent, tasks, key, value, source, note`.

* `preset`: `paper` (the per-task values of the paper; always applied), `cpu` (smaller networks and
  batch for CPU runs, same algorithm), `awr` (the GFP-AWR ablation of paper Tab. 7 / Tab. 13) or
  `qc` (Q-chunking's settings, Li, Zhou, Levine 2025, on its 5 OGBench domains `QC_ENVS`).
* `agent`: an agent name (gfp.agents.configs.CONFIGS), or `*` for every agent (then `key` must be
  a shared field).
* `tasks`: `*` (every task) or ONE environment selector from `PAPER_ENVS` (see matching below).
* `key`: a field of that agent's `Config`; `value`: its text, parsed by the field's type:
  floats `0.3`, `1e-4`, `3e4`; ints `256`; bools `true`/`false`; hidden sizes `256x256` (no commas,
  so the CSV needs no quoting; `(256, 256)` and `256,256` are also accepted, e.g. from flags);
  choices as the bare word (`min`, `mean`, ...).
* `source`: where the value is stated (`paper Tab. 13`, `authors code gfp_params.csv`, ...);
  `note`: caveats, in particular every place where the paper and the released code disagree.

User presets: a table in the same format at `$GFP_PRESETS` or `~/.config/gfp/presets.csv`
(`gfp tune` writes its winners there, with their source) whose rows carry preset names of the
user's own, such as `tuned`, and may name any environment. `--preset tuned` applies them on top of
`paper` as a built-in preset would; `--preset FILE.csv` applies every row of that file.

What the table holds (only values the paper or the authors' code state; paper Tabs. 3-5, 13, 14)
-------------------------------------------------------------------------------------------------
* GFP, 20 OGBench state envs and 5 pixel envs: gamma and batch (Tab. 5), alpha and eta (Tab. 13),
  q_agg / target_agg / guidance_agg (code `gfp_params.csv`), flow_steps 30 on
  humanoidmaze-large-navigate (Tab. 4). D4RL: alpha, eta (Tab. 14a), q_agg min on antmaze and mean
  on Adroit. Minari: alpha, eta (Tab. 14b), batch 256 Adroit / 1024 MuJoCo (Tab. 4).
* Baselines on OGBench: Tab. 5's gamma for FQL, ReBRAC and IQL on all 20 envs (it applies to every
  method; FQL keeps 0.99 on antmaze-large-stitch). Tab. 13's FQL alpha (with its batch 1024 and
  M = 30 exceptions), ReBRAC (alpha_actor, alpha_critic) and IQL alpha where Tab. 13 gives one;
  a "-" there means the number was copied from Park et al. 2025, whose settings the paper does
  not give, so no row. ReBRAC takes GFP's critic aggregation on every env (Tab. 3: mean, min on
  antmaze) and batch 1024 on antmaze-giant (Tab. 3). FQL on Minari: alpha (Tab. 14b).
* `awr`: Tab. 13's GFP-AWR (alpha, eta) on its 13 envs, guidance_fn=advantage everywhere, and
  target_agg=mean (y_VaBC) on its cube, humanoidmaze and puzzle envs, where the paper says it
  helped. On other envs `awr` only switches guidance_fn (alpha, eta stay GFP's).

* `qc`: Q-chunking's published settings (its README's commands and its code's defaults, commit
  48283b4) on its domains scene, puzzle-3x3, cube-double, cube-triple (`-play`) and
  cube-quadruple-play (which the GFP paper does not run), for the agents qc (QC: horizon 5,
  action chunking, best-of-N with N = 32), fql (QC-FQL: horizon 5, action chunking, alpha 100:
  the README's value on cube-triple, QC's code default elsewhere, as the per-domain alpha of QC's
  appendix could not be checked; batch 256) and gfp (a gfp choice, not QC's: GFP's paper values
  for the task plus horizon 5 with action chunking). What QC's runs do that a preset cannot set
  (1M offline + 1M online steps, sparse rewards on scene and puzzle-3x3, which gfp has no option
  for, the 100M cube-quadruple dataset) is `PRESET_NOT_SET`, printed by `gfp presets`. For CPU
  runs at QC's chunking, `--preset cpu --horizon 5` (the cpu rows hold for every agent).

Task matching rule (exact, no prefixes or globs)
------------------------------------------------
A task name is reduced to its environment key by `task_env()`:
  1. drop a trailing version `-v<digits>`;
  2. then drop a trailing `-singletask`, `-singletask-task<digits>`.
A row applies when its `tasks` is `*` or equals that key exactly (case-sensitive). So:
  * OGBench: `cube-double-noisy-singletask-task2-v0`, `cube-double-noisy-singletask-v0` and the
    dataset name `cube-double-noisy-v0` all give `cube-double-noisy`. `visual-cube-single-play-...`
    gives `visual-cube-single-play`, which is a different key from `cube-single-play`, so pixel and
    state rows never mix. Pixel rows cover every task of the env, though the paper ran task1 only.
  * D4RL: `antmaze-large-play-v2` gives `antmaze-large-play` and `pen-human-v1` gives `pen-human`;
    no OGBench env name equals a D4RL one (OGBench antmaze is `-navigate/-stitch/-explore`).
  * Minari: `D4RL/pen/human-v2` gives `D4RL/pen/human`, `mujoco/hopper/simple-v0` gives
    `mujoco/hopper/simple`; the slashes keep them apart from D4RL's `pen-human`.
  * The version number is not compared: the table holds one setting per environment, as the paper
    does (D4RL antmaze v2, Adroit v1; Minari Adroit v2, MuJoCo v0; OGBench v0).
A task that matches no selector (e.g. pointmaze, not in the paper) gets the agent's defaults.

Resolution order (later wins)
-----------------------------
  dataclass defaults -> `paper` rows for the task -> the named preset's rows (cpu, awr) -> flags.
Within one preset the more specific row wins, whatever the file order:
(agent, task) > (`*`, task) > (agent, `*`) > (`*`, `*`); a task's own setting is the finer one.
As `cpu` rows apply on top of the paper rows, `cpu` keeps every per-task algorithm value (alpha,
eta, gamma, q_agg, ...) and only shrinks networks and batch (also replacing a paper batch of 1024).

Paper vs code
-------------
Where the paper and the authors' released code disagree, the table holds the CODE value (the
released code is what produced the published numbers) and the note gives the paper's value:
  * GFP antmaze-large-stitch alpha: 0.3 (code `gfp_params.csv`), paper Tab. 13 says 0.03;
  * antsoccer-arena gamma: 0.995 (code CSV; FQL's README also uses 0.995), paper Tab. 5 says 0.99.
    Tab. 5's gamma applies to every method, so the baselines get 0.995 there too;
  * FQL antmaze-large-navigate alpha: 30 (code `fql_params.csv`), paper Tab. 13 says 10.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gfp.agents.configs import (
    CONFIGS,
    BaseConfig,
    Kind,
    coerce,
    config_class,
    field_kinds,
    format_value,
    parse_value,
)
from gfp.errors import ConfigError
from gfp.tasks import (
    D4RL_TASKS,
    OGBENCH_DATASETS,
    PAPER_ENVS,
    PAPER_TASKS,
    REFERENCE_SCORES,
    parse_task,
    task_env,
)

PRESETS: tuple[str, ...] = ("paper", "cpu", "awr", "qc")
TABLE_PATH = Path(__file__).with_name("presets.csv")
COLUMNS: tuple[str, ...] = ("preset", "agent", "tasks", "key", "value", "source", "note")
ANY = "*"
FLAG_SOURCE = "flag"
DEFAULT_SOURCE = "default (paper Tab. 4)"
USER_PRESETS_ENV = "GFP_PRESETS"
_USER_PRESET = re.compile(r"[A-Za-z][\w-]*")
_VERSIONED = re.compile(r"-v\d+$")


def user_presets_path() -> Path:
    """The user's presets table: $GFP_PRESETS, else ~/.config/gfp/presets.csv."""
    path = os.environ.get(USER_PRESETS_ENV) or Path.home() / ".config" / "gfp" / "presets.csv"
    return Path(path).expanduser()


# The paper's 144 tasks (its evaluation protocol) live in the task registry, gfp/tasks.py; its
# environment selectors double as the table's vocabulary: a `tasks` cell outside them is a typo.
_ALL_ENVS: frozenset[str] = frozenset(e for envs in PAPER_ENVS.values() for e in envs)
# Q-chunking's OGBench domains (Li, Zhou, Levine 2025, Sec. 5; its README), 5 tasks each: the
# `qc` preset's environments. cube-quadruple-play is not one of the GFP paper's.
QC_ENVS: tuple[str, ...] = (
    "scene-play",
    "puzzle-3x3-play",
    "cube-double-play",
    "cube-triple-play",
    "cube-quadruple-play",
)
_TABLE_ENVS: frozenset[str] = _ALL_ENVS | frozenset(QC_ENVS)
# What QC's runs do that the `qc` preset cannot set (it holds agent options only), shown by
# `gfp presets ... --preset qc`: environment ('*': every one) -> lines. QC README and its main.py.
PRESET_NOT_SET: dict[str, dict[str, tuple[str, ...]]] = {
    "qc": {
        "*": (
            "QC trains offline-to-online: 1M offline steps, then 1M online steps (QC Fig. 1, "
            "main.py): give --steps 1000000 --online-steps 1000000 for its online numbers",
            "QC evaluates every 100K steps on 50 episodes (main.py --eval_interval, "
            "--eval_episodes; gfp's --eval-every 100000 and --eval-episodes 50)",
        ),
        "scene-play": (
            "QC runs scene with sparse rewards (README: --sparse=True): gfp has no sparse-reward "
            "option, so its rewards (OGBench's) differ from QC's; success is measured the same",
        ),
        "puzzle-3x3-play": (
            "QC runs puzzle-3x3 with sparse rewards (README: --sparse=True): gfp has no "
            "sparse-reward option, so its rewards (OGBench's) differ from QC's; success is "
            "measured the same",
        ),
        "cube-quadruple-play": (
            "QC trains on the 100M-transition dataset (README): a preset cannot choose the data; "
            "give --dataset-dir DIR/cube-quadruple-play-100m-v0 (the sharded folder) to use it",
        ),
    },
}


# The fields and how their values parse are the agents' Config dataclasses'
# (gfp/agents/configs.py, no JAX), the only place they are written.
def _configs() -> Mapping[str, type]:
    """Agent name -> Config class (a test may replace this function)."""
    return CONFIGS


def shared_fields() -> dict[str, Kind]:
    """The fields every agent has (BaseConfig's): what an agent '*' row may set."""
    return field_kinds(BaseConfig)


@dataclasses.dataclass(frozen=True)
class PresetRow:
    """One validated table row; `value` is parsed, `text` is the cell as written."""

    preset: str
    agent: str
    tasks: str
    key: str
    value: Any
    text: str
    source: str
    note: str
    line: int

    def applies(self, agent: str, env: str | None) -> bool:
        return self.agent in (ANY, agent) and (self.tasks == ANY or self.tasks == env)

    @property
    def specificity(self) -> tuple[bool, bool]:
        # Sort key: applied in ascending order, so the most specific row is applied last and wins;
        # a task-specific row outranks an agent-specific one.
        return (self.tasks != ANY, self.agent != ANY)


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


# ---------------------------------------------------------------------------------------------
# The table.
# ---------------------------------------------------------------------------------------------
def load_table(path: Path | str | None = None) -> list[PresetRow]:
    """Parse and validate the preset table; a bad row raises ConfigError naming its line."""
    return list(_load_table(str(path or TABLE_PATH)))


def load_user_table(path: Path | str) -> list[PresetRow]:
    """A user presets table (module docstring); [] if the file does not exist. Re-read when the
    file changes (`gfp tune` may have written it since)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise ConfigError(f"cannot read the preset table {path}: {e}") from e
    return list(_load_table(str(path), user=True, stamp=(st.st_mtime_ns, st.st_size)))


def _preset_rows(preset: str) -> list[PresetRow]:
    """The rows of a preset that is not built in: every row of a FILE.csv, or the user table's
    rows of that name; ConfigError naming the presets there are otherwise."""
    if preset in PRESETS:
        return []
    if preset.endswith(".csv"):
        if not Path(preset).expanduser().is_file():
            raise ConfigError(f"preset file {preset} does not exist")
        rows = load_user_table(Path(preset).expanduser())
        return [dataclasses.replace(r, preset=preset) for r in rows]
    path = user_presets_path()
    rows = [r for r in load_user_table(path) if r.preset == preset]
    if not rows:
        users = sorted({r.preset for r in load_user_table(path)})
        mine = f"; user presets in {path}: {', '.join(users)}" if users else ""
        raise ConfigError(
            f"unknown preset {preset!r} (choices: {', '.join(PRESETS)}{mine}; or a FILE.csv)"
        )
    return rows


@functools.lru_cache(maxsize=8)
def _load_table(
    path: str, user: bool = False, stamp: tuple[int, int] | None = None
) -> tuple[PresetRow, ...]:
    name = Path(path).name
    try:
        handle = open(path, newline="", encoding="utf-8")  # noqa: SIM115 (closed below)
    except OSError as e:
        raise ConfigError(f"cannot read the preset table {path}: {e}") from e
    rows: list[PresetRow] = []
    seen: dict[tuple[str, str, str, str], int] = {}
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != COLUMNS:
            raise ConfigError(f"{name} line 1: header must be {','.join(COLUMNS)}, got {header}")
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue  # blank lines are allowed as separators
            where = f"{name} line {line}"
            if len(cells) != len(COLUMNS):
                raise ConfigError(f"{where}: expected {len(COLUMNS)} cells, got {len(cells)}")
            preset, agent, tasks, key, text, source, note = (c.strip() for c in cells)
            if user and (preset in PRESETS or not _USER_PRESET.fullmatch(preset)):
                raise ConfigError(
                    f"{where}: a user preset needs a name of its own (letters, digits, - and _), "
                    f"not {preset!r}"
                )
            if not user and preset not in PRESETS:
                raise ConfigError(
                    f"{where}: unknown preset {preset!r} (choices: {', '.join(PRESETS)})"
                )
            configs = _configs()
            if agent != ANY and agent not in configs:
                raise ConfigError(
                    f"{where}: unknown agent {agent!r} (choices: *, {', '.join(configs)})"
                )
            fields = shared_fields() if agent == ANY else field_kinds(configs[agent])
            if key not in fields:
                whose = "every agent" if agent == ANY else f"agent {agent!r}"
                raise ConfigError(
                    f"{where}: {key!r} is not a field of {whose} (fields: {', '.join(fields)})"
                )
            if not tasks or (not user and tasks != ANY and tasks not in _TABLE_ENVS):
                hint = (
                    f" (did you mean {task_env(tasks)!r}?)" if task_env(tasks) in _ALL_ENVS else ""
                )
                raise ConfigError(
                    f"{where}: tasks {tasks!r} is not '*' or a paper environment selector{hint}; "
                    "see PAPER_ENVS in gfp/tasks.py"
                )
            try:
                value = parse_value(text, fields[key])
            except ValueError as e:
                raise ConfigError(f"{where}: bad value for {key}: {e}") from None
            if not source:
                raise ConfigError(f"{where}: empty source; every value needs one")
            ident = (preset, agent, tasks, key)
            if ident in seen:
                raise ConfigError(f"{where}: duplicates line {seen[ident]} ({', '.join(ident)})")
            seen[ident] = line
            rows.append(PresetRow(preset, agent, tasks, key, value, text, source, note, line))
    return tuple(rows)


# ---------------------------------------------------------------------------------------------
# Resolution.
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Resolved:
    config: Any
    sources: dict[str, str]
    notes: dict[str, str]
    env: str | None
    task_rows: int  # how many paper rows matched the task specifically (not via '*')
    preset_rows: int = 0  # how many rows of the named preset matched the task specifically


def _close(name: str, choices: list[str]) -> str:
    """'; did you mean X?' for the valid names closest to a misspelled one, else ''."""
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def check_agent(agent: str) -> None:
    """ConfigError for an agent that is not one of the agents' Configs, naming the closest."""
    configs = _configs()
    if agent not in configs:
        raise ConfigError(
            f"unknown agent {agent!r} (choices: {', '.join(configs)}){_close(agent, list(configs))}"
        )


# Every task name the registry knows by heart (gfp/tasks.py): the paper's 144, every OGBench
# singletask task, and the D4RL/Minari names with reference returns. A misspelled name is
# compared with these.
_KNOWN_TASKS: tuple[str, ...] = tuple(
    dict.fromkeys(
        [
            *PAPER_TASKS,
            *(f"{d}-singletask-task{i}-v0" for d in OGBENCH_DATASETS for i in range(1, 6)),
            *D4RL_TASKS,
            *REFERENCE_SCORES,
        ]
    )
)


def close_tasks(name: str) -> list[str]:
    """The known task names (the registry's, above) closest to a misspelled `name`, best first;
    [] when none is close."""
    return difflib.get_close_matches(name.strip(), list(_KNOWN_TASKS), n=3, cutoff=0.6)


def check_task(task: str) -> None:
    """ConfigError for a task name that is a misspelling of a known one (gfp/tasks.py), naming
    the closest. Only a full name (one ending in its version, -v<digits>) is checked: the
    registry refuses a malformed OGBench name itself, and one it would read as a D4RL-style file
    or a Minari id is refused when it is close to a known task but none. An environment name
    without version (`antmaze-large`, the table's selectors), a file path, or a name close to no
    known task (a user's own data) passes."""
    name = task.strip()
    if not _VERSIONED.search(name) or Path(name).expanduser().exists():
        return
    parsed = parse_task(name)  # ConfigError naming the closest OGBench tasks for a typo
    if parsed.source not in ("d4rl", "minari") or parsed.benchmark not in ("other", "minari"):
        return
    if name in _KNOWN_TASKS or task_env(name) in _ALL_ENVS:
        return
    close = close_tasks(name)
    if close:
        raise ConfigError(f"unknown task {name!r}; did you mean {' or '.join(close)}?")


def _resolve(
    agent: str,
    task: str | None,
    preset: str = "paper",
    overrides: Mapping[str, Any] | None = None,
) -> _Resolved:
    check_agent(agent)
    config_cls = config_class(agent, _configs())
    table = [*load_table(), *_preset_rows(preset)]
    if preset != "paper" and not any(r.preset == preset and r.agent in (ANY, agent) for r in table):
        users = sorted({r.agent for r in table if r.preset == preset})
        raise ConfigError(
            f"preset {preset!r} does not apply to agent {agent!r} (it is for: {', '.join(users)})"
        )
    kinds = field_kinds(config_cls)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}  # None = unset flag
    unknown = sorted(set(overrides) - set(kinds))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for agent {agent!r} "
            f"(valid: {', '.join(kinds)})"
        )

    shared_default = DEFAULT_SOURCE
    own_default = DEFAULT_SOURCE if agent == "gfp" else f"default ({agent} Config)"
    shared = shared_fields()
    sources = {k: shared_default if k in shared else own_default for k in kinds}
    notes: dict[str, str] = {}
    values: dict[str, Any] = {}
    env = task_env(task) if task else None
    layers = ("paper",) if preset == "paper" else ("paper", preset)
    task_rows = preset_rows = 0
    paper: dict[str, str] = {}  # field -> "value (source)" set by a paper row, for the notes
    for layer in layers:
        rows = [r for r in table if r.preset == layer and r.applies(agent, env)]
        for row in sorted(rows, key=lambda r: r.specificity):
            if row.key not in kinds:
                raise ConfigError(
                    f"{TABLE_PATH.name} line {row.line}: {row.key!r} is not a field of "
                    f"{config_cls.__qualname__} for agent {agent!r} (fields: {', '.join(kinds)})"
                )
            try:
                value = coerce(row.value, kinds[row.key])
            except ValueError as e:
                raise ConfigError(f"{TABLE_PATH.name} line {row.line}: {row.key}: {e}") from None
            note = row.note
            if layer != "paper" and row.key in paper and value != values[row.key]:
                note = _join(note, f"replaces {paper[row.key]}")
            values[row.key] = value
            sources[row.key] = row.source
            notes[row.key] = note
            if layer == "paper":
                paper[row.key] = f"{format_value(values[row.key])} ({row.source})"
                task_rows += row.tasks != ANY
            else:
                preset_rows += row.tasks != ANY
    for key, raw in overrides.items():
        try:
            value = coerce(raw, kinds[key])
        except ValueError as e:
            raise ConfigError(f"option {key}: {e}") from None
        # Say what the flag replaced, so a flag hiding a per-task value is visible.
        changed = key in paper and value != values[key]
        notes[key] = f"replaces {paper[key]}" if changed else ""
        values[key] = value
        sources[key] = FLAG_SOURCE
    notes = {k: v for k, v in notes.items() if v}
    try:  # the Config checks every value's type and range when it is built
        config = dataclasses.replace(config_cls(), **values)
    except ConfigError as e:
        raise ConfigError(f"{agent} option {e}") from None
    return _Resolved(config, sources, notes, env, task_rows, preset_rows)


def resolve(
    agent: str,
    task: str | None,
    preset: str = "paper",
    overrides: Mapping[str, Any] | None = None,
) -> tuple[BaseConfig, dict[str, str]]:
    """The `Config` for `agent` on `task`, and each field's source.

    Order: dataclass defaults -> `paper` rows for the task -> the named preset's rows -> overrides
    (marked 'flag'; values may be typed or strings such as '1e-4', '256x256', 'true'; None means
    "flag not given" and is skipped). Unknown agent, preset or override key raises ConfigError
    listing the valid choices. A task the paper does not cover gets the defaults.
    """
    r = _resolve(agent, task, preset, overrides)
    return r.config, r.sources


def format_presets(agent: str, task: str | None, preset: str = "paper") -> str:
    """A readable table of every field: value, source and note (what `gfp presets` prints).
    A misspelled agent or task is a ConfigError naming the closest valid names."""
    check_agent(agent)
    if task is not None:
        check_task(task)
    r = _resolve(agent, task, preset)
    lines = [f"agent {agent}, preset {preset}, task {task or '(none)'}"]
    if task is None:
        lines.append("no task given: agent defaults plus the preset's rows for every task")
    elif r.env not in _ALL_ENVS:
        mine = f", then the {preset} preset's values for it" if r.preset_rows else ""
        lines.append(
            f"environment {r.env!r} is not one of the paper's {len(PAPER_TASKS)} tasks: "
            f"agent defaults apply{mine}"
        )
    elif r.task_rows == 0:
        mine = f", then the {preset} preset's values for it" if r.preset_rows else ""
        lines.append(
            f"environment {r.env}: the paper gives no {agent} values for it; defaults apply{mine}"
        )
    else:
        lines.append(f"environment {r.env}")
    names = [f.name for f in dataclasses.fields(r.config)]
    table = [("field", "value", "source", "note")]
    table += [
        (n, format_value(getattr(r.config, n)), r.sources[n], r.notes.get(n, "")) for n in names
    ]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for row in table:
        cells = [row[i].ljust(widths[i]) for i in range(3)] + [row[3]]
        lines.append("  ".join(cells).rstrip())
    lines += _not_set(preset, r.env)
    return "\n".join(lines)


def _not_set(preset: str, env: str | None) -> list[str]:
    """The lines of `PRESET_NOT_SET` for a preset and environment: what the published runs did
    that the preset does not set (and gfp sometimes cannot); [] for the other presets."""
    by_env = PRESET_NOT_SET.get(preset)
    if not by_env:
        return []
    if env is None:
        found = [line for lines in by_env.values() for line in lines]
    else:
        found = [*by_env.get("*", ()), *by_env.get(env, ())]
    if preset == "qc" and env is not None and env not in QC_ENVS:
        found.insert(0, f"QC reports no {env} runs: the qc preset has values for "
                        f"{', '.join(QC_ENVS)} only")  # fmt: skip
    return [f"not set by the {preset} preset: {line}" for line in found]
