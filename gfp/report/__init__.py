"""`gfp report`: the paper's tables, rliable aggregates and profiles, learning curves, and the
published numbers side by side, from a sweep folder, a results.csv or run directories.

`cli_main(sources, out, baseline, paper)` is what the `gfp report` command calls; `make_report`
is the Python API. Importing this package is cheap: matplotlib and rliable load only when a
report with figures and aggregates is written.
"""

from __future__ import annotations

from typing import Any

__all__ = ["cli_main", "make_report", "print_published"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from gfp.report import main

        return getattr(main, name)
    raise AttributeError(f"module 'gfp.report' has no attribute {name!r}")
