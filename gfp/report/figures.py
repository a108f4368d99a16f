"""The report's figures (PNG, matplotlib, sized for a paper: single panels at column width, 3.3
in, grids at text width, 6.8 in, 8 pt text): learning curves per task and per environment (mean
over seeds, band ± one std over seeds), the performance profile and the aggregate intervals from
rliable's numbers, the probability of improvement, and for a tuning sweep the alpha x eta heat
map per environment (the paper's sensitivity figure).

Each column (agent/policy) keeps one colour in every figure."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gfp.report.published import group_label
from gfp.report.scores import Collected, Column

COLUMN_WIDTH = 3.3  # inches
TEXT_WIDTH = 6.8
DPI = 200


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 8,
            "axes.titlesize": 8,
            "axes.labelsize": 8,
            "legend.fontsize": 7,
            "xtick.labelsize": 7,
            "ytick.labelsize": 7,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "savefig.dpi": DPI,
            "savefig.bbox": "tight",
        }
    )
    return plt


def colors(columns: Sequence[Column]) -> dict[Column, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {c: cmap(i % 10) for i, c in enumerate(columns)}


# Curves of several columns can coincide (all-zero or constant scores): each column gets its own
# dash pattern and the earlier ones a thicker line, so a curve under another still shows
LINE_STYLES = ("-", "--", "-.", ":")
MIN_SPAN = 10.0  # the least y range of a score axis (x 100), so a flat curve reads as flat


def line_style(i: int) -> dict[str, Any]:
    """Matplotlib line keywords of the i-th column."""
    return {"ls": LINE_STYLES[i % len(LINE_STYLES)], "lw": max(2.6 - 0.5 * i, 1.0)}


def _readable_y(ax, percent: bool) -> None:
    """A y axis that reads as what it shows: 0-100 for success rates; for other scores at least
    MIN_SPAN around the data (a constant 100 is not drawn on a 98-102 axis), never an offset."""
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    if percent:
        ax.set_ylim(-3, 103)
        return
    panels = ax.get_shared_y_axes().get_siblings(ax)  # panels sharing y: all their data
    ys = [
        y
        for panel in panels
        for line in panel.get_lines()
        for y in np.asarray(line.get_ydata(), float)
        if np.isfinite(y)
    ]
    if not ys:
        return
    lo, hi = min(ys), max(ys)
    if hi - lo < MIN_SPAN:
        mid = (lo + hi) / 2
        ax.set_ylim(mid - MIN_SPAN / 2, mid + MIN_SPAN / 2)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _steps_text(x: float, _pos: object = None) -> str:
    for size, suffix in ((1e6, "M"), (1e3, "K")):
        if abs(x) >= size:
            return f"{x / size:g}{suffix}"
    return f"{x:g}"


def _steps_label(ax, percent: bool) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ax.set_xlabel("gradient steps")
    ax.xaxis.set_major_locator(MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]))
    ax.xaxis.set_major_formatter(FuncFormatter(_steps_text))
    _readable_y(ax, percent)  # success rates: 0-100, so flat curves read as what they are


def _mean_band(per_seed: dict[int, dict[int, float]]) -> tuple[np.ndarray, ...]:
    """Steps, mean over the seeds evaluated at each step, std over them (0 with one seed)."""
    steps = sorted({s for curve in per_seed.values() for s in curve})
    mean, std = [], []
    for s in steps:
        vals = [curve[s] for curve in per_seed.values() if s in curve]
        mean.append(np.mean(vals))
        std.append(np.std(vals) if len(vals) > 1 else 0.0)
    return np.array(steps), np.array(mean), np.array(std)


def _draw(ax, per_seed, color, label, i: int = 0) -> None:
    steps, mean, std = _mean_band(per_seed)
    ax.plot(
        steps,
        mean,
        color=color,
        label=label,
        marker="o" if len(steps) < 8 else None,
        ms=2.5,
        **line_style(i),
    )
    ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.2, lw=0)


def _grid(plt, n: int, width: float, panel_h: float = 1.7):
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width, panel_h * nrows + 0.5), squeeze=False, sharey=True
    )
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _legend(fig, axes, n_columns: int) -> None:
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="upper center",
        ncol=min(n_columns, 4),
        frameon=False,
        bbox_to_anchor=(0.5, 1.0),
    )
    fig.tight_layout(rect=(0, 0, 1, 0.93))


def plot_task_curves(
    data: Collected, out_dir: Path, ylabel: str, percent: bool = False
) -> list[Path]:
    """One figure per environment, one panel per task (`percent`: y from 0 to 100)."""
    plt = _plt()
    col_colors = colors(data.columns)
    tasks_of: dict[str, list[str]] = defaultdict(list)
    for f in data.finals:
        if f.task not in tasks_of[f.env]:
            tasks_of[f.env].append(f.task)
    paths = []
    for env, tasks in sorted(tasks_of.items()):
        tasks = sorted(tasks)
        width = TEXT_WIDTH if len(tasks) > 1 else COLUMN_WIDTH
        fig, axes = _grid(plt, len(tasks), width)
        for ax, task in zip(axes, tasks, strict=True):
            for i, col in enumerate(data.columns):
                per_seed = data.curves.get((task, col))
                if per_seed:
                    _draw(ax, per_seed, col_colors[col], col.label, i)
            ax.set_title(_short_task(task))
            _steps_label(ax, percent)
        for ax in axes[:: min(len(tasks), 3)]:
            ax.set_ylabel(ylabel)
        _legend(fig, axes, len(data.columns))
        paths.append(_save(fig, out_dir / f"curves_tasks_{_slug(env)}.png"))
    return paths


def env_curves(data: Collected) -> dict[tuple[str, Column], dict[int, dict[int, float]]]:
    """(group, column) -> seed -> step -> the seed's mean over the group's tasks, at the steps
    where that seed has an evaluation on every task (the per-environment convention)."""
    from gfp.report.published import group_of

    group_tasks: dict[str, set[str]] = defaultdict(set)
    for f in data.finals:
        group_tasks[group_of(f.env, f.benchmark)].add(f.task)
    out = {}
    for group, tasks in group_tasks.items():
        for col in data.columns:
            curves = [data.curves.get((t, col)) for t in sorted(tasks)]
            if any(c is None for c in curves):
                continue
            seeds = set.intersection(*(set(c) for c in curves))
            per_seed = {}
            for seed in seeds:
                steps = set.intersection(*(set(c[seed]) for c in curves))
                per_seed[seed] = {s: float(np.mean([c[seed][s] for c in curves])) for s in steps}
            if per_seed:
                out[(group, col)] = per_seed
    return out


def plot_env_curves(
    data: Collected, out_dir: Path, ylabel: str, percent: bool = False
) -> Path | None:
    """One panel per environment (its tasks' mean), in one figure."""
    curves = env_curves(data)
    groups = sorted({g for g, _ in curves})
    if not groups:
        return None
    plt = _plt()
    col_colors = colors(data.columns)
    width = TEXT_WIDTH if len(groups) > 1 else COLUMN_WIDTH
    fig, axes = _grid(plt, len(groups), width)
    for ax, group in zip(axes, groups, strict=True):
        for i, col in enumerate(data.columns):
            if (group, col) in curves:
                _draw(ax, curves[(group, col)], col_colors[col], col.label, i)
        n = len({f.task for f in data.finals if _group(f) == group})
        ax.set_title(f"{group_label(group)} ({n} task{'s' * (n > 1)})")
        _steps_label(ax, percent)
    for ax in axes[:: min(len(groups), 3)]:
        ax.set_ylabel(ylabel)
    _legend(fig, axes, len(data.columns))
    return _save(fig, out_dir / "curves_envs.png")


def _group(f) -> str:
    from gfp.report.published import group_of

    return group_of(f.env, f.benchmark)


def plot_profile(agg: dict[str, Any], data: Collected, out_dir: Path) -> Path | None:
    """The performance profile (fraction of runs above tau) with its 95% bands, all tasks."""
    sub = agg["subsets"].get("all")
    if not sub:
        return None
    plt = _plt()
    col_colors = {c.key: v for c, v in colors(data.columns).items()}
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.3))
    tau = np.array(sub["profile"]["tau"])
    for i, (key, prof) in enumerate(sub["profile"]["fraction_of_runs_above"].items()):
        style = line_style(i)
        ax.plot(tau, prof["point"], color=col_colors[key], label=agg["columns"][key], **style)
        ax.fill_between(tau, prof["low"], prof["high"], color=col_colors[key], alpha=0.2, lw=0)
    ax.set_xlabel(r"score $\tau$")
    ax.set_ylabel(r"fraction of runs with score $> \tau$")
    ax.set_ylim(-0.02, 1.02)
    n_tasks, runs = len(sub["tasks"]), sub["runs_per_task"]
    tasks_text = f"{n_tasks} task{'s' * (n_tasks != 1)}"
    ax.set_title(f"Performance profile ({tasks_text} x {runs} run{'s' * (runs != 1)})")
    ax.legend(frameon=False)
    return _save(fig, out_dir / "profile.png")


