"""`gfp report SOURCE... --out REPORT_DIR [--baseline fql] [--paper]`: put the pieces together.

REPORT_DIR receives report.md, report.html (self-contained), tables/*.tex (booktabs),
aggregate.json, figures/*.png and results.csv (the rows the report was made from). Without --out
the Markdown tables go to stdout. `--paper` alone prints the published tables.
"""

from __future__ import annotations

import html
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gfp.errors import ConfigError
from gfp.report import render
from gfp.report.aggregate import DEFAULT_REPS, METRIC_NAMES, check_baseline, compute_aggregates
from gfp.report.published import QC_CITATION
from gfp.report.scores import Collected, collect, score_name
from gfp.report.tables import (
    Cell,
    PaperColumns,
    Row,
    Table,
    far_from_paper,
    paper_columns,
    per_env_table,
    per_setting_table,
    per_task_tables,
    provenance_table,
    published_tables,
    qc_published_tables,
)
from gfp.report.validation import validation_table

TIMING_TEXT = {
    "post": (
        "'post': success and termination decided after each action, as in the OGBench < 1.2 "
        "that the paper ran, so these numbers are comparable with the published ones"
    ),
    "pre": (
        "'pre': success and termination decided before each action (OGBench 1.2's own timing), "
        "not the paper's protocol; part of any gap to the published numbers may come from it"
    ),
    "": (
        "not recorded in the runs' config.json (they predate the option; gfp then used "
        "OGBench 1.2's own timing, 'pre', not the paper's 'post')"
    ),
}


FEW_RUNS = 5  # runs per task below which the rliable intervals carry a warning
DEFAULT_BASELINE = "fql"  # the paper's strongest baseline (Tab. 2), where the sources hold it


@dataclass
class Report:
    """What `make_report` produced: the data, the tables, the aggregates and the files written
    (none without an output folder)."""

    data: Collected
    tables: list[Table]
    aggregates: dict[str, Any] | None = None
    files: list[Path] = field(default_factory=list)


def timing_sentence(data: Collected) -> str:
    """Which success timing the OGBench numbers used (the runs' config.json), in one sentence."""
    runs: dict[str, set[str]] = {}
    for f in data.finals:
        if f.benchmark.startswith("ogbench"):
            runs.setdefault(f.success_timing, set()).add(f.run_dir)
    if not runs:
        return "Success timing: not applicable (no OGBench task)."
    if len(runs) == 1:
        (timing,) = runs
        return f"Success timing of the OGBench evaluations: {TIMING_TEXT.get(timing, timing)}."
    parts = ", ".join(f"{len(v)} runs '{k or 'not recorded'}'" for k, v in sorted(runs.items()))
    return (
        f"Success timing of the OGBench evaluations: MIXED ({parts}); runs with different "
        "timings are not comparable (the paper used 'post')."
    )


def aggregate_table(agg: dict[str, Any], subset: str = "all") -> Table | None:
    sub = agg["subsets"].get(subset)
    if not sub:
        return None
    imp = sub.get("improvement", {})
    poi_reps = f" ({imp['reps']} for P(X > baseline))" if imp.get("reps") else ""
    table = Table(
        name="aggregates" if subset == "all" else f"aggregates_{subset}",
        title=f"Aggregates over {sub['label']} (rliable, 95% stratified-bootstrap CIs)",
        label_header="Policy",
        header=[*METRIC_NAMES, "P(X > baseline)"],
        caption=(
            f"{_plural(len(sub['tasks']), 'task')} x {_plural(sub['runs_per_task'], 'run')}, "
            f"{agg['reps']} bootstrap "
            f"replicates{poi_reps}; optimality gap: lower is better; P(X > baseline) in [0, 1]."
            + (
                f" With {_plural(sub['runs_per_task'], 'run')} per task (fewer than "
                f"{FEW_RUNS}) these intervals mean little: the bootstrap resamples too few runs."
                if sub["runs_per_task"] < FEW_RUNS
                else ""
            )
        ),
    )
    for key, metrics in sub["metrics"].items():
        cells = [
            Cell(m["point"], printed=f"{m['point']:.1f} [{m['low']:.1f}, {m['high']:.1f}]")
            for m in (metrics[name] for name in METRIC_NAMES)
        ]
        p = imp.get("over", {}).get(key)
        if p is not None:
            cells.append(
                Cell(p["point"], printed=f"{p['point']:.2f} [{p['low']:.2f}, {p['high']:.2f}]")
            )
        else:
            cells.append(Cell(printed="baseline" if key == imp.get("baseline") else "–"))
        table.rows.append(Row(agg["columns"][key], cells))
    return table


