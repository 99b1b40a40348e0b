"""The `samsvae` command line."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import anndata as ad
import click
import pytest
from click.testing import CliRunner

from samsvae.cli import main

if TYPE_CHECKING:
    from pathlib import Path

    from click.testing import Result


def test_quickstart_writes_a_run_folder_and_prints_a_summary(
    quickstart_run: tuple[Path, Result],
) -> None:
    out, result = quickstart_run
    assert result.exit_code == 0, result.output
    assert "mask F1" in result.output and "ATE r, held-out combinations" in result.output
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
    # Metrics figures, then the interpretation: similarity, clustered masks, latent programs.
    assert report.count("data:image/png;base64,") == 7
    assert "heldout_combo_ate_pearson_r" in report
    for heading in ("Interpretation", "perturbation clusters", "genetic interactions"):
        assert heading in report
    # Read top-down: summary in words, figures, interpretation, then every metric folded away.
    order = [
        report.index(mark)
        for mark in ("<h2>Summary", "was trained for", "<h2>Figures", "<h2>Interpretation")
    ]
    order.append(report.index("<details><summary>All metrics"))
    assert order == sorted(order)
    assert "held-out combinations: ATE R²" in report  # readable names beside the keys

    again = CliRunner().invoke(main, ["evaluate", str(out)])
    assert again.exit_code == 0, again.output
    # Re-evaluation rebuilds the same task and seeds: identical metrics.
    assert json.loads((out / "metrics.json").read_text()) == metrics


def test_evaluate_refuses_a_folder_without_a_run_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["evaluate", str(tmp_path)])
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    first, hint = result.output.splitlines()
    assert first.startswith("Error: ") and "metrics.json is missing" in first
    assert hint.startswith("Hint: ") and "--debug" in hint
    assert "Traceback" not in result.output


def test_debug_shows_the_full_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--debug", "evaluate", str(tmp_path)])
    assert result.exit_code != 0
    assert isinstance(result.exception, FileNotFoundError)
    assert "metrics.json is missing" in str(result.exception)


def _commands() -> list[str]:
    return sorted(main.list_commands(click.Context(main)))


@pytest.mark.parametrize("command", _commands())
def test_every_option_of_every_command_is_explained(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0, result.output
    undocumented = [
        option.opts[0]
        for option in main.commands[command].params
        if isinstance(option, click.Option) and not option.help
    ]
    assert undocumented == [], f"{command}: {undocumented} have no help text"


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
    assert all(command in result.output for command in _commands())
    assert "--debug" in result.output
