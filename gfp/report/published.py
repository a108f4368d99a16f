"""The paper's published numbers (its Tabs. 2, 8-12), shipped as `gfp/published/paper_results.csv`.

One row per (table, row, method), columns `table, kind, key, method, mean, std, printed,
provenance, note`:

* `table`: `tab2` (per-environment summary), `tab8-9` (OGBench per task), `tab10` (the 50 FQL
  tasks with 10 prior methods), `tab11` (D4RL per task), `tab12` (Minari per task);
* `kind`/`key`: `task` rows are keyed by gfp's task name (`cube-double-noisy-singletask-task2-v0`,
  `antmaze-umaze-v2`, `pen-human-v1`, `D4RL/pen/human-v2`, `mujoco/hopper/simple-v0`); `group`
  rows by the category key of `group_of` (an OGBench env, or `visual-manipulation`,
  `d4rl-antmaze`, `d4rl-adroit`, `minari-adroit`, `minari-<hopper|halfcheetah|walker2d>`);
  `average` rows by `average-<benchmark>` (and `average-fql50` for Tab. 10);
* `mean`/`std`: the printed numbers (`std` empty where the paper gives none); `printed`: the text
  as printed, so integer-formatted entries stay recognisable;
* `provenance`: `authors` (run by the GFP authors) or `prior: <source>` (copied from earlier work;
  the paper sets these in italics, which text extraction loses). The rule used instead, checked
  against the authors' released FQL results: on OGBench, integer-formatted baseline entries are
  copied from the FQL paper (Park et al. 2025) and one-decimal ones are the authors' runs; every
  baseline of Tab. 10 and Tab. 11 is copied; Minari's FQL was run by the authors;
* `note`: the paper's known slips (docs/paper-vs-code.md #15), e.g. Tab. 2's IQL "17" on D4RL
  antmaze.

The known inconsistencies between Tab. 2 and the per-task tables are kept as printed (tests list
them); comparisons of a partial group use the per-task values instead.
"""

from __future__ import annotations

import csv
import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from gfp.errors import DataError

T = TypeVar("T")

DATA_PATH = Path(__file__).resolve().parents[1] / "published" / "paper_results.csv"
COLUMNS = ("table", "kind", "key", "method", "mean", "std", "printed", "provenance", "note")
TABLE_TITLES = {
    "tab2": "Tab. 2: per-environment means (5 tasks; ± std over seeds of the task mean)",
    "tab8-9": "Tabs. 8-9: OGBench per task (8 seeds; pixel tasks 4 seeds)",
    "tab10": "Tab. 10: the 50 FQL tasks, 10 prior methods (all from Park et al. 2025)",
    "tab11": "Tab. 11: D4RL per task (8 seeds)",
    "tab12": "Tab. 12: Minari per task (8 seeds)",
}
# Our (agent, policy) -> the paper's method name.
METHOD_OF: dict[tuple[str, str], str] = {
    ("gfp", "actor"): "GFP-actor",
    ("gfp", "vabc"): "GFP-VaBC",
    ("fql", "actor"): "FQL",
    ("rebrac", "actor"): "ReBRAC",
    ("iql", "actor"): "IQL",
    ("bc", "actor"): "BC",
}
# Per-task tables in order of preference per benchmark: Tab. 8-9 holds the values the paper
# stands by (re-runs included); Tab. 10 adds BC and older methods on the FQL tasks.
TASK_TABLES: dict[str, tuple[str, ...]] = {
    "ogbench": ("tab8-9", "tab10"),
    "ogbench-pixel": ("tab8-9",),
    "d4rl": ("tab11",),
    "minari": ("tab12",),
}
GROUP_LABEL = {
    "visual-manipulation": "OGBench visual manipulation",
    "d4rl-antmaze": "D4RL antmaze",
    "d4rl-adroit": "D4RL Adroit",
    "minari-adroit": "Minari Adroit",
    "minari-hopper": "Minari hopper",
    "minari-halfcheetah": "Minari halfcheetah",
    "minari-walker2d": "Minari walker2d",
    "average-ogbench": "Average OGBench",
    "average-d4rl": "Average D4RL",
    "average-minari": "Average Minari",
    "average-fql50": "Average (50 FQL tasks)",
}


@dataclass(frozen=True)
class Published:
    table: str
    kind: str
    key: str
    method: str
    mean: float
    std: float | None
    printed: str
    provenance: str
    note: str = ""

    @property
    def prior(self) -> bool:
        """Copied from earlier work (the paper's italics)."""
        return self.provenance.startswith("prior")


def group_of(env: str, benchmark: str) -> str:
    """The paper's Tab. 2 category of a task: its OGBench environment (5 tasks), the pixel
    tasks together, D4RL antmaze / Adroit, Minari Adroit / each MuJoCo body. Other tasks: env."""
    if benchmark == "ogbench-pixel":
        return "visual-manipulation"
    if benchmark == "d4rl":
        return "d4rl-antmaze" if env.startswith("antmaze") else "d4rl-adroit"
    if benchmark == "minari":
        parts = env.split("/")
        if parts[0] == "D4RL":
            return "minari-adroit"
        return f"minari-{parts[1]}" if len(parts) > 1 else env
    return env


