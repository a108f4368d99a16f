"""The result store: every evaluation of every run, as one flat table (`results.csv`).

`gfp report` reads it and `gfp sweep`/`gfp tune` write it. A run directory (one seed, written by
`gfp train`) holds `config.json` and `eval.csv` (`summary.json` once the run has finished); a
multi-seed run is a parent folder with `seed0/`, `seed1/`, ...; a sweep folder holds run
directories at any depth. All of them are found by their `config.json`.

results.csv has one row per (run, evaluation step, policy) and the columns `RESULT_COLUMNS`, then
one column per grid key (the swept hyperparameters, read from the run's `agent_config`):

* `env`: the environment key (OGBench: the task without `-singletask-taskN-v0`; D4RL and Minari:
  the task without its version), `benchmark`: one of `BENCHMARKS`;
* `config_id`: the first 10 hex digits of the sha256 of the canonical JSON of
  {task, agent, agent_config, steps}, so the seeds of one configuration share it;
* `phase`: 'offline' or 'online' (a run fine-tuned online, `gfp train --online-steps`: its
  evaluations after the offline steps; eval.csv's own `phase` column where it has one); a
  results.csv written before the column is read as 'offline';
* `total_steps`: the planned length of the row's phase (offline: the offline steps; online: the
  offline plus the online steps); `finished`: whether summary.json exists (a run that is
  still going is reported with its latest evaluations);
* `success` (0..1), `return`, `normalized_score` (x100, D4RL/Minari only): as in eval.csv; a
  missing value is an empty cell here and NaN in Python;
* `val_td_error`, `val_flow_loss`, `val_action_mse`, `val_q_data`, `val_q_actor`, ...: a run's
  validation metrics (gfp.engine.validation; eval.csv's `val_*` columns, a `POLICY/val_*` one
  for the row's policy), after the grid columns, only where some run has them;
* `success_timing`: 'pre' or 'post' as recorded in config.json, empty for runs that predate it;
* `preset`, `dataset` (its name), `dataset_size` (transitions), `eval_episodes`, `gfp_version`,
  `git_commit`: from config.json (empty where it does not record them), so that a report can say
  what its numbers were made with and keep runs of different budgets apart;
* `made_by`: 'gfp tune' for a run of a tuning folder (its sweep.json records only `gfp tune`
  invocations: the tuning seeds, which a report chooses settings on), 'gfp sweep' for another
  sweep folder's, '' for a run of its own (gfp train).

Reading never imports JAX, so a report is quick to make on any machine.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gfp.agents.configs import parse_value
from gfp.errors import DataError

# what a run was made with (config.json), for the report's budgets and provenance; a results.csv
# written before these columns reads them as empty
PROVENANCE_COLUMNS: tuple[str, ...] = (
    "preset",
    "dataset",
    "dataset_size",
    "eval_episodes",
    "gfp_version",
    "git_commit",
    "made_by",
)
LATER_COLUMNS = ("phase", *PROVENANCE_COLUMNS)  # optional when reading a results.csv
RESULT_COLUMNS: tuple[str, ...] = (
    "task",
    "env",
    "benchmark",
    "agent",
    "config_id",
    "seed",
    "step",
    "phase",
    "total_steps",
    "finished",
    "policy",
    "success",
    "return",
    "normalized_score",
    "success_timing",
    "run_dir",
    *PROVENANCE_COLUMNS,
)
METRICS: tuple[str, ...] = ("success", "return", "normalized_score")
PHASES: tuple[str, ...] = ("offline", "online")
BENCHMARKS: tuple[str, ...] = ("ogbench", "ogbench-pixel", "d4rl", "minari", "other")
_INT_COLUMNS = ("seed", "step", "total_steps")
VAL_PREFIX = "val_"  # validation metrics' columns (gfp.engine.validation), numbers like METRICS


# ---- tasks ------------------------------------------------------------------------------------
def task_env_benchmark(task: str) -> tuple[str, str]:
    """(environment key, benchmark) of a task name, as the task registry (`gfp.tasks`) reads it;
    a name it refuses now (a dataset file that has moved, say) is ('its env key', 'other')."""
    from gfp.errors import GfpError
    from gfp.tasks import parse_task, task_env

    try:
        rec = parse_task(task)
    except GfpError:
        return task_env(task), "other"
    return rec.env_key, rec.benchmark


def config_id(task: str, agent: str, agent_config: Mapping[str, Any], steps: int | None) -> str:
    """First 10 hex digits of sha256 over the canonical JSON of the configuration (seed excluded,
    so every seed of one configuration has the same id)."""
    blob = json.dumps(
        {"task": task, "agent": agent, "agent_config": agent_config, "steps": steps},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


# ---- run directories --------------------------------------------------------------------------
def find_run_dirs(path: str | Path) -> list[Path]:
    """Every run directory (a folder holding config.json) at or below `path`, sorted. A run's own
    subfolders (tb/) are not searched again; hidden folders are skipped."""
    root = Path(path)
    if (root / "config.json").is_file():
        return [root]
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if "config.json" in filenames:
            found.append(Path(dirpath))
            dirnames[:] = []  # a run folder holds no other runs
    return sorted(found)


def _not_text(path: Path, e: UnicodeDecodeError, what: str) -> DataError:
    """The one-line error for a file that is not UTF-8 text (binary, or another encoding)."""
    return DataError(
        f"{path}: not UTF-8 text (byte {e.start} is 0x{e.object[e.start]:02x}): a binary file or "
        f"another encoding, not {what}"
    )


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """config.json of a run, checked for the keys a report needs."""
    path = Path(run_dir) / "config.json"
    try:
        cfg = json.loads(path.read_text())
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from e
    except UnicodeDecodeError as e:
        raise _not_text(path, e, "a gfp config.json") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from e
    if not isinstance(cfg, dict):
        raise DataError(f"{path}: expected a JSON object, found {type(cfg).__name__}")
    for key in ("task", "agent", "seed"):
        if key not in cfg:
            raise DataError(f"{path}: missing the field {key!r}; not a gfp run directory")
    return cfg


def _float(text: str | None, where: str) -> float:
    if text is None or text.strip() == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{where}: {text!r} is not a number") from None


def read_eval_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """(policies, rows) of an eval.csv. A short last row (a run killed while appending) is
    dropped; a short row elsewhere is an error naming its line."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return [], []
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from e
    except UnicodeDecodeError as e:
        raise _not_text(path, e, "a gfp eval.csv") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        return [], []
    if "step" not in header:
        raise DataError(f"{path}: no 'step' column in the header; not a gfp eval.csv")
    policies: list[str] = []
    for col in header:
        policy, _, metric = col.rpartition("/")
        scored = metric in ("success", "return") or metric.startswith(VAL_PREFIX)
        if policy and scored and policy not in policies:
            policies.append(policy)
    rows = list(reader)
    out = []
    for i, values in enumerate(rows):
        if len(values) != len(header):
            if i == len(rows) - 1 and not text.endswith("\n"):
                break  # half-written last row of a live or killed run
            raise DataError(
                f"{path}, line {i + 2}: {len(values)} fields where the header has {len(header)}"
            )
        out.append(dict(zip(header, values, strict=True)))
    return policies, out


