"""The tables of a report, in the paper's protocol (Sec. 4, Tabs. 2 and 8-12), as one
format-neutral model (`Table`) that `render` turns into Markdown, LaTeX and HTML with the same
numbers.

* Per task: mean ± std over seeds of each seed's final score (`scores`).
* Per environment (the paper's Tab. 2 categories, 5 tasks each on OGBench): the mean over the
  tasks of the per-task means, ± the std over seeds of the per-seed mean over the tasks (each
  seed's average over the 5 tasks, then the std of those averages), as the paper computes it
  (Tab. 2; the per-seed values in the authors' released result files confirm it). Only seeds
  present on every task of the row enter that std.
* Per benchmark: the plain mean over its tasks of the per-task means (no ±, as in the paper).
* Every std is numpy's population std (ddof=0). The paper does not say which estimator it
  used; ddof=0 is numpy's default, which the authors' numpy-based scripts get unless they ask.
* Bold: in every row, each of our values that is >= 95% of the row's best (the paper's rule),
  compared on the values as printed (one decimal) so that the marking can be checked by eye. For a
  negative best (possible with normalized returns) the margin is 5% of its magnitude.
* Marks: `†` a seed is still running (its latest evaluations are used); `‡` fewer seeds (or
  tasks) than the other rows of that column; with --paper, `✓`/`✗` whether ours is within one
  published std, and published values copied from prior work in italics, as in the paper.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gfp.report import published as pub
from gfp.report.scores import AGENT_LABEL, Collected, Column, SeedScore

DECIMALS = 1
BOLD_FRACTION = 0.95
BENCHMARK_LABEL = {
    "ogbench": "OGBench",
    "ogbench-pixel": "OGBench pixel",
    "d4rl": "D4RL",
    "minari": "Minari",
    "other": "other tasks",
}
BENCHMARK_ORDER = ("ogbench", "ogbench-pixel", "d4rl", "minari", "other")


@dataclass
class Cell:
    mean: float | None = None
    std: float | None = None
    marks: str = ""  # '†', '‡'
    bold: bool = False
    paper: bool = False  # a published value (not ours)
    italic: bool = False  # published value copied from prior work
    check: bool | None = None  # ours within one published std (on the paper cell)
    printed: str | None = None  # published text as printed


@dataclass
class Row:
    label: str
    cells: list[Cell]
    note: str = ""
    rule_before: bool = False


@dataclass
class Table:
    name: str  # file stem of the LaTeX table
    title: str
    label_header: str
    header: list[str]
    rows: list[Row] = field(default_factory=list)
    caption: str = ""


def fmt(x: float | None) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.{DECIMALS}f}"


def mark_bold(row: Row) -> None:
    """Bold each of our values within 95% of the row's best, on the printed values."""
    shown = [(c, round(c.mean, DECIMALS)) for c in row.cells if not c.paper and _has(c)]
    if not shown:
        return
    best = max(v for _, v in shown)
    threshold = best - (1 - BOLD_FRACTION) * abs(best)
    for c, v in shown:
        c.bold = v >= round(threshold, 10)


def _has(c: Cell) -> bool:
    return c.mean is not None and not math.isnan(c.mean)


# ---- statistics -------------------------------------------------------------------------------
@dataclass
class TaskStat:
    mean: float
    std: float
    by_seed: dict[int, float]
    running: list[SeedScore]


def task_stats(finals: Sequence[SeedScore]) -> dict[tuple[str, Column], TaskStat]:
    """(task, column) -> mean and std (ddof=0) over seeds of the seeds' final scores."""
    groups: dict[tuple[str, Column], list[SeedScore]] = defaultdict(list)
    for f in finals:
        groups[(f.task, f.column)].append(f)
    out = {}
    for key, fs in groups.items():
        values = np.array([f.value for f in fs])
        out[key] = TaskStat(
            float(values.mean()),
            float(values.std(ddof=0)),
            {f.seed: f.value for f in fs},
            [f for f in fs if not f.finished],
        )
    return out


def group_stat(stats: Sequence[TaskStat]) -> tuple[float, float, int]:
    """(mean over tasks of the task means, std over seeds of the per-seed task average, number of
    seeds in that std): the paper's per-environment convention. Seeds missing on some task are
    left out of the std."""
    mean = float(np.mean([s.mean for s in stats]))
    common = set.intersection(*(set(s.by_seed) for s in stats))
    if not common:
        return mean, math.nan, 0
    per_seed = [np.mean([s.by_seed[seed] for s in stats]) for seed in sorted(common)]
    return mean, float(np.std(per_seed, ddof=0)), len(common)


