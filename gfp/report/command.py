"""The `gfp report` subcommand as a dataclass the CLI can mount (tyro), so its flags are exactly
`SOURCE... --out REPORT_DIR --baseline AGENT --paper` and the CLI needs no other code:
`ReportCommand(...).run()` returns the exit status, and bad input raises a GfpError."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import tyro


@dataclasses.dataclass
class ReportCommand:
    """The paper's tables, rliable aggregates and profiles, learning curves, and the published
    numbers side by side, from sweep folders, results.csv files or run directories."""

    sources: Annotated[
        tuple[str, ...], tyro.conf.Positional, tyro.conf.arg(metavar="[SOURCE ...]")
    ] = ()
    """Sweep folders, results.csv files or run directories (one seed each, or a folder of
    seedN/)."""
    out: Path | None = None
    """REPORT_DIR: writes report.md, report.html, tables/*.tex, aggregate.json, figures/*.png and
    results.csv. Unset: print the Markdown tables."""
    baseline: str | None = None
    """Agent (or agent/policy) that the probability of improvement is measured against; it must
    be in the sources. Unset: fql where the sources hold it."""
    paper: bool = False
    """Show the published value next to each of ours (✓: within one published std); alone, with
    no SOURCE: print the published tables."""

    def run(self) -> int:
        from gfp.report.main import cli_main

        return cli_main(list(self.sources), self.out, self.baseline, self.paper)