def rows_from_run_dir(run_dir: str | Path, grid_keys: Sequence[str] = ()) -> list[dict[str, Any]]:
    """results.csv rows of one run directory: one per (evaluation step, policy), in step order.
    Columns other than these (eval_seconds, ...) are ignored; `phase` is eval.csv's, or from the
    step (after the offline steps: 'online') where eval.csv has none."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    task, agent = str(cfg["task"]), str(cfg["agent"])
    agent_config = cfg.get("agent_config") or {}
    env, benchmark = task_env_benchmark(task)
    total = cfg.get("steps")
    base = {
        "task": task,
        "env": env,
        "benchmark": benchmark,
        "agent": agent,
        "config_id": config_id(task, agent, agent_config, total),
        "seed": int(cfg["seed"]),
        "total_steps": int(total) if total is not None else -1,
        "finished": (run_dir / "summary.json").is_file(),
        "success_timing": str(cfg.get("success_timing") or ""),
        "run_dir": str(run_dir),
        **provenance(cfg),
        "made_by": made_by(run_dir),
    }
    grid = {k: agent_config.get(k, "") for k in grid_keys}
    online = int(cfg.get("online_steps") or 0)
    eval_path = run_dir / "eval.csv"
    policies, evals = read_eval_csv(eval_path)
    # the validation metrics of this run: of the agent ('val_x') or of a policy ('POLICY/val_x')
    val = list(dict.fromkeys(c.rpartition("/")[2] for c in (evals[0] if evals else ())))
    val = [m for m in val if m.startswith(VAL_PREFIX)]
    out = []
    for line, ev in enumerate(evals, start=2):
        where = f"{eval_path}, line {line}"
        step = _float(ev["step"], where)
        if math.isnan(step):
            raise DataError(f"{where}: the step is empty")
        phase = (ev.get("phase") or "").strip()
        if phase not in PHASES:
            phase = "online" if online and total is not None and step > int(total) else "offline"
        # an online row's length counts the environment steps too (gfp train --online-steps)
        length = {"total_steps": base["total_steps"] + online} if phase == "online" else {}
        for policy in policies:
            row = {**base, **length, "step": int(step), "phase": phase, "policy": policy}
            for metric in METRICS:
                row[metric] = _float(ev.get(f"{policy}/{metric}"), where)
            figures = {m: _float(ev.get(f"{policy}/{m}", ev.get(m)), where) for m in val}
            out.append({c: row[c] for c in RESULT_COLUMNS} | grid | figures)
    return out


def made_by(run_dir: Path) -> str:
    """'gfp tune', 'gfp sweep' or '': what made the run, from the sweep.json of the nearest folder
    above it that has one (gfp/sweep/plan.py writes it with every invocation's command)."""
    for folder in list(Path(run_dir).resolve().parents)[:6]:
        path = folder / "sweep.json"
        if path.is_file():
            try:
                record = json.loads(path.read_text())
                commands = [str(i.get("command", "")) for i in record.get("invocations") or []]
            except (OSError, ValueError, AttributeError):
                return "gfp sweep"
            tune = commands and all(c.startswith("gfp tune") for c in commands)
            return "gfp tune" if tune else "gfp sweep"
    return ""


def provenance(cfg: Mapping[str, Any]) -> dict[str, str]:
    """The PROVENANCE_COLUMNS of a run's config.json, as text ('' where not recorded)."""
    dataset = cfg.get("dataset") if isinstance(cfg.get("dataset"), dict) else {}
    versions = cfg.get("versions") if isinstance(cfg.get("versions"), dict) else {}
    values = {
        "preset": cfg.get("preset"),
        "dataset": dataset.get("name"),
        "dataset_size": dataset.get("size"),
        "eval_episodes": cfg.get("eval_episodes"),
        "gfp_version": versions.get("gfp"),
        "git_commit": versions.get("git_commit"),
    }
    return {k: "" if v is None else str(v) for k, v in values.items()}


def infer_grid_keys(configs: Iterable[Mapping[str, Any]]) -> list[str]:
    """The agent_config keys whose values differ between runs of the same (task, agent): the
    swept hyperparameters of a sweep (per-task presets differ between tasks, so they are not
    counted)."""
    seen: dict[tuple[str, str], dict[str, set[str]]] = {}
    for cfg in configs:
        values = seen.setdefault((str(cfg.get("task")), str(cfg.get("agent"))), {})
        for k, v in (cfg.get("agent_config") or {}).items():
            values.setdefault(k, set()).add(json.dumps(v, sort_keys=True))
    keys = {k for per in seen.values() for k, vals in per.items() if len(vals) > 1}
    return sorted(keys)


def build_results(
    paths: str | Path | Sequence[str | Path], grid_keys: Sequence[str] | None = ()
) -> list[dict[str, Any]]:
    """Rows of every run directory under `paths` (each counted once). `grid_keys=None` infers
    them (`infer_grid_keys`)."""
    if isinstance(paths, str | Path):
        paths = [paths]
    dirs: list[Path] = []
    for p in paths:
        for d in find_run_dirs(p):
            if d.resolve() not in {x.resolve() for x in dirs}:
                dirs.append(d)
    if grid_keys is None:
        grid_keys = infer_grid_keys(read_run_config(d) for d in dirs)
    rows: list[dict[str, Any]] = []
    for d in dirs:
        rows.extend(rows_from_run_dir(d, grid_keys))
    return rows


# ---- results.csv ------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    if isinstance(value, list | dict | tuple):
        return json.dumps(value, sort_keys=True)
    return str(value)


def results_csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """results.csv content: RESULT_COLUMNS, then the grid columns in the order first met (a row
    without one of them gets an empty cell)."""
    extra = list(dict.fromkeys(k for row in rows for k in row if k not in RESULT_COLUMNS))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*RESULT_COLUMNS, *extra])
    for row in rows:
        writer.writerow([_cell(row.get(c, "")) for c in (*RESULT_COLUMNS, *extra)])
    return buf.getvalue()