# ---- building the tables ----------------------------------------------------------------------
def _task_order(task: str, benchmark: str) -> tuple:
    from gfp.tasks import PAPER_TASKS

    rank = PAPER_TASKS.index(task) if task in PAPER_TASKS else len(PAPER_TASKS)
    return (BENCHMARK_ORDER.index(benchmark), rank, task)


def _group_order(group: str, benchmark: str) -> tuple:
    groups = list(pub.paper_groups())
    rank = groups.index(group) if group in groups else len(groups)
    return (BENCHMARK_ORDER.index(benchmark), rank, group)


def _paper_cell(hit: pub.Published | None, ours: Cell) -> Cell:
    if hit is None:
        return Cell(paper=True)
    check = None
    if _has(ours):
        check = pub.within_one_std(round(ours.mean, DECIMALS), hit)
    return Cell(
        mean=hit.mean, std=hit.std, paper=True, italic=hit.prior, check=check, printed=hit.printed
    )


@dataclass
class PaperColumns:
    """The published columns of a table (--paper): the GFP paper's beside each of our columns
    that has a counterpart (`pub.METHOD_OF`; offline tables only, the paper's are offline, and
    not for a column run with action chunking, which the paper did not do), and Q-chunking's
    (QC; `pub.qc_method`) beside our fql and qc columns where the data holds QC's tasks, at the
    table's phase (QC's offline numbers: 1M offline steps; online: 1M more online steps)."""

    gfp: bool = True
    qc: dict[Column, str] = field(default_factory=dict)  # column -> QC's method name
    skip: frozenset[Column] = frozenset()  # columns without a GFP paper counterpart
    phase: str = "offline"

    def gfp_method(self, col: Column) -> str | None:
        if not self.gfp or col in self.skip:
            return None
        return pub.METHOD_OF.get((col.agent, col.policy))


def paper_columns(finals: Sequence[SeedScore], columns: Sequence[Column], paper: bool,
                  phase: str = "offline") -> PaperColumns | None:  # fmt: skip
    """What `PaperColumns` a table of these scores gets; None without --paper."""
    if not paper:
        return None
    qc_tasks = {t for ts in pub.qc_domains().values() for t in ts}
    chunking: dict[Column, set] = defaultdict(set)
    on_qc: dict[Column, set] = defaultdict(set)
    for f in finals:
        chunking[f.column].add(f.chunking)
        if f.task in qc_tasks:
            on_qc[f.column].add(f.chunking)
    qc = {}
    for col in columns:
        if len(on_qc.get(col, ())) == 1:
            (known,) = on_qc[col]
            method = pub.qc_method(col.agent, *(known or (None, None)))
            if method is not None:
                qc[col] = method
    skip = frozenset(c for c, ks in chunking.items() if any(k is not None and k[0] > 1 for k in ks))
    return PaperColumns(gfp=phase == "offline", qc=qc, skip=skip, phase=phase)


def _header(columns: Sequence[Column], pc: PaperColumns | None) -> list[str]:
    out = []
    for col in columns:
        out.append(col.label)
        if pc is not None and pc.gfp_method(col) is not None:
            out.append(f"{col.label} (paper)")
        if pc is not None and col in pc.qc:
            out.append(f"{col.label} (QC paper: {pc.qc[col]})")
    return out


# runs below this fraction of the paper's step budget are far from it: the published columns are
# then a reference, not a like-for-like comparison, and carry no within-one-std mark
FAR_FROM_PAPER = 0.5


def far_from_paper(finals: Sequence[SeedScore]) -> dict[str, tuple[int, int]]:
    """task -> (its shortest run's steps, the paper's steps) for the tasks whose runs are far
    below the paper's budget (`FAR_FROM_PAPER`)."""
    from gfp.errors import GfpError
    from gfp.tasks import parse_task

    out: dict[str, tuple[int, int]] = {}
    for f in finals:
        try:
            paper = parse_task(f.task).paper_steps
        except GfpError:
            continue
        if 0 <= f.total_steps < FAR_FROM_PAPER * paper:
            had = out.get(f.task, (f.total_steps, paper))
            out[f.task] = (min(had[0], f.total_steps), paper)
    return out


