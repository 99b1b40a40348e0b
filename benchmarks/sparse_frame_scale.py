"""The cost of the sparse mask restart's frame search at screen scale.

``mask_refinement="varimax"`` runs :func:`~samsvae.inference.mask_refinement.sparse_frame` once
per training run, on the CPU, on the expected shifts (T perturbations, K latent dimensions): the
varimax rotation and the Lp rotation (20 projected descents). This times it on dense fits made
like the ones it meets: sparse shifts (each perturbation on 5% of the axes, at least one, of
size N(2, 0.5^2) and random sign) turned by a random rotation, plus noise N(0, 0.2^2). The mask
F1 of the entries it switches on (after matching the axes) says whether the frame is found.
T runs up to a genome-wide screen (about 10,000 perturbations), K up to 100.

    python benchmarks/sparse_frame_scale.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from samsvae.evaluate.metrics import mask_recovery
from samsvae.inference.mask_refinement import sparse_frame

sys.path.insert(0, str(Path(__file__).parent / "science"))
from real_data import current_commit

RESULTS = Path(__file__).resolve().parent / "results"
SHAPES = ((100, 10), (1_000, 50), (1_000, 100), (10_000, 50), (10_000, 100))


def dense_fit(n_perturbations: int, n_latent: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rotated noisy sparse shifts (T, K) and the true masks (T, K)."""
    rng = np.random.default_rng(seed)
    masks = rng.random((n_perturbations, n_latent)) < 0.05
    masks[np.arange(n_perturbations), rng.integers(n_latent, size=n_perturbations)] = True
    signs = rng.choice([-1.0, 1.0], size=masks.shape)
    shifts = masks * signs * rng.normal(2, 0.5, size=masks.shape)
    rotation = np.linalg.qr(rng.normal(size=(n_latent, n_latent)))[0]
    noise = rng.normal(0, 0.2, size=masks.shape)
    return (shifts + noise) @ rotation.T, masks


def time_frame(n_perturbations: int, n_latent: int, seed: int) -> dict[str, float | int]:
    shifts, masks = dense_fit(n_perturbations, n_latent, seed)
    start = time.perf_counter()
    frame = sparse_frame(shifts)
    seconds = time.perf_counter() - start
    return {
        "n_perturbations": n_perturbations,
        "n_latent": n_latent,
        "seconds": seconds,
        "entries_on": int(frame.switched_on.sum()),
        "entries_true": int(masks.sum()),
        "frame_f1": mask_recovery(frame.switched_on, masks)["mask_f1"],
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| perturbations T | latent K | seconds | entries on | true | F1 |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n_perturbations']:,} | {r['n_latent']} | {r['seconds']:.1f} | "
            f"{r['entries_on']:,} | {r['entries_true']:,} | {r['frame_f1']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    for n_perturbations, n_latent in SHAPES:
        rows.append(time_frame(n_perturbations, n_latent, args.seed))
        print(rows[-1], flush=True)
    record = {
        "command": f"python benchmarks/sparse_frame_scale.py --seed {args.seed}",
        "commit": current_commit(),
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sparse_frame_scale.json").write_text(json.dumps(record, indent=2))
    (RESULTS / "sparse_frame_scale.md").write_text(table(rows))
    print(table(rows))


if __name__ == "__main__":
    main()
