"""`samsvae train CONFIG.yaml`: a config-file experiment writes a complete run folder."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from click.testing import CliRunner

import samsvae
from samsvae.cli import main
from samsvae.data import Split
from samsvae.experiment import read_config

CONFIG = {
    "dataset": {
        "name": "simulate",
        "n_perturbations": 5,
        "n_combinations": 4,
        "n_genes": 12,
        "n_latent": 2,
        "n_cells_per_perturbation": 15,
        "n_cells_per_combination": 15,
        "n_control_cells": 30,
        "seed": 0,
    },
    "preprocess": {"min_cells": 1},
    "task": {"name": "norman_ood", "seed": 0, "fraction": 0.5},
    "model": {"name": "SAMSVAE", "n_latent": 2, "n_hidden": 8, "n_particles": 1},
    "train": {"max_steps": 2, "progress_bar": False},
    "evaluate": {"iwelbo_particles": 2},
}


def _write(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_train_runs_a_config_and_writes_a_run_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(_write(tmp_path, CONFIG)), "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert math.isfinite(metrics["test_iwelbo"]) and metrics["task"] == "norman_ood"
    split = Split.load(out / "split.json")
    assert metrics["n_train"] == len(split.train)
    assert yaml.safe_load((out / "config.yaml").read_text())["task"] == CONFIG["task"]
    assert samsvae.SAMSVAE.load(out / "model").design.n_perturbations == 5


def test_a_config_can_condition_on_a_batch_covariate(tmp_path: Path) -> None:
    dataset = {**CONFIG["dataset"], "n_batches": 2, "batch_effect": 1.0}
    config = {
        **CONFIG,
        "dataset": dataset,
        "task": {"name": "random", "seed": 0},
        "setup": {"covariate_keys": ["batch"]},
    }
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(_write(tmp_path, config)), "--out", str(out)])
    assert result.exit_code == 0, result.output
    design = samsvae.SAMSVAE.load(out / "model").design
    assert design.covariate_keys == ("batch",)
    assert design.covariate_categories == (("batch0", "batch1"),)


def test_the_shipped_configs_are_valid() -> None:
    configs = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        read_config(path)


@pytest.mark.parametrize(
    ("section", "change", "message"),
    [
        ("model", {"n_latnt": 2}, "n_latnt"),
        ("train", {"train_indices": [0]}, "train_indices"),
        ("task", {"name": "norman_odd"}, "norman_odd"),
        ("dataset", {"name": "nope"}, "nope"),
        ("train", {"lr": "fast"}, "train.lr='fast' does not fit its type"),
        ("model", {"guide": "meanfield"}, "model.guide='meanfield' does not fit its type"),
        ("model", {"n_latent": 2.5}, "model.n_latent=2.5 does not fit its type"),
        ("train", {"devices": True}, "train.devices=True does not fit its type"),
    ],
)
def test_a_config_with_an_unknown_option_is_refused_before_running(
    tmp_path: Path, section: str, change: dict, message: str
) -> None:
    config = {**CONFIG, section: {**CONFIG[section], **change}}
    with pytest.raises(ValueError, match=message):
        read_config(_write(tmp_path, config))
    result = CliRunner().invoke(main, ["train", str(_write(tmp_path, config))])
    assert result.exit_code == 2 and message in result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"sweep": {"model.n_latnt": {"type": "int", "low": 1, "high": 3}}}, "n_latnt"),
        ({"sweep": {"train.lr": {"type": "float", "low": 1.0, "high": 0.1}}}, "low < high"),
        ({"sweep": {"train.lr": {"type": "uniform", "low": 0.1, "high": 1}}}, "uniform"),
        ({"sweep": {"model.mask_prior": {"type": "categorical", "choices": [0.1, 2]}}}, "mask"),
        ({"grid": {"train.sed": [0, 1]}}, "sed"),
        ({"grid": {"train.seed": 0}}, "non-empty lists"),
    ],
)
def test_a_bad_grid_or_sweep_is_refused_before_running(
    tmp_path: Path, extra: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        read_config(_write(tmp_path, {**CONFIG, **extra}))


def test_a_grid_runs_one_folder_per_point_and_aggregate_averages_over_seeds(
    tmp_path: Path,
) -> None:
    config = _write(tmp_path, {**CONFIG, "grid": {"train.seed": [0, 1]}})
    out = tmp_path / "runs"
    result = CliRunner().invoke(main, ["train", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = [json.loads((out / f"seed={s}" / "metrics.json").read_text()) for s in (0, 1)]
    assert all(math.isfinite(m["validation_iwelbo"]) for m in metrics)

    result = CliRunner().invoke(main, ["aggregate", str(out), "--metric", "test_iwelbo"])
    assert result.exit_code == 0, result.output
    values = [m["test_iwelbo"] for m in metrics]
    mean, sd = sum(values) / 2, abs(values[0] - values[1]) / math.sqrt(2)
    assert result.output.splitlines()[2] == f"| 2 | {mean:.4g} ± {sd:.2g} |"


def test_train_resume_continues_an_interrupted_run_to_the_uninterrupted_result(
    tmp_path: Path,
) -> None:
    def run(max_epochs: int, out: Path, *flags: str) -> Any:
        config = {**CONFIG, "train": {"max_epochs": max_epochs, "progress_bar": False}}
        path = _write(tmp_path, config)
        return CliRunner().invoke(main, ["train", str(path), "--out", str(out), *flags])

    assert run(4, tmp_path / "whole").exit_code == 0
    assert run(2, tmp_path / "parts").exit_code == 0  # "interrupted" after 2 epochs
    again = run(4, tmp_path / "parts")
    assert again.exit_code != 0 and "resume" in again.output  # refuses to overwrite
    resumed = run(4, tmp_path / "parts", "--resume")
    assert resumed.exit_code == 0, resumed.output
    whole = samsvae.SAMSVAE.load(tmp_path / "whole" / "model").module.state_dict()
    parts = samsvae.SAMSVAE.load(tmp_path / "parts" / "model").module.state_dict()
    assert all(torch.equal(whole[k], parts[k]) for k in whole)