def _add_paper(row: Row, columns: Sequence[Column], pc: PaperColumns | None, hit_of,
               qc_hit_of, far: bool = False) -> None:  # fmt: skip
    """With --paper: a published cell after each of our cells that has a published counterpart
    (`hit_of(method)` for the GFP paper's, `qc_hit_of(method, phase)` for QC's), and the
    published values' notes (a derived mean, a known typo, QC's sparse rewards) appended to the
    row's note. `far`: the row's runs are far from the paper's budget, so the published cells
    carry no within-one-std mark (a reference, not a like-for-like comparison). QC's cells carry
    its 95% interval as printed, and no mark (QC gives no std)."""
    if pc is None:
        return
    cells, notes = [], []
    for cell, col in zip(row.cells, columns, strict=True):
        cells.append(cell)
        method = pc.gfp_method(col)
        if method is not None:
            hit = hit_of(method)
            published = _paper_cell(hit, cell)
            if far:
                published.check = None
            cells.append(published)
            if hit is not None and hit.note:
                derived = hit.kind == "derived"
                notes.append(f"paper: {hit.note}" if derived else f"paper {hit.method}: {hit.note}")
        if col in pc.qc:
            qc = qc_hit_of(pc.qc[col], pc.phase)
            if qc is None:
                cells.append(Cell(paper=True))
                continue
            cells.append(Cell(mean=qc.mean, paper=True, printed=qc.printed))
            if qc.note:
                notes.append(f"QC paper {qc.method}: {qc.note}")
    row.cells = cells
    row.note = "; ".join(filter(None, [row.note, *dict.fromkeys(notes)]))


def _running_note(running: dict[Column, list[SeedScore]]) -> str:
    """'† still running: GFP seeds 0, 1 (latest evaluation at step 1000 of 2000)', one part per
    agent (its policies come from the same runs)."""
    by_agent: dict[str, dict[str, SeedScore]] = defaultdict(dict)
    for col, fs in running.items():
        for f in fs:
            by_agent[col.agent][f.run_dir] = f
    parts = []
    for agent, runs in by_agent.items():
        fs = sorted(runs.values(), key=lambda f: f.seed)
        seeds = ", ".join(str(f.seed) for f in fs)
        steps = ", ".join(sorted({f"{f.last_step} of {f.total_steps}" for f in fs}))
        name = AGENT_LABEL.get(agent, agent)
        parts.append(
            f"{name} seed{'s' * (len(fs) > 1)} {seeds} (latest evaluation at step {steps})"
        )
    return "† still running: " + "; ".join(parts) if parts else ""


def per_task_tables(data: Collected, paper: bool = False) -> list[Table]:
    """One table per benchmark, one row per task, one column per (agent, policy)."""
    stats = task_stats(data.finals)
    info = {f.task: (f.env, f.benchmark) for f in data.finals}
    far = far_from_paper(data.finals)
    pc = paper_columns(data.finals, data.columns, paper, data.phase)
    most_seeds: dict[tuple[str, Column], int] = defaultdict(int)  # per benchmark table
    for (task, col), s in stats.items():
        key = (info[task][1], col)
        most_seeds[key] = max(most_seeds[key], len(s.by_seed))
    tables: dict[str, Table] = {}
    for task in sorted(info, key=lambda t: _task_order(t, info[t][1])):
        env, bench = info[task]
        table = tables.get(bench)
        if table is None:
            table = tables[bench] = Table(
                name=f"per_task_{bench}",
                title=f"{BENCHMARK_LABEL[bench]}: per task",
                label_header="Task",
                header=_header(data.columns, pc),
                caption=_task_caption(bench) + _qc_caption(pc),
            )
        cells, notes, running = [], [], {}
        for col in data.columns:
            s = stats.get((task, col))
            if s is None:
                cells.append(Cell())
                continue
            marks = ""
            if s.running:
                marks += "†"
                running[col] = s.running
            most = most_seeds[(bench, col)]
            if len(s.by_seed) < most:
                marks += "‡"
                notes.append(f"‡ {col.label}: {len(s.by_seed)} seeds (others {most})")
            cells.append(Cell(s.mean, s.std, marks))
        row = Row(task, cells, "; ".join(filter(None, [_running_note(running), *notes])))
        mark_bold(row)
        hit_of = lambda m, t=task, b=bench: pub.task_value(t, b, m)  # noqa: E731
        qc_of = lambda m, ph, t=task: pub.qc_task_value(t, m, ph)  # noqa: E731
        _add_paper(row, data.columns, pc, hit_of, qc_of, far=task in far)
        table.rows.append(row)
    return [tables[b] for b in BENCHMARK_ORDER if b in tables]