def group_label(group: str) -> str:
    return GROUP_LABEL.get(group, group)


@functools.cache
def paper_groups() -> dict[str, tuple[str, tuple[str, ...]]]:
    """group -> (benchmark, its paper tasks), in the paper's row order (Tab. 2)."""
    from gfp.results import task_env_benchmark
    from gfp.tasks import PAPER_TASKS

    out: dict[str, tuple[str, list[str]]] = {}
    for task in PAPER_TASKS:
        env, bench = task_env_benchmark(task)
        out.setdefault(group_of(env, bench), (bench, []))[1].append(task)
    return {g: (b, tuple(t)) for g, (b, t) in out.items()}


def _read_csv(
    p: Path, columns: tuple[str, ...], parse: Callable[[dict[str, str]], T]
) -> tuple[T, ...]:
    """Every row of a shipped CSV whose header must be `columns`, each made by `parse`; a file
    that cannot be read, another header or a row `parse` rejects is a DataError naming it."""
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"{p}: cannot be read ({e.strerror or e})") from e
    reader = csv.DictReader(text.splitlines())
    if tuple(reader.fieldnames or ()) != columns:
        raise DataError(f"{p}: expected the columns {', '.join(columns)}")
    out = []
    for line, r in enumerate(reader, start=2):
        try:
            out.append(parse(r))
        except (TypeError, ValueError) as e:
            raise DataError(f"{p}, line {line}: {e}") from None
    return tuple(out)


@functools.cache
def load_published(path: str | None = None) -> tuple[Published, ...]:
    """Every published number (cached). A damaged file is a DataError naming its line."""

    def parse(r: dict[str, str]) -> Published:
        std = float(r["std"]) if r["std"] else None
        return Published(**{**r, "mean": float(r["mean"]), "std": std})

    return _read_csv(Path(path) if path else DATA_PATH, COLUMNS, parse)


@functools.cache
def _index() -> dict[tuple[str, str, str], Published]:
    return {(p.table, p.key, p.method): p for p in load_published()}


def lookup(table: str, key: str, method: str) -> Published | None:
    return _index().get((table, key, method))


def task_value(task: str, benchmark: str, method: str) -> Published | None:
    """The paper's per-task number for `method`, from the first table that has it."""
    for table in TASK_TABLES.get(benchmark, ()):
        hit = lookup(table, task, method)
        if hit is not None:
            return hit
    return None


def _mean_of(tasks: Iterable[tuple[str, str]], method: str, label: str) -> Published | None:
    """The mean of the published per-task values over `tasks` ((task, benchmark) pairs), no std;
    None unless every task has one."""
    hits = [task_value(t, b, method) for t, b in tasks]
    if not hits or any(h is None for h in hits):
        return None
    if len(hits) == 1:
        return hits[0]
    mean = sum(h.mean for h in hits) / len(hits)
    prior = all(h.prior for h in hits)
    return Published(
        "per-task",
        "derived",
        label,
        method,
        mean,
        None,
        f"{mean:.1f}",
        "prior" if prior else "authors" if not any(h.prior for h in hits) else "mixed",
        f"mean of the paper's per-task values over the same {len(hits)} tasks",
    )


def group_value(group: str, method: str, tasks: Iterable[tuple[str, str]]) -> Published | None:
    """The paper's number for a group row: Tab. 2's entry when `tasks` are all of the group's
    paper tasks, else the mean of the per-task values over the same tasks (a single task: its
    value with its std)."""
    tasks = sorted(set(tasks))
    paper = paper_groups().get(group)
    if paper is not None and {t for t, _ in tasks} == set(paper[1]):
        hit = lookup("tab2", group, method)
        if hit is not None:
            return hit
    return _mean_of(tasks, method, group)


def average_value(method: str, tasks: Iterable[tuple[str, str]]) -> Published | None:
    """The paper's mean over the same tasks (per-task values), for a benchmark-average row."""
    return _mean_of(sorted(set(tasks)), method, "average")


def within_one_std(ours: float, published: Published | None) -> bool | None:
    """Whether our value is within one published std of the published mean (None: no std)."""
    if published is None or published.std is None or math.isnan(ours):
        return None
    return abs(ours - published.mean) <= published.std + 1e-9


