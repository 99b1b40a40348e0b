"""Human-readable names of run metrics, for the command line summary and the HTML report."""

from __future__ import annotations

import re

#: The metrics a run summary leads with, in order, with their names.
HEADLINE_METRICS = (
    ("heldout_combo_ate_pearson_r", "ATE r, held-out combinations (SAMS-VAE)"),
    (
        "heldout_combo_additive_baseline_ate_pearson_r",
        "ATE r, held-out combinations (additive baseline)",
    ),
    (
        "heldout_combo_ridge_baseline_ate_pearson_r",
        "ATE r, held-out combinations (ridge baseline)",
    ),
    ("heldout_combo_ate_pearson_r_top20", "ATE r, top-20 genes (SAMS-VAE)"),
    ("seen_ate_pearson_r", "ATE r, perturbations seen in training"),
    ("mask_precision", "mask precision"),
    ("mask_recall", "mask recall"),
    ("mask_f1", "mask F1"),
    ("heldout_iwelbo", "held-out IWELBO per cell"),
    ("heldout_combo_interval90_coverage", "coverage of held-out effects by 90% intervals"),
    ("heldout_combo_energy_distance", "energy distance to held-out cells (SAMS-VAE)"),
    ("control_baseline_energy_distance", "energy distance to held-out cells (controls)"),
)

# Phrases of metric keys, longest first, and how they read.
_PHRASES = (
    ("heldout_combo_", "held-out combinations: "),
    ("seen_", "seen perturbations: "),
    ("control_mean_baseline_", "control-mean baseline "),
    ("perturbed_mean_baseline_", "perturbed-mean baseline "),
    ("additive_baseline_", "additive baseline "),
    ("ridge_baseline_", "ridge baseline "),
    ("control_baseline_", "controls' "),
    ("ate_pearson_r", "ATE Pearson r"),
    ("ate_r2", "ATE R²"),
    ("_top20", ", top-20 genes"),
    ("_minus_best_baseline", " minus the best baseline's"),
    ("_best_baseline", ": the best baseline"),
    ("interval90_", "90% interval "),
    ("heldout_iwelbo", "held-out IWELBO per cell"),
    ("latent_mcc", "latent MCC (basal latents vs the truth)"),
    ("mask_auroc", "mask AUROC"),
    ("mask_active_estimated", "active mask entries"),
    ("mask_active_true", "true mask entries"),
    ("heldout", "held-out"),
)


def metric_label(key: str) -> str:
    """The name a person reads for metric ``key`` (``"heldout_combo_ate_r2"`` -> "held-out
    combinations: ATE R²"); the headline names where there is one."""
    headline = dict(HEADLINE_METRICS)
    if key in headline:
        return headline[key]
    label = f"number of {key[2:]}" if key.startswith("n_") else key
    for phrase, reading in _PHRASES:
        label = label.replace(phrase, reading)
    return re.sub(r"\s+", " ", label.replace("_", " ")).strip()
