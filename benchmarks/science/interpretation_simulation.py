"""Does the interpretation API recover the simulator's structure? (quickstart simulation)

Trains SAMS-VAE as the quickstart does (``QuickstartSettings``, ``simulate_task``,
``train_on_task``: the default ``samsvae.datasets.simulate`` screen, 25% of combinations held
out) and compares what the interpretation API reads off the model with the simulator's truth:

1. Perturbation programs. The true sharing structure is the average-linkage clustering of the
   true mask rows on Jaccard distance, cut into C clusters; the model's is the same procedure on
   its masks q(m) > 0.5 (``jaccard``), or on the cosine of E_q[e_t * m_t] rows
   (``cosine``; truth: cosine of the true e_t * m_t). Agreement: adjusted Rand index (ARI; 0 for
   chance, 1 for identical partitions), with the mean ARI of 200 label permutations as a null.
2. Latent programs. Model dimensions are matched to the simulator's with the Hungarian matching
   of ``evaluate.metrics.match_latent_dimensions``, on q(m) against the true masks (``masks``), or
   on |E_q[e_t * m_t]| against the true |e_t * m_t| (``shift_magnitude``), and, as an upper
   bound for any permutation, on the |Pearson r| of the gene responses themselves (oracle).
   For each true dimension k, the genes it moves are the n largest |f(e_k) - f(0)|, f = log
   softmax of the simulator's decoder output (log expected normalised expression), and the
   model's are those of its matched dimension (``get_latent_gene_effects``, the same quantity
   through the model's decoder), stepped in the direction whose shifts agree in sign with the
   true dimension's (a direction's sign is as arbitrary as its index; the oracle takes the sign
   of r). Reported: the mean overlap |top_n(model) & top_n(true)| / n (chance: n / G) and the
   mean |Pearson r| of the two response vectors.
3. Latent programs along directions rather than axes (unit steps, f as above):
   - ``varimax``: the model's programs of ``get_latent_programs`` (varimax rotation of the rows
     of E_q[e_t * m_t], no truth used), matched to the true dimensions by the same Hungarian
     matching on |loadings| against the true |e_t * m_t|; genes from
     ``get_latent_gene_effects(rotation="varimax")``.
   - ``Procrustes map (uses the truth)``: the orthogonal R minimising ||S_true R - S_model||
     over the perturbation shifts (K(K-1)/2 free parameters from T x K values); true dimension k
     is read along row k of R in the model's latent space. A reference for how well the gene
     programs are recovered up to a rotation, not something a user could compute.
   Diagnostics: R^2 of the least-squares linear map S_true -> S_model; average precision of
   the matched |loadings| (and of the matched q(m)) against the true mask entries (threshold
   free), and mask F1 of |loading| > 1 (a shift of one basal standard deviation).
4. Perturbation programs: the model's cosine clusters (C = 10, the API's enrichment default);
   the genes a cluster moves are the mean over its members of f(s_t) - f(0), with s_t the
   shift (E_q[e_t * m_t] through the model's decoder, e_t * m_t through the simulator's).
   No matching is needed (the same perturbations on both sides); chance is again n / G.

Writes ``benchmarks/results/interpretation_simulation.{json,md}``.

    python benchmarks/science/interpretation_simulation.py --threads 1 \
        --guides mean_field correlated --global-lrs default none

``--global-lrs none`` trains the globals at the base lr (the public ``train(global_lr=None)``),
which the recovery sweep found gives sparser masks.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, average_precision_score

import samsvae
from samsvae.datasets.simulate import _decode
from samsvae.evaluate.interpret import (
    cluster_by_similarity,
    cosine_similarity,
    decoder_expression_scale,
    jaccard_similarity,
    latent_gene_response,
)
from samsvae.evaluate.metrics import mask_recovery, match_latent_dimensions
from samsvae.workflows import (
    QuickstartSettings,
    simulate_task,
    simulated_masks_in_model_order,
    train_on_task,
)

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
CLUSTER_COUNTS = (5, 10, 15)
TOP_GENES = (10, 20)
PROGRAM_CLUSTERS = 10
DIAGNOSTICS = {
    "linear_map_r2": "R² of the least-squares linear map true shifts -> E[e ⊙ m]",
    "q_mask_average_precision": "average precision of matched q(m) for the true masks",
    "loading_mask_average_precision": "average precision of matched varimax abs. loadings",
    "q_mask_f1": "mask F1 of q(m) > 0.5",
    "loading_mask_f1": "mask F1 of varimax abs. loading > 1",
}


def true_globals(adata: Any, perturbations: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """True masks and shifts e_t * m_t, rows in the model's perturbation order."""
    simulation = adata.uns["simulation"]
    row = {str(name): i for i, name in enumerate(simulation["perturbations"])}
    order = [row[p] for p in perturbations]
    masks = simulated_masks_in_model_order(adata, perturbations).astype(np.float64)
    return masks, np.asarray(simulation["embeddings"], dtype=np.float64)[order] * masks


