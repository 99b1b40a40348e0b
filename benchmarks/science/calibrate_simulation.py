"""How close is ``samsvae.datasets.simulate_realistic`` to the real screens in ``../shared/data``?

Measures the same figures on Papalexi 2021 (THP-1 CRISPRko), Gasperini 2019 (K562 CRISPRi,
high MOI), McFaline-Figueroa 2023 (glioblastoma CRISPRi) and on the realistic simulation:

- depth: counts per cell over the modelled genes (median, 5% and 95% quantiles);
- fraction of non-zero entries of the count matrix;
- cells per perturbation (median, min, max over the single perturbations);
- effect sizes, per perturbation against the control cells, from mean normalised expression
  (counts scaled to the median depth): log2 fold change LFC_g = log2((m_pert + 0.01) /
  (m_control + 0.01)); over the genes whose control mean is at least ``--floor``, the max |LFC|
  and the number of genes with |LFC| > 0.5; the LFC of the targeted gene where it is measured;
- detectable effect: some gene differs in a Mann-Whitney U test of normalised expression
  (perturbed against control cells), Bonferroni-corrected over the genes with a control mean of
  at least 0.05, at level 0.05; the share of perturbations with no such gene.

Effects are measured on at most ``--cells`` cells per perturbation (a seeded subsample), so that
their noise is that of a simulated perturbation. Gasperini's perturbations are the gRNA groups
(a cell carries every group in its '+'-joined label), its controls the cells labelled
'non-targeting' only, and the targets of its TSS groups come from
``uns['positive_control_pairs']``.
Writes ``benchmarks/results/simulation_calibration.{json,md}``.

    python benchmarks/science/calibrate_simulation.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import scipy.sparse as sp
from scipy import stats

from samsvae.datasets import simulate_realistic

sys.path.insert(0, str(Path(__file__).parent))
from real_data import RESULTS, current_commit

DATA = Path(__file__).resolve().parents[3] / "shared/data"
PSEUDOCOUNT = 0.01
LFC_THRESHOLD = 0.5
TEST_FLOOR = 0.05


def describe_screen(
    counts: Any,
    perturbed: dict[str, np.ndarray],
    control: np.ndarray,
    targets: dict[str, int],
    *,
    floor: float,
    max_cells: int,
    seed: int,
) -> dict[str, Any]:
    """The calibration figures of one screen.

    Parameters
    ----------
    counts
        Cells x genes counts (dense or sparse).
    perturbed
        Each single perturbation's boolean cell mask.
    control
        Boolean mask of the control cells.
    targets
        Column of the targeted gene of each perturbation whose target is measured.
    floor
        Least control mean (normalised counts) of a gene counted in max |LFC| and in the
        number of genes with |LFC| > 0.5.
    max_cells
        Effects use a seeded subsample of at most this many cells per perturbation.
    seed
        Seed of the subsamples.

    Returns
    -------
    Summary figures (floats and ints) and ``per_perturbation`` (name -> its effect figures).
    """
    counts = sp.csr_matrix(counts, dtype=np.float64)
    depth = np.asarray(counts.sum(1)).ravel()
    normalised = sp.diags(np.median(depth) / np.maximum(depth, 1)) @ counts
    control_values = normalised[control].toarray()
    control_mean = control_values.mean(0)
    floored = control_mean >= floor
    tested = control_mean >= TEST_FLOOR
    control_tested = control_values[:, tested]
    rng = np.random.default_rng(seed)
    per_perturbation = {}
    for name, mask in perturbed.items():
        rows = np.flatnonzero(mask)
        if len(rows) > max_cells:
            rows = np.sort(rng.choice(rows, max_cells, replace=False))
        values = normalised[rows].toarray()
        lfc = np.log2((values.mean(0) + PSEUDOCOUNT) / (control_mean + PSEUDOCOUNT))
        p = stats.mannwhitneyu(values[:, tested], control_tested, axis=0).pvalue
        per_perturbation[name] = {
            "n_cells": int(mask.sum()),
            "max_abs_lfc": float(np.abs(lfc[floored]).max()),
            "n_genes_abs_lfc_above_0.5": int((np.abs(lfc[floored]) > LFC_THRESHOLD).sum()),
            "detectable": bool(np.nan_to_num(p, nan=1.0).min() < 0.05 / tested.sum()),
            "target_lfc": float(lfc[targets[name]]) if name in targets else None,
        }
    return _summary(counts, depth, control, floored, per_perturbation)


def _summary(
    counts: sp.csr_matrix,
    depth: np.ndarray,
    control: np.ndarray,
    floored: np.ndarray,
    per_perturbation: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    def column(key: str) -> np.ndarray:
        values = [row[key] for row in per_perturbation.values() if row[key] is not None]
        return np.asarray(values, dtype=float)

    n_cells, max_lfc = column("n_cells"), column("max_abs_lfc")
    n_de, target = column("n_genes_abs_lfc_above_0.5"), column("target_lfc")
    return {
        "n_cells": int(counts.shape[0]),
        "n_genes": int(counts.shape[1]),
        "n_control_cells": int(control.sum()),
        "n_perturbations": len(per_perturbation),
        "depth_median": float(np.median(depth)),
        "depth_q05": float(np.quantile(depth, 0.05)),
        "depth_q95": float(np.quantile(depth, 0.95)),
        "nonzero_fraction": float(counts.nnz / np.prod(counts.shape)),
        "cells_per_perturbation_median": float(np.median(n_cells)),
        "cells_per_perturbation_min": int(n_cells.min()),
        "cells_per_perturbation_max": int(n_cells.max()),
        "n_genes_above_floor": int(floored.sum()),
        "max_abs_lfc_median": float(np.median(max_lfc)),
        "max_abs_lfc_q90": float(np.quantile(max_lfc, 0.9)),
        "n_genes_abs_lfc_above_0.5_median": float(np.median(n_de)),
        "n_genes_abs_lfc_above_0.5_q90": float(np.quantile(n_de, 0.9)),
        "n_measured_targets": len(target),
        "target_lfc_median": float(np.median(target)) if len(target) else None,
        "target_lfc_min": float(target.min()) if len(target) else None,
        "target_lfc_max": float(target.max()) if len(target) else None,
        "share_no_detectable_effect": float(
            np.mean([not row["detectable"] for row in per_perturbation.values()])
        ),
        "per_perturbation": per_perturbation,
    }


def single_label_screen(
    adata: ad.AnnData, key: str, control: str
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, int]]:
    """Perturbation masks, control mask and measured targets of a screen with one label per
    cell, each perturbation named after its target gene."""
    labels = adata.obs[key].astype(str).to_numpy()
    names = sorted(set(labels) - {control})
    column = {str(g): j for j, g in enumerate(adata.var_names)}
    targets = {n: column[n] for n in names if n in column}
    return {n: labels == n for n in names}, labels == control, targets


def gasperini_screen(
    adata: ad.AnnData,
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, int]]:
    """gRNA groups (a cell carries each group of its label), 'non-targeting'-only controls and
    the target genes of the TSS groups."""
    labels = adata.obs["perturbations"].astype(str).to_numpy()
    parts = [set(label.split("+")) for label in labels]
    groups = sorted(set().union(*parts) - {"non-targeting", "none_of_listed"})
    perturbed = {g: np.array([g in p for p in parts]) for g in groups}
    pairs = adata.uns["positive_control_pairs"]
    column = {str(g): j for j, g in enumerate(adata.var_names)}
    targets = {
        str(g): column[str(r)]
        for g, r in zip(pairs["grna_group"], pairs["response_id"], strict=True)
        if str(r) in column
    }
    return perturbed, labels == "non-targeting", targets


def simulated_screen(
    adata: ad.AnnData,
) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, int]]:
    """The single perturbations of a ``simulate_realistic`` screen (combinations left out of
    the per-perturbation figures), its controls and its target genes."""
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    simulation = adata.uns["simulation"]
    column = {str(g): j for j, g in enumerate(adata.var_names)}
    names = [str(n) for n in simulation["perturbations"]]
    targets = {n: column[str(g)] for n, g in zip(names, simulation["target_genes"], strict=True)}
    return {n: labels == n for n in names}, labels == "control", targets


def real_screens() -> dict[str, tuple[ad.AnnData, Any]]:
    """Name -> (AnnData, function giving perturbation masks, control mask and targets)."""
    return {
        "Papalexi 2021 (THP-1 CRISPRko)": (
            ad.read_h5ad(DATA / "papalexi2021/papalexi2021_thp1_lowmoi.h5ad"),
            lambda a: single_label_screen(a, "perturbation", "non-targeting"),
        ),
        "Gasperini 2019 (K562 CRISPRi, high MOI)": (
            ad.read_h5ad(DATA / "gasperini2019/gasperini2019_k562_highmoi_subset.h5ad"),
            gasperini_screen,
        ),
        "McFaline-Figueroa 2023 (GBM CRISPRi)": (
            ad.read_h5ad(DATA / "mcfaline2023/mcfaline2023_gbm_crispri.h5ad"),
            lambda a: single_label_screen(a, "perturbation", "control"),
        ),
    }


COLUMNS = [
    ("n_cells", "cells"),
    ("n_genes", "genes"),
    ("n_perturbations", "perturbations"),
    ("depth_median", "depth median"),
    ("depth_q05", "depth 5%"),
    ("depth_q95", "depth 95%"),
    ("nonzero_fraction", "non-zero"),
    ("cells_per_perturbation_median", "cells / pert. (median)"),
    ("max_abs_lfc_median", "max abs LFC (median)"),
    ("max_abs_lfc_q90", "max abs LFC (90%)"),
    ("n_genes_abs_lfc_above_0.5_median", "genes abs LFC > 0.5 (median)"),
    ("n_genes_abs_lfc_above_0.5_q90", "genes abs LFC > 0.5 (90%)"),
    ("n_measured_targets", "measured targets"),
    ("target_lfc_median", "target LFC (median)"),
    ("target_lfc_min", "target LFC (min)"),
    ("target_lfc_max", "target LFC (max)"),
    ("share_no_detectable_effect", "share no effect"),
]


def markdown(record: dict[str, Any]) -> str:
    """One column per screen, one row per figure."""
    rows = record["screens"]
    names = list(rows)
    lines = [
        "Real screens beside `simulate_realistic` (per-perturbation effects on at most "
        f"{record['max_cells']} cells per perturbation, log2 fold changes over the genes with a "
        f"control mean of at least {record['floor']} normalised counts). The simulation's "
        "target figures include its null perturbations, whose target is untouched; none of "
        "McFaline-Figueroa's targets is among its genes. Command: "
        f"`{record['command']}`.",
        "",
        "| figure | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for key, label in COLUMNS:
        cells = [_format(rows[name].get(key)) for name in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _format(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cells", type=int, default=100)
    parser.add_argument("--floor", type=float, default=0.5)
    parser.add_argument("--skip-real", action="store_true", help="only the simulation")
    args = parser.parse_args()
    if not args.skip_real and not DATA.is_dir():
        parser.error(f"the real screens are read from {DATA}, which is missing; use --skip-real")
    options = {"floor": args.floor, "max_cells": args.cells, "seed": 0}
    screens: dict[str, dict[str, Any]] = {}
    if not args.skip_real:
        for name, (adata, layout) in real_screens().items():
            screens[name] = describe_screen(adata.X, *layout(adata), **options)
            print(name, "done", flush=True)
    seconds = []
    for seed in args.seeds:
        start = time.perf_counter()
        adata = simulate_realistic(seed=seed)
        seconds.append(time.perf_counter() - start)
        screens[f"simulate_realistic(seed={seed})"] = describe_screen(
            adata.X, *simulated_screen(adata), **options
        )
    command = "python benchmarks/science/calibrate_simulation.py --seeds " + " ".join(
        map(str, args.seeds)
    )
    record = {
        "command": command,
        "floor": args.floor,
        "max_cells": args.cells,
        "simulate_seconds": seconds,
        "screens": screens,
        "commit": current_commit(),
    }
    table = markdown(record)
    if not args.skip_real:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "simulation_calibration.json").write_text(json.dumps(record, indent=1) + "\n")
        (RESULTS / "simulation_calibration.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