def plot_intervals(agg: dict[str, Any], data: Collected, out_dir: Path) -> Path | None:
    """IQM, mean, median and optimality gap with their 95% intervals, one row per column."""
    from gfp.report.aggregate import METRIC_NAMES

    sub = agg["subsets"].get("all")
    if not sub:
        return None
    plt = _plt()
    col_colors = {c.key: v for c, v in colors(data.columns).items()}
    keys = list(sub["metrics"])
    fig, axes = plt.subplots(
        1, 4, figsize=(TEXT_WIDTH, 0.35 * len(keys) + 0.9), sharey=True, squeeze=False
    )
    for ax, name in zip(axes[0], METRIC_NAMES, strict=True):
        for i, key in enumerate(keys):
            m = sub["metrics"][key][name]
            ax.barh(
                i,
                m["high"] - m["low"],
                left=m["low"],
                height=0.6,
                color=col_colors[key],
                alpha=0.75,
            )
            ax.vlines(m["point"], i - 0.3, i + 0.3, color="k", lw=1.2)
        ax.set_title(name)
        lows = [sub["metrics"][k][name]["low"] for k in keys]
        highs = [sub["metrics"][k][name]["high"] for k in keys]
        lo, hi = min(lows), max(highs)
        if hi - lo < 5.0:  # (nearly) every interval a point: the whole score scale, 0 to 100,
            lo, hi = min(lo, 0.0), max(hi, 100.0)  # not a 98-102 axis around one value
        pad = 0.03 * (hi - lo)  # points at the ends stay clear of the frame
        ax.set_xlim(lo - pad, hi + pad)
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel("score (lower is better)" if name == "Optimality gap" else "score")
    axes[0][0].set_yticks(range(len(keys)), [agg["columns"][k] for k in keys])
    axes[0][0].invert_yaxis()
    fig.tight_layout()
    return _save(fig, out_dir / "aggregates.png")


