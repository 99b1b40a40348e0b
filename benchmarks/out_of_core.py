"""Peak memory of one out-of-core training epoch at 250k and 1M cells (not a timed test).

    python benchmarks/out_of_core.py --cells 250000 1000000 --dir /tmp/samsvae-ooc

Writes a sparse synthetic h5ad per size (2,000 genes, 40 counts per cell, 200 perturbations;
skipped if present), then in a fresh subprocess per size opens it backed, trains a small
SAMS-VAE (n_latent=10, n_hidden=32, one particle, mean-field guide, batch 1024) for one epoch
and reads the child's peak resident memory (VmHWM). The sizes are measured in turn
``--repeats`` times (default 3): one run's peak moves by about 15 MB with the heap's
fragmentation, so the growth is taken between the sizes' median peaks, and the spread is
recorded beside it. Results go to ``benchmarks/results/out_of_core.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

N_GENES, N_PER_CELL, N_PERTURBATIONS = 2000, 40, 200
RESULTS = Path(__file__).parent / "results"


def write_h5ad(path: Path, n_cells: int, seed: int = 0, per_cell: int = N_PER_CELL) -> None:
    """A CSR counts file: per cell one gene from each of ``per_cell`` equal bins of the 2,000
    genes (40 bins of 50 by default), counts 1-8."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    width = N_GENES // per_cell
    columns = np.arange(per_cell) * width + rng.integers(0, width, (n_cells, per_cell))
    counts = rng.integers(1, 9, n_cells * per_cell).astype(np.float32)
    indptr = np.arange(0, n_cells * per_cell + 1, per_cell, dtype=np.int64)
    x = sp.csr_matrix((counts, columns.ravel().astype(np.int32), indptr), (n_cells, N_GENES))
    names = np.array(["control", *(f"P{j}" for j in range(N_PERTURBATIONS))])
    labels = pd.Categorical.from_codes(rng.integers(0, len(names), n_cells), names)
    obs = pd.DataFrame({"perturbation": labels}, index=pd.RangeIndex(n_cells).astype(str))
    var = pd.DataFrame(index=[f"gene{g}" for g in range(N_GENES)])
    ad.AnnData(X=x, obs=obs, var=var).write_h5ad(path)


def open_and_train(path: str) -> tuple[Any, Any]:
    """Open ``path`` backed and train the benchmark's model for one epoch; (adata, model)."""
    import samsvae
    from samsvae.data.streaming import read_backed

    adata = read_backed(path)
    samsvae.SAMSVAE.setup_anndata(adata)
    model = samsvae.SAMSVAE(adata, n_latent=10, n_hidden=32, n_particles=1, guide="mean_field")
    model.train(max_epochs=1, batch_size=1024, train_size=0.95, progress_bar=False)
    return adata, model


def train_one_epoch(path: str) -> dict[str, float]:
    """Run in the child: one epoch out of core; returns seconds and peak RSS in MB."""
    start = time.perf_counter()
    adata, _ = open_and_train(path)
    seconds = time.perf_counter() - start
    return {
        "n_cells": adata.n_obs,
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(status_mb("VmHWM"), 1),
    }


def status_mb(key: str) -> float:
    """A size from /proc/self/status (``VmRSS``, ``VmHWM``: the peak), in MB."""
    lines = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in lines if line.startswith(key)) / 1024


def measure(path: Path) -> dict[str, float]:
    """One epoch on ``path`` in a fresh child process (peak RSS is per process)."""
    return {**run_child(__file__, path), "file_mb": path.stat().st_size >> 20}


def run_child(script: str, path: str | Path) -> Any:
    """The JSON that ``python script --child path`` prints on its last line."""
    child = [sys.executable, script, "--child", str(path)]
    output = subprocess.run(child, check=True, capture_output=True, text=True).stdout
    return json.loads(output.splitlines()[-1])


def main() -> None:
    """Write the files, measure each size in subprocesses, write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, nargs="+", default=[250_000, 1_000_000])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/samsvae-ooc"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(train_one_epoch(args.child)))
        return
    args.dir.mkdir(parents=True, exist_ok=True)
    paths = [args.dir / f"synthetic_{n_cells}.h5ad" for n_cells in args.cells]
    for n_cells, path in zip(args.cells, paths, strict=True):
        if not path.exists():
            write_h5ad(path, n_cells)
    runs = []
    for repeat in range(args.repeats):  # sizes in turn, so a busy spell hits every size
        for path in paths:
            runs.append({**measure(path), "repeat": repeat})
            print(runs[-1], flush=True)
    sizes = [summarise([r for r in runs if r["n_cells"] == n]) for n in args.cells]
    growth = sizes[-1]["peak_rss_mb"] / sizes[0]["peak_rss_mb"] - 1
    result = {"runs": runs, "sizes": sizes, "peak_rss_growth": round(growth, 4), "genes": N_GENES}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "out_of_core.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        "| cells | file (MB) | epoch incl. setup (s, median) | peak RSS (MB, median) "
        "| peak RSS range (MB) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {s['n_cells']:,} | {s['file_mb']} | {s['seconds']} | {s['peak_rss_mb']} "
        f"| {s['peak_rss_min_mb']}-{s['peak_rss_max_mb']} |"
        for s in sizes
    ]
    lines.append(
        f"\nPeak RSS growth from the smallest to the largest (medians of {args.repeats} runs): "
        f"{growth:.1%}."
    )
    (RESULTS / "out_of_core.md").write_text("\n".join(lines) + "\n")


def summarise(runs: list[dict]) -> dict[str, float]:
    """Median seconds and peak of one size's runs, with the peak's range."""
    peaks = [r["peak_rss_mb"] for r in runs]
    return {
        "n_cells": runs[0]["n_cells"],
        "file_mb": runs[0]["file_mb"],
        "seconds": float(np.median([r["seconds"] for r in runs])),
        "peak_rss_mb": float(np.median(peaks)),
        "peak_rss_min_mb": min(peaks),
        "peak_rss_max_mb": max(peaks),
    }


if __name__ == "__main__":
    main()
