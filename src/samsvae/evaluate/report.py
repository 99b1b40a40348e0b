"""A self-contained HTML run report: metric table and figures embedded as base64 PNG."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any


def _format(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def write_html_report(
    path: str | Path, *, title: str, metrics: dict[str, Any], figures: dict[str, str | Path]
) -> Path:
    """Write one HTML file that opens offline: scalar ``metrics`` as a table, ``figures`` inline.

    ``figures`` maps a caption to a PNG file; nested values in ``metrics`` (e.g. settings) are
    listed under their own heading.
    """
    scalars = {k: v for k, v in metrics.items() if not isinstance(v, dict | list)}
    nested = {k: v for k, v in metrics.items() if isinstance(v, dict)}
    rows = "\n".join(
        f"<tr><td>{html.escape(k)}</td><td>{_format(v)}</td></tr>" for k, v in scalars.items()
    )
    images = "\n".join(
        f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,"
        f"{base64.b64encode(Path(png).read_bytes()).decode()}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        for caption, png in figures.items()
    )
    sections = "\n".join(
        f"<h2>{html.escape(name)}</h2><table>"
        + "".join(
            f"<tr><td>{html.escape(str(k))}</td><td>{_format(v)}</td></tr>"
            for k, v in values.items()
        )
        + "</table>"
        for name, values in nested.items()
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse}}td{{border:1px solid #ccc;padding:2px 8px}}
figure{{display:inline-block;margin:8px}}img{{max-width:520px}}</style></head>
<body><h1>{html.escape(title)}</h1>
<h2>Metrics</h2><table>{rows}</table>
<h2>Figures</h2>{images}
{sections}
</body></html>
"""
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path