def plot_improvement(agg: dict[str, Any], data: Collected, out_dir: Path) -> Path | None:
    """P(column > baseline) with its 95% interval."""
    sub = agg["subsets"].get("all")
    imp = sub.get("improvement") if sub else None
    if not imp or imp.get("missing") or not imp.get("over"):
        return None
    plt = _plt()
    col_colors = {c.key: v for c, v in colors(data.columns).items()}
    keys = list(imp["over"])
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH, 0.35 * len(keys) + 0.8))
    for i, key in enumerate(keys):
        p = imp["over"][key]
        ax.barh(
            i, p["high"] - p["low"], left=p["low"], height=0.6, color=col_colors[key], alpha=0.75
        )
        ax.vlines(p["point"], i - 0.3, i + 0.3, color="k", lw=1.2)
        ax.text(
            0.02,
            i,
            f"{p['point']:.2f} [{p['low']:.2f}, {p['high']:.2f}]",
            va="center",
            fontsize=6.5,
            color="0.3",
        )
    ax.axvline(0.5, color="grey", ls="--", lw=0.8)
    ax.set_xlim(0, 1)
    ax.set_yticks(range(len(keys)), [agg["columns"][k] for k in keys])
    ax.invert_yaxis()
    ax.set_xlabel(f"P(X > {agg['columns'].get(imp['baseline'], imp['baseline'])})")
    ax.set_title("Probability of improvement")
    return _save(fig, out_dir / "improvement.png")


def _value_order(v: Any) -> tuple:
    try:
        return (0, float(v), str(v))
    except (TypeError, ValueError):
        return (1, 0.0, str(v))


def _value_text(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, tuple | list):
        return "x".join(map(str, v))
    return str(v)