def true_gene_response(adata: Any, directions: np.ndarray | None = None) -> np.ndarray:
    """f(d) - f(0) of the simulator, f = log softmax of its decoder, for each direction d
    (default: the latent axes e_k); (n_directions, G)."""
    simulation = adata.uns["simulation"]
    decoder = tuple(np.asarray(simulation[f"decoder_{n}"]) for n in ("w1", "b1", "w2"))

    def decode(z: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(torch.from_numpy(_decode(z.double().numpy(), decoder)), dim=-1)

    n_latent = decoder[0].shape[0]
    basal = torch.zeros(n_latent, dtype=torch.float64)
    return latent_gene_response(decode, n_latent, basal=basal, directions=directions).numpy()


def model_gene_response(model: samsvae.SAMSVAE, directions: np.ndarray) -> np.ndarray:
    """f(d) - f(0) through the model's decoder for each row d of ``directions``."""
    decode = decoder_expression_scale(model.module)
    response = latent_gene_response(decode, model.config.n_latent, directions=directions)
    return response.double().numpy()


def ari_with_null(truth: np.ndarray, estimate: np.ndarray, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    null = [adjusted_rand_score(truth, rng.permutation(estimate)) for _ in range(200)]
    return {"ari": float(adjusted_rand_score(truth, estimate)), "ari_null": float(np.mean(null))}


def clustering_agreement(model: samsvae.SAMSVAE, adata: Any, seed: int) -> dict[str, Any]:
    masks, shifts = true_globals(adata, model.design.perturbations)
    posterior = model.get_global_posterior()
    n_perturbations = model.design.n_perturbations
    estimated_masks = posterior["mask_probability"].to_numpy().reshape(n_perturbations, -1) > 0.5
    estimated_shifts = posterior["shift_mean"].to_numpy().reshape(n_perturbations, -1)
    similarities = {
        "jaccard": (jaccard_similarity(masks), jaccard_similarity(estimated_masks)),
        "cosine": (cosine_similarity(shifts), cosine_similarity(estimated_shifts)),
    }
    out: dict[str, Any] = {}
    for metric, (true_similarity, model_similarity) in similarities.items():
        for n_clusters in CLUSTER_COUNTS:
            truth = cluster_by_similarity(true_similarity, n_clusters=n_clusters).labels
            estimate = cluster_by_similarity(model_similarity, n_clusters=n_clusters).labels
            out[f"{metric}_C{n_clusters}"] = ari_with_null(truth, estimate, seed)
    return out


def program_overlap(truth: np.ndarray, estimate: np.ndarray) -> dict[str, Any]:
    """Top-n gene overlap and |Pearson r| of matched response rows, each (K, G)."""
    correlations = [abs(np.corrcoef(t, e)[0, 1]) for t, e in zip(truth, estimate, strict=True)]
    out: dict[str, Any] = {"mean_abs_pearson_r": float(np.mean(correlations))}
    for n in TOP_GENES:
        top_true = np.argsort(-np.abs(truth), axis=1)[:, :n]
        top_model = np.argsort(-np.abs(estimate), axis=1)[:, :n]
        overlaps = [len(set(a) & set(b)) / n for a, b in zip(top_true, top_model, strict=True)]
        out[f"top{n}_overlap"] = float(np.mean(overlaps))
        out[f"top{n}_overlap_per_dimension"] = overlaps
        out[f"top{n}_overlap_chance"] = n / truth.shape[1]
    return out


def signed_overlap(
    model: samsvae.SAMSVAE,
    truth: np.ndarray,
    directions: np.ndarray,
    matched: np.ndarray,
    agreement: np.ndarray,
) -> dict[str, Any]:
    """Overlap of the matched model directions, each turned to the sign whose ``agreement``
    with the true dimension is positive: a direction's sign is as arbitrary as its index."""
    signs = np.where(agreement < 0, -1.0, 1.0)
    response = model_gene_response(model, directions[matched] * signs[:, None])
    return {"matched_model_dimension": matched.tolist(), **program_overlap(truth, response)}


def gene_program_agreement(model: samsvae.SAMSVAE, adata: Any) -> dict[str, Any]:
    """Latent axes matched on q(m), |E_q[e * m]| and (oracle) the gene responses; varimax
    programs matched on |loadings|; the Procrustes map from the true shifts."""
    masks, shifts = true_globals(adata, model.design.perturbations)
    estimated = model.get_global_posterior()["shift_mean"].to_numpy().reshape(len(shifts), -1)
    truth = true_gene_response(adata)  # (K, G)
    axes = np.eye(model.config.n_latent)
    # Upper bound of any permutation: match on |r| of the gene responses themselves.
    correlation = np.corrcoef(model_gene_response(model, axes), truth)[: len(axes), len(axes) :]
    oracle_rows, oracle_cols = linear_sum_assignment(-np.abs(correlation))
    oracle = oracle_rows[np.argsort(oracle_cols)]
    matchings = {
        "masks": match_latent_dimensions(model.get_mask_probabilities().to_numpy(), masks),
        "shift_magnitude": match_latent_dimensions(np.abs(estimated), np.abs(shifts)),
    }
    out = {
        name: signed_overlap(model, truth, axes, matched, (estimated[:, matched] * shifts).sum(0))
        for name, matched in matchings.items()
    }
    agreement = correlation[oracle, np.arange(len(oracle))]
    out["gene_responses (oracle)"] = signed_overlap(model, truth, axes, oracle, agreement)
    loadings, directions = (t.to_numpy() for t in model.get_latent_programs())
    matched = match_latent_dimensions(np.abs(loadings), np.abs(shifts))
    agreement = (loadings[:, matched] * shifts).sum(0)
    out["varimax"] = signed_overlap(model, truth, directions, matched, agreement)
    # Procrustes: the rotation R of the true latent space that best matches the model's shifts.
    u, _, vt = np.linalg.svd(shifts.T @ estimated)
    out["Procrustes map (uses the truth)"] = program_overlap(
        truth, model_gene_response(model, u @ vt)
    )
    return out


def latent_space_diagnostics(model: samsvae.SAMSVAE, adata: Any) -> dict[str, float]:
    """How close the model's latent space is to a linear image of the simulator's, and how well
    the varimax loadings and q(m) rank the true mask entries."""
    masks, shifts = true_globals(adata, model.design.perturbations)
    estimated = model.get_global_posterior()["shift_mean"].to_numpy().reshape(shifts.shape[0], -1)
    linear_map = np.linalg.lstsq(shifts, estimated, rcond=None)[0]
    residual = ((estimated - shifts @ linear_map) ** 2).sum()
    r_squared = 1 - residual / ((estimated - estimated.mean(0)) ** 2).sum()
    loadings = np.abs(model.get_latent_programs(rotation="varimax")[0].to_numpy())
    aligned = loadings[:, match_latent_dimensions(loadings, np.abs(shifts))]
    probabilities = model.get_mask_probabilities().to_numpy()
    aligned_q = probabilities[:, match_latent_dimensions(probabilities, masks)]
    return {
        "linear_map_r2": float(r_squared),
        "loading_mask_average_precision": float(
            average_precision_score(masks.ravel(), aligned.ravel())
        ),
        "q_mask_average_precision": float(
            average_precision_score(masks.ravel(), aligned_q.ravel())
        ),
        "loading_mask_f1": mask_recovery(loadings > 1.0, masks.astype(bool))["mask_f1"],
        "q_mask_f1": mask_recovery(probabilities > 0.5, masks.astype(bool))["mask_f1"],
    }


def perturbation_program_agreement(model: samsvae.SAMSVAE, adata: Any) -> dict[str, Any]:
    """Genes moved by each model cluster of perturbations, model vs simulator."""
    _, shifts = true_globals(adata, model.design.perturbations)
    estimated = model.get_global_posterior()["shift_mean"].to_numpy().reshape(shifts.shape[0], -1)
    clusters = model.get_perturbation_clusters(n_clusters=PROGRAM_CLUSTERS)
    labels = clusters["cluster"].reindex(list(model.design.perturbations)).to_numpy()
    true_response = true_gene_response(adata, shifts)
    model_response = model_gene_response(model, estimated)
    groups = np.unique(labels)
    return program_overlap(
        np.stack([true_response[labels == c].mean(0) for c in groups]),
        np.stack([model_response[labels == c].mean(0) for c in groups]),
    )


def run(settings: QuickstartSettings) -> dict[str, Any]:
    start = time.perf_counter()
    task = simulate_task(settings)
    samsvae.SAMSVAE.setup_anndata(task.train, perturbation_key="perturbation", control="control")
    model = samsvae.SAMSVAE(
        task.train,
        n_latent=settings.model_latent,
        n_hidden=settings.n_hidden,
        mask_prior=settings.mask_prior,
        guide=settings.guide,  # type: ignore[arg-type]
    )
    train_on_task(model, settings, progress_bar=False)
    train_seconds = time.perf_counter() - start
    return {
        "settings": dataclasses.asdict(settings),
        "train_seconds": train_seconds,
        "active_mask_entries": int((model.get_mask_probabilities().to_numpy() > 0.5).sum()),
        "true_mask_entries": int(np.asarray(task.adata.uns["simulation"]["masks"]).sum()),
        "clustering": clustering_agreement(model, task.adata, settings.seed),
        "gene_programs": gene_program_agreement(model, task.adata),
        "perturbation_programs": perturbation_program_agreement(model, task.adata),
        "diagnostics": latent_space_diagnostics(model, task.adata),
    }


def markdown(results: dict[str, Any], command: str) -> str:
    runs = results["runs"]
    header = "| metric | " + " | ".join(f"SAMS-VAE ({name})" for name in runs) + " | chance |"
    lines = [
        "# Interpretation on the default simulation",
        "",
        f"`{command}`; seed 0, quickstart training settings. Written by "
        "`benchmarks/science/interpretation_simulation.py` (definitions in its docstring).",
        "",
        header,
        "|" + "---|" * (len(runs) + 2),
    ]
    first = next(iter(runs.values()))
    for key in first["clustering"]:
        metric, count = key.split("_C")
        values = " | ".join(f"{r['clustering'][key]['ari']:.3f}" for r in runs.values())
        null = first["clustering"][key]["ari_null"]
        lines.append(f"| ARI, {metric} clustering, C = {count} | {values} | {null:.3f} |")
    for matching in first["gene_programs"]:
        programs = [r["gene_programs"][matching] for r in runs.values()]
        for n in TOP_GENES:
            values = " | ".join(f"{p[f'top{n}_overlap']:.3f}" for p in programs)
            chance = programs[0][f"top{n}_overlap_chance"]
            lines.append(
                f"| top-{n} gene overlap per latent program, matched on {matching} | {values} "
                f"| {chance:.3f} |"
            )
        values = " | ".join(f"{p['mean_abs_pearson_r']:.3f}" for p in programs)
        lines.append(
            f"| mean abs. Pearson r of gene responses, matched on {matching} | {values} | |"
        )
    programs = [r["perturbation_programs"] for r in runs.values()]
    for n in TOP_GENES:
        values = " | ".join(f"{p[f'top{n}_overlap']:.3f}" for p in programs)
        chance = programs[0][f"top{n}_overlap_chance"]
        lines.append(
            f"| top-{n} gene overlap per perturbation program (C = {PROGRAM_CLUSTERS} "
            f"cosine clusters) | {values} | {chance:.3f} |"
        )
    for key, label in DIAGNOSTICS.items():
        values = " | ".join(f"{r['diagnostics'][key]:.3f}" for r in runs.values())
        lines.append(f"| {label} | {values} | |")
    values = " | ".join(f"{r['active_mask_entries']}" for r in runs.values())
    lines.append(f"| active mask entries (truth {first['true_mask_entries']}) | {values} | |")
    values = " | ".join(f"{r['train_seconds']:.0f}" for r in runs.values())
    lines.append(f"| simulate + train seconds | {values} | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--guides", nargs="+", default=["mean_field"])
    parser.add_argument(
        "--global-lrs",
        nargs="+",
        default=["default"],
        help="'default' (the quickstart's), 'none' (the base lr) or a number; one run each",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results: dict[str, Any] = {"runs": {}}
    for guide in args.guides:
        for global_lr in args.global_lrs:
            settings = QuickstartSettings(guide=guide)
            name = guide
            if global_lr != "default":
                value = None if global_lr == "none" else float(global_lr)
                settings = dataclasses.replace(settings, global_lr=value)
                name = f"{guide}, global lr {global_lr}"
            results["runs"][name] = run(settings)
    results["git_commit"] = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    results["versions"] = {
        "samsvae": samsvae.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
    }
    command = "python benchmarks/science/interpretation_simulation.py " + " ".join(sys.argv[1:])
    results["command"] = command
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "interpretation_simulation.json").write_text(json.dumps(results, indent=2))
    (RESULTS / "interpretation_simulation.md").write_text(markdown(results, command.strip()))
    print(markdown(results, command.strip()))


if __name__ == "__main__":
    main()
