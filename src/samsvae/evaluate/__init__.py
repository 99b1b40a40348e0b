"""Evaluation: IWELBO, average treatment effects, metrics and baselines."""

from __future__ import annotations

from samsvae.evaluate.ate import data_average_treatment_effects, model_average_treatment_effects
from samsvae.evaluate.baselines import EffectBaselines, fit_effect_baselines
from samsvae.evaluate.likelihood import predictive_iwelbo
from samsvae.evaluate.metrics import (
    ate_metrics,
    energy_distance,
    mask_auroc,
    mask_recovery,
    pearson_r,
    r_squared,
)

__all__ = [
    "EffectBaselines",
    "ate_metrics",
    "data_average_treatment_effects",
    "energy_distance",
    "fit_effect_baselines",
    "mask_auroc",
    "mask_recovery",
    "model_average_treatment_effects",
    "pearson_r",
    "predictive_iwelbo",
    "r_squared",
]
