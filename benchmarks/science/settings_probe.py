"""One model configuration on a real screen: how well do its effects reproduce held-out cells?

Splits the screen's cells 80/20 (seeded), trains the model on the 80 with the given options
(JSON; ``{}`` means the defaults), and prints one JSON line: ATE r (all genes and top-20) of the
model's effects at the data's depth and at 10^4 against the held-out cells' observed effects, the
same r of the per-label mean of the training cells, the r and the slope of the model's effects
against that per-label mean (does the model reproduce what it was shown?), and the training time.
Appends the line to ``benchmarks/results/settings_probe.jsonl``.

    python benchmarks/science/settings_probe.py papalexi SAMSVAE '{}' '{}'
    python benchmarks/science/settings_probe.py papalexi SAMSVAE \\
        '{"n_latent": 10, "n_hidden": 128}' '{"max_epochs": 30, "batch_size": 512}'
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp

import samsvae
from samsvae.evaluate import ate_metrics, data_average_treatment_effects

ROOT = Path(__file__).resolve().parents[2]
DATA = {
    "papalexi": ("papalexi2021/papalexi2021_thp1_lowmoi.h5ad", "perturbation", "non-targeting"),
    "mcfaline": ("mcfaline2023/mcfaline2023_gbm_crispri.h5ad", "perturbation", "control"),
}


def _split(adata: ad.AnnData, seed: int = 0) -> tuple[ad.AnnData, ad.AnnData]:
    order = np.random.default_rng(seed).permutation(adata.n_obs)
    n_test = round(0.2 * adata.n_obs)
    return adata[np.sort(order[n_test:])].copy(), adata[np.sort(order[:n_test])].copy()


def main(name: str, model_name: str, model_options: dict, train_options: dict) -> dict:
    path, key, control = DATA[name]
    adata = ad.read_h5ad(ROOT.parent / "shared/data" / path)
    adata.X = sp.csr_matrix(adata.X)
    train, test = _split(adata)
    model_cls = getattr(samsvae, model_name)
    model_cls.setup_anndata(train, perturbation_key=key, control=control)
    targets = sorted(set(test.obs[key].astype(str)) - {control})

    def observed(cells: ad.AnnData) -> np.ndarray:
        labels = cells.obs[key].astype(str).to_numpy()
        return data_average_treatment_effects(cells.X, labels, targets, control)

    held_out, per_label = observed(test), observed(train)
    model = model_cls(train, **model_options)
    start = time.perf_counter()
    model.train(progress_bar=False, **train_options)
    seconds = time.perf_counter() - start
    at_depth = model.average_treatment_effects(targets, progress_bar=False).X
    deep = model.average_treatment_effects(targets, library_size=1e4, progress_bar=False).X
    row = {
        "data": name,
        "model": model_name,
        "model_options": model_options,
        "train_options": train_options,
        "n_latent": model.config.n_latent,
        "n_hidden": model.config.n_hidden,
        "train_settings": model.train_settings,
        "train_seconds": round(seconds, 1),
        "ate_r": ate_metrics(at_depth, held_out)["ate_pearson_r"],
        "ate_r_top20": ate_metrics(at_depth, held_out)["ate_pearson_r_top20"],
        "ate_r_at_1e4": ate_metrics(deep, held_out)["ate_pearson_r"],
        "per_label_mean_r": ate_metrics(per_label, held_out)["ate_pearson_r"],
        "per_label_mean_r_top20": ate_metrics(per_label, held_out)["ate_pearson_r_top20"],
        "r_with_per_label_mean": ate_metrics(at_depth, per_label)["ate_pearson_r"],
        "slope_on_per_label_mean": float(np.polyfit(per_label.ravel(), at_depth.ravel(), 1)[0]),
    }
    print(json.dumps(row), flush=True)
    with (ROOT / "benchmarks/results/settings_probe.jsonl").open("a") as out:
        out.write(json.dumps(row) + "\n")
    return row


if __name__ == "__main__":
    options = [json.loads(arg) for arg in sys.argv[3:5]]
    main(sys.argv[1], sys.argv[2], *options, *[{}] * (2 - len(options)))