# ---- Q-chunking (QC; Li, Zhou, Levine, NeurIPS 2025) ------------------------------------------
# QC's released plot data (gfp/published/README.md, scripts/extract_qc_published.py): success at
# the end of its 1M offline steps and after 1M more online steps, mean with a 95% bootstrap CI.
QC_DATA_PATH = DATA_PATH.with_name("qc_results.csv")
QC_COLUMNS = (
    "kind",
    "key",
    "method",
    "phase",
    "step",
    "mean",
    "ci_low",
    "ci_high",
    "source",
    "note",
)
QC_CITATION = "Li, Zhou, Levine 2025 (Q-chunking), plot data of ColinQiyangLi/qc@48283b4"
QC_AVERAGE = "average-qc"
# QC's method names in the order of its tables: chunked, n-step, 1-step per family, then the
# offline baselines and the online-only ones.
QC_METHODS = (
    "QC",
    "QC-FQL",
    "FQL-n",
    "FQL",
    "BFN-n",
    "BFN",
    "QC-IFQL",
    "IFQL-n",
    "IFQL",
    "ReBRAC",
    "IQL",
    "RLPD",
    "RLPD-AC",
    "SUPE-GT",
)


@dataclass(frozen=True)
class QCPublished:
    kind: str  # task, domain, average; 'derived' for a mean computed here
    key: str
    method: str
    phase: str  # offline (step 1M) or online (step 2M)
    step: int
    mean: float
    ci_low: float | None
    ci_high: float | None
    source: str
    note: str = ""

    @property
    def printed(self) -> str:
        """'85.4 [80.1, 90.2]': the mean and QC's 95% interval (the mean alone where none)."""
        if self.ci_low is None or self.ci_high is None:
            return f"{self.mean:.1f}"
        return f"{self.mean:.1f} [{self.ci_low:.1f}, {self.ci_high:.1f}]"


@functools.cache
def load_qc(path: str | None = None) -> tuple[QCPublished, ...]:
    """Every QC number (cached). A damaged file is a DataError naming its line."""

    def parse(r: dict[str, str]) -> QCPublished:
        numbers = {k: float(r[k]) for k in ("mean", "ci_low", "ci_high")}
        return QCPublished(**{**r, **numbers, "step": int(r["step"])})

    return _read_csv(Path(path) if path else QC_DATA_PATH, QC_COLUMNS, parse)


@functools.cache
def _qc_index() -> dict[tuple[str, str, str], QCPublished]:
    return {(q.key, q.method, q.phase): q for q in load_qc()}


@functools.cache
def qc_domains() -> dict[str, tuple[str, ...]]:
    """QC's domains (gfp env keys) -> their tasks, in the file's order."""
    out: dict[str, list[str]] = {}
    for q in load_qc():
        if q.kind == "task":
            env = q.key.split("-singletask-")[0]
            if q.key not in out.setdefault(env, []):
                out[env].append(q.key)
    return {env: tuple(tasks) for env, tasks in out.items()}


def qc_method(agent: str, horizon: int | None, action_chunking: bool | None) -> str | None:
    """QC's name for a run of our `agent` at this chunk length: fql -> QC-FQL (horizon 5, action
    chunking), FQL-n (horizon 5, the 5-step return only) or FQL (horizon 1); qc -> QC (horizon 5,
    chunking). None where QC reports no such run (other horizons; our qc at horizon 1 is not
    QC's BFN, which draws N = 4 samples, README) or the horizon is not known."""
    if horizon is None:
        return None
    if agent == "fql":
        if horizon == 1:
            return "FQL"
        if horizon == 5:
            return "QC-FQL" if action_chunking is not False else "FQL-n"
    if agent == "qc" and horizon == 5 and action_chunking is not False:
        return "QC"
    return None


def qc_task_value(task: str, method: str, phase: str = "offline") -> QCPublished | None:
    return _qc_index().get((task, method, phase))


def _qc_mean(tasks: Iterable[str], method: str, phase: str, label: str) -> QCPublished | None:
    """The mean of QC's per-task values over `tasks` (no interval); None unless each has one."""
    hits = [qc_task_value(t, method, phase) for t in tasks]
    if not hits or any(h is None for h in hits):
        return None
    if len(hits) == 1:
        return hits[0]
    mean = sum(h.mean for h in hits) / len(hits)
    notes = dict.fromkeys(h.note for h in hits if h.note)
    return QCPublished(
        "derived",
        label,
        method,
        phase,
        hits[0].step,
        mean,
        None,
        None,
        hits[0].source,
        "; ".join([f"mean of QC's per-task values over the same {len(hits)} tasks", *notes]),
    )


def qc_group_value(group: str, method: str, tasks: Iterable[str], phase: str = "offline"):
    """QC's number for a group row: its own domain aggregate when `tasks` are the domain's 5,
    else the mean of its per-task values over the same tasks."""
    tasks = sorted(set(tasks))
    if set(tasks) == set(qc_domains().get(group, ())):
        hit = _qc_index().get((group, method, phase))
        if hit is not None:
            return hit
    return _qc_mean(tasks, method, phase, group)


def qc_average_value(method: str, tasks: Iterable[str], phase: str = "offline"):
    """QC's `all` aggregate when `tasks` are its 25 tasks, else the mean of its per-task values
    over the same tasks."""
    tasks = sorted(set(tasks))
    every = {t for ts in qc_domains().values() for t in ts}
    if set(tasks) == every:
        hit = _qc_index().get((QC_AVERAGE, method, phase))
        if hit is not None:
            return hit
    return _qc_mean(tasks, method, phase, "average")
