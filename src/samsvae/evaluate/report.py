"""A self-contained HTML run report, read top-down: a summary in plain words with the headline
metrics, the figures, the interpretation, and last, folded, every metric and setting. Figures are
embedded as base64 PNG, so the file opens offline."""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samsvae.metric_names import HEADLINE_METRICS, metric_label

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd


@dataclass(frozen=True)
class ReportSection:
    """A titled block of the HTML report, rendered as its text, figures and tables, in that order.

    Parameters
    ----------
    heading
        Title of the section.
    text
        Introductory paragraph (plain text; empty by default).
    figures
        PNG file of each figure, by caption.
    tables
        Each table, by caption.
    """

    heading: str
    text: str = ""
    figures: dict[str, str | Path] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def _format(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def _key_value_table(values: dict[str, Any], *, readable: bool = True) -> str:
    """Rows of (name, value); ``readable`` names metrics as people read them (with the key)."""

    def name(key: str) -> str:
        if not readable:
            return html.escape(key)
        return f"{html.escape(metric_label(key))} <code>{html.escape(key)}</code>"

    rows = "".join(f"<tr><td>{name(k)}</td><td>{_format(v)}</td></tr>" for k, v in values.items())
    return f"<table>{rows}</table>"


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    return {key: metrics[key] for key, _ in HEADLINE_METRICS if key in metrics}


def _folded(summary: str, body: str) -> str:
    return f"<details><summary>{html.escape(summary)}</summary>{body}</details>"


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
    summary: str = "",
) -> Path:
    """Write a self-contained HTML run report that opens offline.

    The page reads in the order a reader wants it: ``summary`` with the headline metrics,
    ``figures`` inline with their captions, each of ``sections``, then every scalar metric and
    each nested dictionary of ``metrics`` (e.g. settings) in folded tables. Figures are
    embedded as base64 PNG.

    Parameters
    ----------
    path
        File to write.
    title
        Title of the page.
    metrics
        Metric values by key, shown with their readable names
        (:func:`samsvae.metric_names.metric_label`); dictionary values get a folded table
        each, and list values are not shown.
    figures
        PNG file of each figure, by caption.
    sections
        Further sections, after the figures.
    summary
        A paragraph in plain words, shown first.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    scalars = {k: v for k, v in metrics.items() if not isinstance(v, dict | list)}
    nested = {k: v for k, v in metrics.items() if isinstance(v, dict)}
    extra = "\n".join(_section_html(section) for section in sections)
    folded = [_folded(f"All metrics ({len(scalars)})", _key_value_table(scalars))]
    folded += [
        _folded(name, _key_value_table(values, readable=False)) for name, values in nested.items()
    ]
    intro = f"<p>{html.escape(summary)}</p>" if summary else ""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px}}
figure{{display:inline-block;margin:8px}}img{{max-width:520px}}</style></head>
<body><h1>{html.escape(title)}</h1>
<h2>Summary</h2>{intro}{_key_value_table(_headline(scalars))}
<h2>Figures</h2>{_figures_html(figures)}
{extra}
<h2>Everything measured</h2>
{"".join(folded)}
</body></html>
"""
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path
