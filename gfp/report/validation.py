"""The report's validation table: runs without an environment (LeRobot data, `--no-eval`) are
scored by their validation metrics (gfp.engine.validation; results.csv's `val_*` columns), not
by success. One row per task, agent and policy: each metric at every run's last evaluation, mean
and standard deviation over the runs (seeds). No JAX."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gfp.report.tables import Cell, Row, Table
from gfp.results import VAL_PREFIX


def validation_table(rows: Sequence[Mapping[str, Any]]) -> Table | None:
    """The validation metrics of the offline evaluations in `rows` (results.csv rows), or None
    when no row has one."""
    metrics = list(dict.fromkeys(k for r in rows for k in r if k.startswith(VAL_PREFIX)))
    rows = [r for r in rows if r.get("phase", "offline") == "offline"]
    if not metrics or not rows:
        return None
    last: dict[str, int] = {}
    for r in rows:
        last[r["run_dir"]] = max(last.get(r["run_dir"], -1), int(r["step"]))
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        if int(r["step"]) == last[r["run_dir"]]:
            groups[(str(r["task"]), str(r["agent"]), str(r["policy"]))].append(r)
    table = Table(
        name="validation",
        title="Validation metrics (held-out episodes), at each run's last evaluation",
        label_header="Task, agent/policy",
        header=metrics,
        caption="Mean (std) over seeds; lower is better for val_td_error, val_flow_loss and "
        "val_action_mse; val_q_data / val_q_actor: mean Q of the data's / the policy's actions.",
    )
    for (task, agent, policy), group in sorted(groups.items()):
        cells = []
        for m in metrics:
            vals = np.array([float(r.get(m, np.nan)) for r in group], dtype=float)
            vals = vals[np.isfinite(vals)]
            if not len(vals):
                cells.append(Cell())
                continue
            mean, std = float(vals.mean()), float(vals.std()) if len(vals) > 1 else None
            # four significant digits: errors of 0.01 and 0.04 differ (the tables' one decimal
            # is for success rates in %)
            text = f"{mean:.4g}" + (f" ± {std:.2g}" if std is not None else "")
            cells.append(Cell(mean, std, printed=text))
        if any(c.mean is not None for c in cells):
            table.rows.append(Row(f"{task}, {agent}/{policy}", cells))
    return table if table.rows else None