def _qc_caption(pc: PaperColumns | None) -> str:
    if pc is None or not pc.qc:
        return ""
    when = "after its 1M offline steps" if pc.phase == "offline" else "after 1M more online steps"
    return (
        f" QC paper: Q-chunking's published success x 100 {when} ({pub.QC_CITATION}), mean "
        "[95% bootstrap interval] over its seeds; QC's protocol differs in places (notes)."
    )


def _n_tasks(n: int) -> str:
    return f"{n} task{'s' * (n != 1)}"


def _task_caption(bench: str) -> str:
    if bench.startswith("ogbench"):
        return (
            "Success rate x 100: per seed the mean of its last three evaluations, then mean ± "
            "std over seeds."
        )
    if bench in ("d4rl", "minari"):
        return "Normalized return x 100 at the end of training: mean ± std over seeds."
    return "Score x 100 (success where reported, else normalized return): mean ± std over seeds."


def per_env_table(data: Collected, paper: bool = False) -> Table:
    """The paper's Tab. 2: one row per environment (category), then one average per benchmark."""
    stats = task_stats(data.finals)
    info = {f.task: (f.env, f.benchmark) for f in data.finals}
    far = far_from_paper(data.finals)
    pc = paper_columns(data.finals, data.columns, paper, data.phase)
    by_group: dict[tuple[str, str], list[str]] = defaultdict(list)
    for task, (env, bench) in info.items():
        by_group[(pub.group_of(env, bench), bench)].append(task)
    table = Table(
        name="per_env",
        title="Per environment (the paper's Tab. 2)",
        label_header="Environment",
        header=_header(data.columns, pc),
        caption=(
            "Mean over the environment's tasks of the per-task means, ± the std over seeds of "
            "each seed's mean over the tasks; benchmark rows: mean over all their tasks."
        )
        + _qc_caption(pc),
    )
    paper_groups = pub.paper_groups()
    for group, bench in sorted(by_group, key=lambda gb: _group_order(*gb)):
        tasks = sorted(by_group[(group, bench)])
        expected = len(paper_groups[group][1]) if group in paper_groups else len(tasks)
        cells, notes = [], []
        counts = {c: sum((t, c) in stats for t in tasks) for c in data.columns}
        for col in data.columns:
            have = [stats[(t, col)] for t in tasks if (t, col) in stats]
            if not have:
                cells.append(Cell())
                continue
            mean, std, n_seeds = group_stat(have)
            most = max(len(s.by_seed) for s in have)
            marks = "†" if any(s.running for s in have) else ""
            if counts[col] < max(counts.values()) or n_seeds < most:
                marks += "‡"
                notes.append(
                    f"‡ {col.label}: {counts[col]} tasks, {n_seeds} seeds common to all of them"
                )
            cells.append(Cell(mean, std, marks))
        label = pub.group_label(group)
        if len(tasks) != expected:
            label += f" ({len(tasks)} of {_n_tasks(expected)})"
        else:
            label += f" ({len(tasks)})"
        row = Row(label, cells, "; ".join(notes))
        mark_bold(row)
        pairs = [(t, bench) for t in tasks]
        hit_of = lambda m, g=group, p=pairs: pub.group_value(g, m, p)  # noqa: E731
        qc_of = lambda m, ph, g=group, ts=tasks: pub.qc_group_value(g, m, ts, ph)  # noqa: E731
        _add_paper(row, data.columns, pc, hit_of, qc_of, far=any(t in far for t in tasks))
        table.rows.append(row)
    benches = [b for b in BENCHMARK_ORDER if any(v[1] == b for v in info.values())]
    for i, bench in enumerate(benches):
        tasks = sorted(t for t, v in info.items() if v[1] == bench)
        cells = []
        for col in data.columns:
            have = [stats[(t, col)].mean for t in tasks if (t, col) in stats]
            marks = "‡" if 0 < len(have) < len(tasks) else ""
            cells.append(Cell(float(np.mean(have)), None, marks) if have else Cell())
        row = Row(
            f"Average {BENCHMARK_LABEL[bench]} ({_n_tasks(len(tasks))})",
            cells,
            "‡ a column lacks some of the tasks" if any(c.marks for c in cells) else "",
            rule_before=i == 0,
        )
        mark_bold(row)
        pairs = [(t, bench) for t in tasks]
        hit_of = lambda m, p=pairs: pub.average_value(m, p)  # noqa: E731
        qc_of = lambda m, ph, ts=tasks: pub.qc_average_value(m, ts, ph)  # noqa: E731
        _add_paper(row, data.columns, pc, hit_of, qc_of, far=any(t in far for t in tasks))
        table.rows.append(row)
    return table


