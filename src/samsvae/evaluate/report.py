"""A self-contained HTML run report: metric table and figures embedded as base64 PNG."""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd


@dataclass(frozen=True)
class ReportSection:
    """A titled block of the report: an introduction, figures (caption -> PNG) and tables
    (caption -> DataFrame), in that order."""

    heading: str
    text: str = ""
    figures: dict[str, str | Path] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def _format(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def _key_value_table(values: dict[str, Any]) -> str:
    return (
        "<table>"
        + "".join(
            f"<tr><td>{html.escape(str(k))}</td><td>{_format(v)}</td></tr>"
            for k, v in values.items()
        )
        + "</table>"
    )


def _figures_html(figures: dict[str, str | Path]) -> str:
    return "\n".join(
        f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,"
        f"{base64.b64encode(Path(png).read_bytes()).decode()}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for caption, png in figures.items()
    )


def _section_html(section: ReportSection) -> str:
    tables = "\n".join(
        f"<h3>{html.escape(caption)}</h3>"
        + table.to_html(index=False, border=0, float_format=lambda x: f"{x:.3g}")
        for caption, table in section.tables.items()
    )
    text = f"<p>{html.escape(section.text)}</p>" if section.text else ""
    return (
        f"<h2>{html.escape(section.heading)}</h2>{text}\n"
        f"{_figures_html(section.figures)}\n{tables}"
    )


def write_html_report(
    path: str | Path,
    *,
    title: str,
    metrics: dict[str, Any],
    figures: dict[str, str | Path],
    sections: Sequence[ReportSection] = (),
) -> Path:
    """Write one HTML file that opens offline: scalar ``metrics`` as a table, ``figures`` inline,
    then each of ``sections``.

    ``figures`` maps a caption to a PNG file; nested values in ``metrics`` (e.g. settings) are
    listed under their own heading, at the end.
    """
    scalars = {k: v for k, v in metrics.items() if not isinstance(v, dict | list)}
    nested = {k: v for k, v in metrics.items() if isinstance(v, dict)}
    extra = "\n".join(_section_html(section) for section in sections)
    settings = "\n".join(
        f"<h2>{html.escape(name)}</h2>{_key_value_table(values)}"
        for name, values in nested.items()
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px}}
figure{{display:inline-block;margin:8px}}img{{max-width:520px}}</style></head>
<body><h1>{html.escape(title)}</h1>
<h2>Metrics</h2>{_key_value_table(scalars)}
<h2>Figures</h2>{_figures_html(figures)}
{extra}
{settings}
</body></html>
"""
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path
