"""report.html: one self-contained page (inline CSS, figures as base64 data URIs, no scripts, no
fonts or anything else fetched), so it opens offline in any browser and can be mailed as is."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from gfp.report.render import html_table
from gfp.report.tables import Table

CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
h3 { margin-bottom: 0.3em; } p.caption { color: #555; margin-top: 0; font-size: 0.92em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.86em; margin: 0.4em 0 1em 0; }
thead th { border-top: 2px solid #333; border-bottom: 1px solid #333; padding: 4px 8px;
           text-align: right; white-space: nowrap; }
thead th.label { text-align: left; }
tbody th.label { text-align: left; font-weight: normal; padding: 2px 8px; white-space: nowrap; }
td { padding: 2px 8px; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.paper { color: #555; background: #f7f7f7; }
td.note { color: #666; font-size: 0.9em; white-space: normal; min-width: 14em; }
tbody tr:last-child th, tbody tr:last-child td { border-bottom: 2px solid #333; }
tr.rule th, tr.rule td { border-top: 1px solid #333; }
span.check { font-size: 0.9em; }
td.ok span.check { color: #1a7f37; } td.off span.check { color: #b42318; }
figure { display: inline-block; margin: 0.5em 1em 1em 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; max-width: 40em; }
ul.meta { padding-left: 1.2em; } code { background: #f3f3f3; padding: 0 3px; }
"""


def data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def page(
    title: str,
    intro_html: str,
    sections: Sequence[tuple[str, Sequence[Table], str]],
    figures: Sequence[tuple[Path, str]],
) -> str:
    """The page: a title, an introduction (trusted HTML built by the report), sections of
    (heading, tables, trailing HTML), and the figures with their captions, embedded."""
    out = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        intro_html,
    ]
    for heading, tables, extra in sections:
        out.append(f"<h2>{html.escape(heading)}</h2>")
        out.extend(html_table(t) for t in tables)
        if extra:
            out.append(extra)
    if figures:
        out.append("<h2>Figures</h2>")
        for path, caption in figures:
            out.append(
                f"<figure><img src='{data_uri(path)}' alt='{html.escape(path.name)}'>"
                f"<figcaption><code>{html.escape(path.name)}</code>: "
                f"{html.escape(caption)}</figcaption></figure>"
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"