def per_setting_table(data: Collected) -> Table:
    """Every setting of each (environment, agent) that has several on one set of seeds (none is
    chosen, `scores`): per policy and setting, the environment's mean ± std as in the
    per-environment table, with its tasks and seeds."""
    table = Table(
        name="per_setting",
        title="Every setting (one set of seeds: none chosen)",
        label_header="Environment: policy, setting",
        header=["Score", "Tasks", "Seeds"],
        caption=(
            "Each setting's mean over the environment's tasks of the per-task means, ± the std "
            "over seeds of each seed's mean over the tasks; no setting is picked, since picking "
            "on the reported seeds biases the number upward (the paper tunes on separate seeds)."
        ),
    )
    groups: dict[tuple, list[SeedScore]] = defaultdict(list)
    for f in data.per_setting:
        groups[(f.env, f.column, f.setting)].append(f)
    from gfp.report.scores import setting_order

    order = sorted(groups, key=lambda k: (k[0], k[1].sort_key(), setting_order(k[2])))
    env_before = None
    for env, col, setting in order:
        fs = groups[(env, col, setting)]
        mean, std, n_seeds = group_stat(list(task_stats(fs).values()))
        tasks = len({f.task for f in fs})
        label = f"{pub.group_label(env)}: {col.label}, {data.setting_label(setting) or 'default'}"
        cells = [Cell(mean, std), Cell(printed=str(tasks)), Cell(printed=str(n_seeds))]
        table.rows.append(Row(label, cells, rule_before=env_before not in (None, env)))
        env_before = env
    return table


def _seed_text(seeds: Sequence[int]) -> str:
    """'0-7', '0, 2, 5': runs of consecutive seeds as ranges."""
    seeds, parts = sorted(set(seeds)), []
    for s in seeds:
        if parts and s == parts[-1][1] + 1:
            parts[-1][1] = s
        else:
            parts.append([s, s])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in parts)


def _short_commit(commit: str) -> str:
    return commit[:10] + ("+dirty" if commit.endswith("+dirty") else "")


def provenance_table(data: Collected) -> Table:
    """What the numbers were made with, per task and agent (from the runs' config.json): preset,
    steps, dataset and its size, evaluation episodes, seeds, success timing, gfp version and git
    commit; several values of one field are all listed."""
    table = Table(
        name="provenance",
        title="Provenance: what the runs were made with",
        label_header="Task, agent",
        header=[
            "Preset",
            "Steps",
            "Dataset (size)",
            "Eval episodes",
            "Seeds",
            "Timing",
            "gfp",
            "Commit",
        ],  # fmt: skip
        caption="From each run's config.json; 'not recorded' where a run predates the field.",
    )
    groups: dict[tuple[str, str], list[SeedScore]] = defaultdict(list)
    for f in [*data.finals, *data.per_setting]:
        groups[(f.task, f.column.agent)].append(f)

    def values(fs: Sequence[SeedScore], get) -> str:
        got = sorted({get(f) for f in fs} - {""}, key=lambda v: (len(v), v))
        return ", ".join(got) if got else "not recorded"

    for task, agent in sorted(groups, key=lambda k: (_task_order(k[0], groups[k][0].benchmark),
                                                      AGENT_LABEL.get(k[1], k[1]))):  # fmt: skip
        fs = list({f.run_dir: f for f in groups[(task, agent)]}.values())  # one per run

        def dataset(f: SeedScore) -> str:
            name, size = f.provenance.get("dataset", ""), f.provenance.get("dataset_size", "")
            return f"{name} ({size})" if name and size else name

        cells = [
            values(fs, lambda f: f.provenance.get("preset", "")),
            values(fs, lambda f: str(f.total_steps) if f.total_steps >= 0 else ""),
            values(fs, dataset),
            values(fs, lambda f: f.provenance.get("eval_episodes", "")),
            _seed_text([f.seed for f in fs]) + f" ({len(fs)} run{'s' * (len(fs) != 1)})",
            values(fs, lambda f: f.success_timing),
            values(fs, lambda f: f.provenance.get("gfp_version", "")),
            values(fs, lambda f: _short_commit(f.provenance.get("git_commit", ""))),
        ]
        label = f"{task}, {AGENT_LABEL.get(agent, agent)}"
        table.rows.append(Row(label, [Cell(printed=c) for c in cells]))
    return table


