"""Evaluation: IWELBO, average treatment effects, metrics, baselines and interpretation."""

from __future__ import annotations

from samsvae.evaluate.ate import (
    data_average_treatment_effects,
    model_average_treatment_effect_draws,
    model_average_treatment_effects,
)
from samsvae.evaluate.baselines import EffectBaselines, fit_effect_baselines
from samsvae.evaluate.interpret import (
    cluster_by_similarity,
    cosine_similarity,
    data_genetic_interactions,
    gene_set_enrichment,
    jaccard_similarity,
    latent_gene_response,
    model_genetic_interactions,
    rank_genes,
    read_gmt,
    summarise_globals,
)
from samsvae.evaluate.likelihood import predictive_iwelbo
from samsvae.evaluate.metrics import (
    ate_metrics,
    energy_distance,
    interval_coverage,
    mask_auroc,
    mask_recovery,
    mean_correlation_coefficient,
    pearson_r,
    r_squared,
    relative_to_best_baseline,
)

__all__ = [
    "EffectBaselines",
    "ate_metrics",
    "cluster_by_similarity",
    "cosine_similarity",
    "data_average_treatment_effects",
    "data_genetic_interactions",
    "energy_distance",
    "fit_effect_baselines",
    "gene_set_enrichment",
    "interval_coverage",
    "jaccard_similarity",
    "latent_gene_response",
    "mask_auroc",
    "mask_recovery",
    "mean_correlation_coefficient",
    "model_average_treatment_effect_draws",
    "model_average_treatment_effects",
    "model_genetic_interactions",
    "pearson_r",
    "predictive_iwelbo",
    "r_squared",
    "rank_genes",
    "read_gmt",
    "relative_to_best_baseline",
    "summarise_globals",
]