def online_tables(online: Collected, paper: bool = False) -> list[Table]:
    """The evaluations of the online phase (`gfp train --online-steps`) in tables of their own,
    without the GFP paper's columns (its tables are offline); with `paper`, Q-chunking's numbers
    after its online steps beside our fql and qc columns on its tasks."""
    out = []
    for t in [per_env_table(online, paper), *per_task_tables(online, paper)]:
        t.name = f"online_{t.name}"
        t.title = "Online fine-tuning: " + t.title.replace(" (the paper's Tab. 2)", "")
        t.caption = (
            "Evaluations after the offline steps only (the online phase), scored as the offline "
            "tables. " + t.caption
        )
        out.append(t)
    return out


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def _settings_notes(data: Collected) -> list[str]:
    notes = []
    for (env, agent), (setting, means, n) in sorted(data.selected.items()):
        scores = ", ".join(f"{label} {m:.1f}" for label, m in means.items())
        seeds = sorted({f.seed for f in data.finals if (f.env, f.column.agent) == (env, agent)})
        where = (
            f"reported on the evaluation seeds {', '.join(map(str, seeds))}"
            if seeds
            else "no evaluation runs of it in the sources, so not in the tables (train it on "
            "the evaluation seeds, e.g. gfp train --preset tuned)"
        )
        notes.append(
            f"{env}, {agent}: setting chosen on the tuning seeds (gfp tune, {n} settings; the "
            f"paper's protocol): {data.setting_label(setting)} (tuning means {scores}; ranked by "
            f"the first, ties by the next); {where}"
        )
    several: dict[tuple[str, str], set[tuple]] = {}
    for f in data.per_setting:
        several.setdefault((f.env, f.column.agent), set()).add(f.setting)
    for (env, agent), settings in sorted(several.items()):
        notes.append(
            f"{env}, {agent}: {len(settings)} settings on one set of seeds and no tuning runs "
            "(gfp tune): none is picked (a best-of on the seeds it reports is biased upward); "
            "every setting is in the per-setting table and the heat map, the agent is not in "
            "the other tables"
        )
    return notes


def _intro(data: Collected, sources: Sequence[str], extra_notes: Sequence[str]) -> list[str]:
    runs = {f.run_dir for f in data.finals}
    running = {f.run_dir for f in data.finals if not f.finished}
    tasks = {f.task for f in data.finals}
    lines = [
        f"Sources: {', '.join(sources)}.",
        f"{_plural(len(runs), 'run')} ({len(running)} still running), "
        f"{_plural(len(tasks), 'task')}, columns: "
        + ", ".join(c.label for c in data.columns)
        + ".",
        timing_sentence(data),
        f"Scores: {score_name({f.benchmark for f in data.finals})}; OGBench: each seed's mean of "
        "its last three evaluations; D4RL/Minari: the last evaluation. ± is the population std "
        "(ddof=0) over seeds; bold: within 95% of the row's best.",
        *_settings_notes(data),
        *extra_notes,
    ]
    return lines


def _caption(name: str) -> str:
    if name.startswith("curves_tasks_"):
        return "Learning curves per task: mean over seeds, band ± one std over seeds."
    if name == "curves_envs.png":
        return "Learning curves per environment: each seed's mean over the tasks, then mean ± std."
    if name == "profile.png":
        return "Performance profile (rliable) with 95% bands: fraction of runs scoring above tau."
    if name == "aggregates.png":
        return "IQM, mean, median and optimality gap with 95% stratified-bootstrap intervals."
    if name == "improvement.png":
        return "Probability of improvement over the baseline with 95% intervals."
    if name.startswith("heatmap_"):
        return "Score over the alpha x eta grid (mean over the environment's tasks and seeds)."
    return ""


