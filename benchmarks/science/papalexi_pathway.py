"""Does SAMS-VAE put Papalexi's interferon-gamma pathway knock-outs together?

In Papalexi et al. 2021 (THP-1, CRISPRko) IFNGR1, IFNGR2, JAK2 and STAT1 are the IFN-gamma
receptor-to-transcription chain and IRF1 acts downstream of it: knocking any of them out should
move the cells through one mechanism. This trains SAMS-VAE at its defaults (``SAMSVAE(adata)``,
``model.train(seed=...)``) with ``mask_refinement`` as given (the sparse restart by default) on
every cell of the screen and
reports, for the pathway against the other 20 targets:
- the cosine clusters of E[e * m] (``get_perturbation_clusters``) that hold the pathway genes;
- the mean cosine similarity of E[e * m] within the pathway and between pathway and others;
- the latent dimensions that at least three pathway genes switch on (q(m) > 0.5), and how many
  of the other targets switch each of them on;
and draws the masks and the similarity in cluster order, writing
``benchmarks/results/papalexi_pathway.{json,md}`` and ``docs/images/papalexi_pathway.png``.

    python benchmarks/science/papalexi_pathway.py [--mask-refinement varimax|none] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import anndata as ad
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import samsvae

sys.path.insert(0, str(Path(__file__).parent))
from real_data import RESULTS, current_commit, save_results

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared/data/papalexi2021/papalexi2021_thp1_lowmoi.h5ad"
PATHWAY = ("IFNGR1", "IFNGR2", "JAK2", "STAT1", "IRF1")
CLUSTER_COUNTS = (3, 5, 8)


def fit(refinement: str, seed: int) -> tuple[samsvae.SAMSVAE, float]:
    adata = ad.read_h5ad(DATA)
    samsvae.SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control="non-targeting")
    model = samsvae.SAMSVAE(adata)
    start = time.perf_counter()
    model.train(seed=seed, mask_refinement=refinement)
    return model, time.perf_counter() - start


def pathway_summary(model: samsvae.SAMSVAE) -> dict[str, Any]:
    similarity = model.get_perturbation_similarity(metric="cosine")
    pathway = [p for p in PATHWAY if p in similarity.index]
    others = [p for p in similarity.index if p not in pathway]
    block = similarity.loc[pathway, pathway].to_numpy()
    within = block[~np.eye(len(pathway), dtype=bool)].mean()
    between = similarity.loc[pathway, others].to_numpy().mean()
    clusters = {}
    for n in CLUSTER_COUNTS:
        labels = model.get_perturbation_clusters(n_clusters=n)["cluster"]
        pathway_labels = labels.loc[pathway]
        main = int(pathway_labels.mode().iloc[0])
        clusters[n] = {
            "pathway_clusters": {p: int(labels[p]) for p in pathway},
            "pathway_in_largest_share": int((pathway_labels == main).sum()),
            "others_in_that_cluster": sorted(labels.index[(labels == main)].difference(pathway)),
        }
    masks = model.get_mask_probabilities() > 0.5
    shared = masks.columns[masks.loc[pathway].sum(0) >= 3]
    return {
        "pathway": pathway,
        "cosine_within_pathway": float(within),
        "cosine_pathway_to_others": float(between),
        "clusters": clusters,
        "active_entries_per_target": float(masks.sum(1).mean()),
        "shared_dimensions": {
            str(k): {
                "pathway_on": sorted(masks.index[masks[k]].intersection(pathway)),
                "others_on": sorted(masks.index[masks[k]].difference(pathway)),
            }
            for k in shared
        },
    }


def figure(model: samsvae.SAMSVAE, path: Path) -> None:
    clusters = model.get_perturbation_clusters(n_clusters=5)
    order = list(clusters.index)
    fig, axes = plt.subplots(1, 2, figsize=(13, 6))
    samsvae.pl.mask_heatmap(model.get_mask_probabilities(), order=order, ax=axes[0])
    samsvae.pl.similarity_heatmap(
        model.get_perturbation_similarity(metric="cosine"), order=order, ax=axes[1]
    )
    for ax in axes:
        for label in ax.get_yticklabels():
            if label.get_text() in PATHWAY:
                label.set_color("crimson")
                label.set_fontweight("bold")
    fig.suptitle("Papalexi 2021, SAMS-VAE defaults: IFN-γ pathway knock-outs in red")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(record: dict[str, Any]) -> str:
    lines = [
        f"Papalexi 2021 IFN-γ pathway ({', '.join(PATHWAY)}) in SAMS-VAE fitted at its defaults "
        f"on all cells. Command: `{record['command']}`; commit {record['commit']}.",
        "",
        "| mask refinement | cosine within pathway | cosine pathway-others | pathway genes in "
        "one cluster (C = 3 / 5 / 8) | other targets in that cluster (C = 5) | dimensions >= 3 "
        "pathway genes share: pathway on / others on | active entries per target | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for refinement, run in record["runs"].items():
        s = run["summary"]
        counts = " / ".join(
            str(s["clusters"][str(n)]["pathway_in_largest_share"]) for n in CLUSTER_COUNTS
        )
        others = ", ".join(s["clusters"]["5"]["others_in_that_cluster"]) or "none"
        dims = "; ".join(
            f"{k}: {len(v['pathway_on'])} / {len(v['others_on'])}"
            for k, v in s["shared_dimensions"].items()
        )
        cells = [
            refinement,
            f"{s['cosine_within_pathway']:.2f}",
            f"{s['cosine_pathway_to_others']:.2f}",
            f"{counts} (of {len(s['pathway'])})",
            others,
            dims or "none",
            f"{s['active_entries_per_target']:.1f}",
            f"{run['train_seconds']:.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mask-refinement", default="varimax", choices=["varimax", "none"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model, seconds = fit(args.mask_refinement, args.seed)
    summary = json.loads(json.dumps(pathway_summary(model), default=str))
    path = RESULTS / "papalexi_pathway.json"
    record = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    record |= {
        "command": "python benchmarks/science/papalexi_pathway.py " + " ".join(sys.argv[1:]),
        "commit": current_commit()[:8],
    }
    record["runs"][args.mask_refinement] = {
        "summary": summary,
        "train_seconds": seconds,
        "settings": model.train_settings,
        "seed": args.seed,
    }
    if args.mask_refinement == "varimax":
        figure(model, ROOT / "docs/images/papalexi_pathway.png")
    save_results("papalexi_pathway", record, table(record))


if __name__ == "__main__":
    main()
