"""The `samsvae` command line."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
from click.testing import CliRunner

from samsvae.cli import main


def test_quickstart_writes_a_run_folder_and_prints_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(
        main,
        [
            "quickstart",
            "--out",
            str(out),
            "--max-epochs",
            "2",
            "--n-perturbations",
            "6",
            "--n-combinations",
            "4",
            "--cells",
            "20",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "mask F1" in result.output and "ATE r, held-out combos" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "mask_precision",
        "mask_recall",
        "mask_f1",
        "heldout_iwelbo",
        "heldout_combo_ate_pearson_r",
        "heldout_combo_additive_baseline_ate_pearson_r",
        "heldout_combo_ate_pearson_r_minus_best_baseline",
        "heldout_combo_interval90_coverage",
        "seen_ate_pearson_r",
        "latent_mcc",
    ):
        assert isinstance(metrics[key], float), key
    assert 0 <= metrics["heldout_combo_interval90_coverage"] <= 1
    for name in ("mask_heatmap.png", "ate_scatter.png", "model/model.safetensors"):
        assert (out / name).stat().st_size > 0
    report = (out / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 3
    assert "heldout_combo_ate_pearson_r" in report

    again = CliRunner().invoke(main, ["evaluate", str(out)])
    assert again.exit_code == 0, again.output
    # Re-evaluation rebuilds the same task and seeds: identical metrics.
    assert json.loads((out / "metrics.json").read_text()) == metrics


def test_evaluate_refuses_a_folder_without_a_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path)])
    assert result.exit_code != 0
    assert "metrics.json is missing" in str(result.exception)


def test_simulate_writes_a_readable_h5ad(tmp_path: Path) -> None:
    path = tmp_path / "sim.h5ad"
    result = CliRunner().invoke(
        main,
        [
            "simulate",
            str(path),
            "--n-perturbations",
            "5",
            "--n-combinations",
            "2",
            "--n-genes",
            "10",
        ],
    )
    assert result.exit_code == 0, result.output
    adata = ad.read_h5ad(path)
    assert adata.n_vars == 10
    assert len(adata.uns["simulation"]["masks"]) == 5


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "quickstart" in result.output and "simulate" in result.output
