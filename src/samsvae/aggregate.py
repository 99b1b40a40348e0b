"""Tables of run folders: mean ± sd of each metric over seeds, per configuration."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

# Options that differ between runs of one configuration: seeds, and where a run checkpoints.
NOT_CONFIGURATION = (".seed", ".checkpoint_dir", ".resume")


def collect_runs(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per run folder (``config.yaml`` + ``metrics.json``) found in or under ``paths``.

    Columns are the config options as ``section.option`` (lists and mappings as JSON text),
    the metrics, and ``run`` (the folder).

    Raises
    ------
    ValueError
        No run folder was found.
    """
    rows = []
    for path in paths:
        for metrics_file in sorted(Path(path).glob("**/metrics.json")):
            folder = metrics_file.parent
            config = yaml.safe_load((folder / "config.yaml").read_text())
            options = {
                f"{section}.{option}": _scalar(value)
                for section, values in config.items()
                for option, value in (values or {}).items()
            }
            rows.append({**options, **json.loads(metrics_file.read_text()), "run": str(folder)})
    if not rows:
        msg = f"No run folders (config.yaml + metrics.json) in or under {list(map(str, paths))}."
        raise ValueError(msg)
    return pd.DataFrame(rows)


def aggregate_runs(
    runs: pd.DataFrame,
    *,
    group_by: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Mean, sd and count of each metric per configuration.

    Parameters
    ----------
    runs
        From :func:`collect_runs`.
    group_by
        Config columns defining a configuration; ``None``: every option that differs between
        runs, except seeds and checkpoint settings (``NOT_CONFIGURATION``), so that groups are the
        seeds of one configuration.
    metrics
        Metric columns; ``None``: the numeric metrics, except cell counts (``n_*``).

    Returns
    -------
    One row per configuration: the ``group_by`` columns, ``runs`` (how many), and
    ``<metric>_mean``, ``<metric>_sd`` (sample standard deviation; NaN for one run).
    """
    options = [c for c in runs.columns if "." in c]
    if group_by is None:
        group_by = [
            c
            for c in options
            if not c.endswith(NOT_CONFIGURATION) and runs[c].astype(str).nunique(dropna=False) > 1
        ]
    unknown = sorted(set(group_by) - set(runs.columns))
    if unknown:
        msg = f"group_by: {unknown} are not options of the runs; the options are {options}."
        raise ValueError(msg)
    if metrics is None:
        metrics = [
            c
            for c in runs.select_dtypes("number").columns
            if c not in options and not c.startswith("n_")
        ]
    frame = runs.assign(**{c: runs[c].astype(str) for c in group_by}, _all="all")
    grouped = frame.groupby(list(group_by) or ["_all"], sort=False)
    table = grouped[list(metrics)].agg(["mean", "std"])
    table.columns = [f"{metric}_{stat.replace('std', 'sd')}" for metric, stat in table.columns]
    table.insert(0, "runs", grouped.size())
    return table.reset_index(drop=not group_by)


def markdown_table(table: pd.DataFrame) -> str:
    """A markdown table of :func:`aggregate_runs`: one ``mean ± sd`` column per metric."""
    metrics = [c.removesuffix("_mean") for c in table.columns if c.endswith("_mean")]
    keys = [c for c in table.columns if c != "runs" and not c.endswith(("_mean", "_sd"))]
    header = [*keys, "runs", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for _, row in table.iterrows():
        cells = [str(row[k]) for k in keys] + [str(int(row["runs"]))]
        cells += [_mean_sd(row[f"{m}_mean"], row[f"{m}_sd"]) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(table: pd.DataFrame, out: str | Path) -> list[Path]:
    """Write ``out`` (markdown) and the same stem with ``.csv`` and ``.json``; return the paths."""
    out = Path(out)
    paths = [out, out.with_suffix(".csv"), out.with_suffix(".json")]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown_table(table))
    table.to_csv(paths[1], index=False)
    table.to_json(paths[2], orient="records", indent=1)
    return paths


def _mean_sd(mean: float, sd: float) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.4g}" if math.isnan(sd) else f"{mean:.4g} ± {sd:.2g}"


def _scalar(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list | dict) else value