def _unevaluated(sources: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[str]:
    from gfp.results import find_run_dirs

    have = {str(Path(r["run_dir"]).resolve()) for r in rows}
    missing = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            missing += [str(d) for d in find_run_dirs(p) if str(d.resolve()) not in have]
    return sorted(set(missing))


def make_report(
    sources: Sequence[str | Path],
    out: Path | None,
    baseline: str | None = None,
    paper: bool = False,
    reps: int = DEFAULT_REPS,
) -> Report:
    """Read the sources, build the tables and (with `out`) every file of the report. `baseline`:
    the agent (or agent/policy) of the probability of improvement, refused unless the sources
    hold it; None: fql where they do (else the report says there is none)."""
    from gfp.results import read_results, write_results_csv

    names = [str(s) for s in sources]
    rows = read_results(names)
    data = collect(rows)
    val_table = validation_table(rows)  # runs scored on held-out episodes (val_* columns)
    if not data.finals and not data.per_setting:
        if val_table is not None:  # no environment scored them: their validation metrics only
            return _validation_report(rows, val_table, out)
        raise ConfigError(f"{', '.join(names)}: no evaluation has a score to report")
    if baseline is not None:  # before anything is written
        check_baseline(baseline, [*data.columns, *{f.column for f in data.per_setting}])
    baseline = baseline or DEFAULT_BASELINE
    tables = [per_env_table(data, paper), *per_task_tables(data, paper)] if data.finals else []
    if data.per_setting:  # one set of seeds, several settings: all of them, none chosen
        tables.append(per_setting_table(data))
    online = collect(rows, "online")
    if online.finals:  # fine-tuned online: its own tables, never averaged with the offline ones
        tables += online_tables(online, paper)
    if val_table is not None:
        tables.append(val_table)
    report = Report(data, tables)
    if out is None:
        return report
    from gfp.io import atomic_write_bytes, atomic_write_json
    from gfp.report import figures
    from gfp.report.html import page

    out = Path(out)
    notes = []
    far = far_from_paper(data.finals)
    if paper and far:
        steps, paper_steps = min(far.values())
        notes.append(
            f"Budget: {_plural(len(far), 'task')} ran far below the paper's budget (as few as "
            f"{steps:,} of {paper_steps:,} steps): the '(paper)' columns are a reference, not a "
            "like-for-like comparison, and carry no within-one-std mark there"
        )
    qc_cols = [
        f"{c.label} beside QC's {m}"
        for d in (data, online)
        for c, m in (
            paper_columns(d.finals, d.columns, paper, d.phase) or PaperColumns()
        ).qc.items()
    ]
    if qc_cols:
        notes.append(
            f"QC paper columns: Q-chunking's published numbers ({QC_CITATION}; "
            "gfp/published/qc_results.csv), not runs of gfp: "
            + ", ".join(dict.fromkeys(qc_cols))
            + ". QC trained 1M offline steps then 1M online steps (offline tables: its value at "
            "1M, online tables: at 2M), with sparse rewards on scene and puzzle-3x3 (gfp has no "
            "such option) and the 100M dataset on cube-quadruple; its QC-FQL alpha and protocol "
            "are the qc preset's (gfp presets TASK --agent fql --preset qc)"
        )
    if online.finals:
        notes.append(
            "Phases: the tables before the 'Online fine-tuning' ones score offline evaluations "
            "only (up to each run's offline steps); the online phase's are in those tables."
        )
    if data.repeats:
        notes.append(
            f"Repeats: the offline evaluations of {_plural(len(data.repeats), 'run')} equal "
            "another run's of the same task, setting and seed (an online run's offline phase "
            "beside the offline run), so each seed is counted once: " + ", ".join(data.repeats)
        )
    pending = _unevaluated(names, rows)
    if pending:
        notes.append(f"{len(pending)} runs have no evaluation yet: " + ", ".join(pending))
    agg = compute_aggregates(data, baseline, reps=reps)
    report.aggregates = agg
    atomic_write_json(out / "aggregate.json", agg)
    agg_tables = [t for t in (aggregate_table(agg, s) for s in agg["subsets"]) if t]
    prov = provenance_table(data)
    if agg["subsets"].get("all", {}).get("improvement", {}).get("missing"):
        notes.append(f"baseline {baseline!r} is not in the sources: no probability of improvement")

    kinds = {f.benchmark.startswith("ogbench") for f in data.finals}
    percent = kinds == {True}
    ylabel = "success (%)" if percent else "normalized return" if kinds == {False} else "score"
    fig_dir = out / "figures"
    figs = [
        figures.plot_env_curves(data, fig_dir, ylabel, percent),
        *figures.plot_task_curves(data, fig_dir, ylabel, percent),
        figures.plot_profile(agg, data, fig_dir),
        figures.plot_intervals(agg, data, fig_dir),
        figures.plot_improvement(agg, data, fig_dir),
        *figures.plot_heatmaps(data, fig_dir),
    ]
    figs = [f for f in figs if f is not None]

    intro = _intro(data, names, notes)
    md = ["# gfp report", "", *(f"- {line}" for line in intro), ""]
    md += ["## Tables", ""]
    md += [render.markdown(t) for t in tables]
    md += ["## Aggregates (rliable)", ""] + [render.markdown(t) for t in agg_tables]
    md += ["## Provenance", "", render.markdown(prov)]
    md += ["## Figures", ""]
    md += [f"![{p.name}](figures/{p.name})  \n{_caption(p.name)}\n" for p in figs]
    atomic_write_bytes(out / "report.md", "\n".join(md).encode())

    for t in [*tables, *agg_tables, prov]:
        atomic_write_bytes(out / "tables" / f"{t.name}.tex", render.latex(t).encode())
    write_results_csv(out / "results.csv", rows)

    intro_html = (
        "<ul class='meta'>" + "".join(f"<li>{html.escape(line)}</li>" for line in intro) + "</ul>"
    )
    sections = [
        ("Tables", tables, ""),
        ("Aggregates (rliable)", agg_tables, ""),
        ("Provenance", [prov], ""),
    ]
    page_html = page("gfp report", intro_html, sections, [(p, _caption(p.name)) for p in figs])
    atomic_write_bytes(out / "report.html", page_html.encode())
    report.files = sorted(p for p in out.rglob("*") if p.is_file())
    report.tables = tables + agg_tables
    return report


def _validation_report(rows: list[dict[str, Any]], table: Table, out: Path | None) -> Report:
    """The report of runs that only have validation metrics: their table (Markdown, LaTeX,
    HTML) and results.csv."""
    from gfp.results import write_results_csv

    report = Report(collect([]), [table])
    if out is None:
        return report
    from gfp.io import atomic_write_bytes
    from gfp.report.html import page

    out = Path(out)
    runs = _plural(len({r["run_dir"] for r in rows}), "run")
    intro = [f"{runs} without environment evaluation, scored on their held-out episodes"]
    md = ["# gfp report", "", *(f"- {line}" for line in intro), "", "## Tables", ""]
    atomic_write_bytes(out / "report.md", "\n".join([*md, render.markdown(table)]).encode())
    atomic_write_bytes(out / "tables" / f"{table.name}.tex", render.latex(table).encode())
    write_results_csv(out / "results.csv", rows)
    intro_html = "<ul class='meta'>" + "".join(f"<li>{html.escape(x)}</li>" for x in intro)
    page_html = page("gfp report", intro_html + "</ul>", [("Tables", [table], "")], [])
    atomic_write_bytes(out / "report.html", page_html.encode())
    report.files = sorted(p for p in out.rglob("*") if p.is_file())
    return report


def print_published(stream=None) -> None:
    """`gfp report --paper` with no source: the published tables, as Markdown."""
    stream = stream or sys.stdout
    stream.write("# Published results (GFP, ICLR 2026), as shipped in gfp/published/\n\n")
    for table in published_tables():
        stream.write(render.markdown(table) + "\n")
    stream.write(
        "# Published results (Q-chunking, Li, Zhou, Levine, NeurIPS 2025), as shipped in "
        "gfp/published/qc_results.csv\n\n"
    )
    for table in qc_published_tables():
        stream.write(render.markdown(table) + "\n")


def cli_main(
    sources: Sequence[str], out: Path | None, baseline: str | None = None, paper: bool = False
) -> int:
    """Entry point for `gfp report` (the CLI prints a GfpError as one line and exits 2)."""
    if not sources:
        if paper:
            print_published()
            return 0
        raise ConfigError(
            "gfp report: give at least one SOURCE (a sweep folder, a results.csv or run "
            "directories), or --paper alone to print the published tables"
        )
    report = make_report(sources, out, baseline=baseline, paper=paper)
    if out is None:
        sys.stdout.write("\n".join(render.markdown(t) for t in report.tables))
        return 0
    print(f"wrote {Path(out) / 'report.html'}, report.md, {len(report.files)} files in all")
    return 0