def write_results_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write results.csv atomically (a reader never sees half a file)."""
    from gfp.io import atomic_write_bytes

    atomic_write_bytes(path, results_csv_text(rows).encode())


def _grid_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def read_results_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a results.csv with their types back (ints, bools, floats with NaN for blanks)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from e
    except UnicodeDecodeError as e:
        raise _not_text(path, e, "a gfp results.csv") from None
    reader = csv.DictReader(io.StringIO(text))
    # later columns: a results.csv without `phase` holds offline evaluations, provenance is ''
    have = reader.fieldnames or []
    missing = [c for c in RESULT_COLUMNS if c not in have and c not in LATER_COLUMNS]
    if missing:
        raise DataError(f"{path}: not a gfp results.csv (no column {missing[0]!r})")
    grid = [c for c in reader.fieldnames or [] if c not in RESULT_COLUMNS]
    rows = []
    for line, raw in enumerate(reader, start=2):
        where = f"{path}, line {line}"
        if None in raw or any(v is None for v in raw.values()):
            raise DataError(f"{where}: wrong number of fields")
        row: dict[str, Any] = {c: raw.get(c, "") for c in RESULT_COLUMNS} | dict(raw)
        row["phase"] = raw.get("phase") or "offline"
        if row["phase"] not in PHASES:
            raise DataError(f"{where}, column phase: {row['phase']!r} is not offline/online")
        for c in _INT_COLUMNS:
            value = _float(raw[c], f"{where}, column {c}")
            if math.isnan(value):
                raise DataError(f"{where}, column {c}: empty")
            row[c] = int(value)
        for c in METRICS:
            row[c] = _float(raw[c], f"{where}, column {c}")
        try:
            row["finished"] = parse_value(raw["finished"], bool)
        except ValueError:
            raise DataError(
                f"{where}, column finished: {raw['finished']!r} is not true/false"
            ) from None
        for c in grid:
            row[c] = (
                _float(raw[c], f"{where}, column {c}")
                if c.startswith(VAL_PREFIX)
                else _grid_value(raw[c])
            )
        rows.append(row)
    return rows


def read_results(
    source: str | Path | Sequence[str | Path], grid_keys: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Rows from a sweep folder, a results.csv or run directories (several sources are joined).

    A folder with run directories is read from them (fresh, even while a sweep writes its
    results.csv); a folder with only a results.csv is read from that. `grid_keys=None` infers the
    swept keys from the run configs. An empty or unreadable source is a DataError naming it."""
    sources = [source] if isinstance(source, str | Path) else list(source)
    if not sources:
        raise DataError("no source given: name a sweep folder, a results.csv or run directories")
    dirs: list[Path] = []
    rows: list[dict[str, Any]] = []
    for src in map(Path, sources):
        if not src.exists():
            raise DataError(f"{src}: no such file or directory")
        if src.is_file():
            if src.name == "config.json":
                dirs.append(src.parent)
                continue
            got = read_results_csv(src)
            if not got:
                raise DataError(f"{src}: holds no result rows")
            rows.extend(got)
            continue
        found = find_run_dirs(src)
        if found:
            dirs.extend(found)
        elif (src / "results.csv").is_file():
            got = read_results_csv(src / "results.csv")
            if not got:
                raise DataError(f"{src / 'results.csv'}: holds no result rows")
            rows.extend(got)
        else:
            raise DataError(f"{src}: no gfp run directories (config.json) or results.csv in it")
    if dirs:
        from_dirs = build_results(dirs, grid_keys)
        if not from_dirs:
            names = ", ".join(str(s) for s in sources)
            raise DataError(f"{names}: the runs there have no evaluations yet (eval.csv)")
        rows.extend(from_dirs)
    # the same run given twice (a sweep folder and one of its runs, two copies of results.csv)
    seen: set[tuple[str, int, str]] = set()
    unique = []
    for row in rows:
        key = (str(Path(row["run_dir"]).resolve()), row["step"], row["policy"])
        if key not in seen:
            seen.add(key)
            unique.append(row)
    return unique