# ---- the published tables alone (`gfp report --paper`) ----------------------------------------
def published_tables() -> list[Table]:
    """The paper's tables as shipped in the data file, methods as columns, copied values in
    italics."""
    rows_by_table: dict[str, list[pub.Published]] = defaultdict(list)
    for p in pub.load_published():
        rows_by_table[p.table].append(p)
    out = []
    for name, title in pub.TABLE_TITLES.items():
        entries = rows_by_table.get(name, [])
        methods = list(dict.fromkeys(p.method for p in entries))
        keys = list(dict.fromkeys(p.key for p in entries))
        index = {(p.key, p.method): p for p in entries}
        table = Table(
            name=f"paper_{name}",
            title=title,
            label_header="Task" if name != "tab2" else "Environment",
            header=methods,
            caption="Italics: copied by the paper from earlier work (see the provenance column "
            "of gfp/published/paper_results.csv).",
        )
        for key in keys:
            cells, notes = [], []
            for m in methods:
                hit = index.get((key, m))
                if hit is None:
                    cells.append(Cell(paper=True))
                    continue
                cells.append(
                    Cell(hit.mean, hit.std, paper=True, italic=hit.prior, printed=hit.printed)
                )
                if hit.note:
                    notes.append(f"{m}: {hit.note}")
            first = key.startswith("average")
            table.rows.append(Row(pub.group_label(key), cells, "; ".join(notes), first))
        out.append(table)
    return out


def qc_published_tables() -> list[Table]:
    """Q-chunking's released numbers as shipped (gfp/published/qc_results.csv): one table per
    phase, QC's methods as columns, its 95% intervals as printed."""
    rows_by_phase: dict[str, list[pub.QCPublished]] = defaultdict(list)
    for q in pub.load_qc():
        rows_by_phase[q.phase].append(q)
    order = {"average": 0, "domain": 1, "task": 2}
    domains = list(pub.qc_domains())
    out = []
    phases = (
        ("offline", "after 1M offline steps"),
        ("online", "after 1M offline + 1M online steps"),
    )
    for phase, when in phases:
        entries = rows_by_phase.get(phase, [])
        present = {q.method for q in entries}
        methods = [m for m in pub.QC_METHODS if m in present]
        index = {(q.key, q.method): q for q in entries}

        def rank(q: pub.QCPublished) -> tuple:
            env = q.key.split("-singletask-")[0]
            return (order[q.kind], domains.index(env) if env in domains else -1, q.key)

        kinds = {q.key: q.kind for q in entries}
        keys = list(dict.fromkeys(q.key for q in sorted(entries, key=rank)))
        table = Table(
            name=f"qc_{phase}",
            title=f"Q-chunking (QC) published: success x 100 {when}",
            label_header="Task",
            header=methods,
            caption=f"{pub.QC_CITATION}: mean [95% bootstrap interval]; see "
            "gfp/published/README.md. Scene and puzzle-3x3 ran with sparse rewards, "
            "cube-quadruple on the 100M dataset.",
        )
        for key in keys:
            cells = []
            for m in methods:
                q = index.get((key, m))
                cells.append(Cell(paper=True) if q is None else
                             Cell(q.mean, paper=True, printed=q.printed))  # fmt: skip
            label = "Average (QC's 25 tasks)" if key == pub.QC_AVERAGE else key
            first = key != keys[0] and kinds[key] != kinds[keys[keys.index(key) - 1]]
            table.rows.append(Row(label, cells, rule_before=first))
        out.append(table)
    return out