def heatmap_axes(grid_keys: list[str], settings: Sequence[tuple]) -> list[int]:
    """Indices (in `grid_keys`) of the one or two swept keys a heat map shows: the keys whose
    values differ among `settings`, alpha and eta first (the paper's tuning grid), then the
    others with more values first."""
    swept = [i for i in range(len(grid_keys)) if len({s[i] for s in settings}) > 1]
    rank = {"alpha": 0, "eta": 1}
    swept.sort(key=lambda i: (rank.get(grid_keys[i], 2), -len({s[i] for s in settings}), i))
    return swept[:2]


def plot_heatmaps(data: Collected, out_dir: Path) -> list[Path]:
    """Score over the grid per (environment, agent), one panel per reported policy: the mean over
    the env's tasks and seeds (of the tuning runs, where there are some), for every setting, on
    any grid: rows the first swept key (alpha where swept), columns the second (eta) or one
    column; other swept keys: their best value per cell; the best cell of a panel in bold."""
    if not data.grid_keys:
        return []
    by_agent: dict[tuple[str, str], dict[str, dict[tuple, float]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for (env, col_key, setting), mean in data.setting_means.items():
        by_agent[(env, col_key.split("/")[0])][col_key][setting] = mean
    labels = {c.key: c.label for c in data.columns}
    labels |= {f.column.key: f.column.label for f in data.per_setting}
    plt = _plt()
    paths = []
    for (env, agent), per_col in sorted(by_agent.items()):
        settings = sorted({st for g in per_col.values() for st in g})
        axes_keys = heatmap_axes(data.grid_keys, settings)
        if not axes_keys:
            continue
        iy = axes_keys[0]
        ix = axes_keys[1] if len(axes_keys) > 1 else None
        ys = sorted({st[iy] for st in settings}, key=_value_order)
        xs = sorted({st[ix] for st in settings}, key=_value_order) if ix is not None else [None]
        keys = sorted(per_col, key=lambda k: list(labels).index(k) if k in labels else 99)
        fig, axes = plt.subplots(
            1,
            len(keys),
            figsize=(COLUMN_WIDTH * len(keys), 0.35 * len(ys) + 1.2),
            squeeze=False,
        )
        for ax, key in zip(axes[0], keys, strict=True):
            z = np.full((len(ys), len(xs)), np.nan)
            for st, v in per_col[key].items():
                i, j = ys.index(st[iy]), xs.index(st[ix]) if ix is not None else 0
                z[i, j] = v if np.isnan(z[i, j]) else max(z[i, j], v)
            _heatmap(
                fig,
                ax,
                z,
                [_value_text(y) for y in ys],
                [_value_text(x) for x in xs] if ix is not None else [""],
                _axis_label(data.grid_keys[iy]),
                _axis_label(data.grid_keys[ix]) if ix is not None else "",
            )
            ax.set_title(f"{group_label(env)}: {labels.get(key, key)}")
        fig.tight_layout()
        paths.append(_save(fig, out_dir / f"heatmap_{_slug(env)}_{agent}.png"))
    return paths


def _axis_label(key: str) -> str:
    return {"alpha": r"$\alpha$", "eta": r"$\eta$"}.get(key, key)


def _heatmap(
    fig, ax, z: np.ndarray, ys: list[str], xs: list[str], ylabel: str, xlabel: str
) -> None:
    lo, hi = float(np.nanmin(z)), float(np.nanmax(z))
    # a flat grid (all zeros, say) still gets a sensible colour scale
    im = ax.imshow(z, cmap="viridis", aspect="auto", origin="lower", vmin=lo, vmax=max(hi, lo + 1))
    # the best cell in bold, unless several share it
    best = np.unravel_index(np.nanargmax(z), z.shape) if np.sum(z == hi) == 1 else None
    for i in range(len(ys)):
        for j in range(len(xs)):
            if not np.isnan(z[i, j]):
                dark = z[i, j] < lo + 0.6 * (hi - lo + 1e-9)  # white text on the dark colours
                ax.text(
                    j,
                    i,
                    f"{z[i, j]:.1f}",
                    ha="center",
                    va="center",
                    fontsize=6.5,
                    color="white" if dark else "black",
                    fontweight="bold" if (i, j) == best else "normal",
                )
    ax.set_xticks(range(len(xs)), xs)
    ax.set_yticks(range(len(ys)), ys)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.colorbar(im, ax=ax, fraction=0.05, pad=0.03)


def _short_task(task: str) -> str:
    return task.replace("-singletask", "")


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in text)
