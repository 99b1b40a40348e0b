"""Peak memory of one out-of-core training epoch at 250k and 1M cells (not a timed test).

    python benchmarks/out_of_core.py --cells 250000 1000000 --dir /tmp/samsvae-ooc

Writes a sparse synthetic h5ad per size (2,000 genes, 40 counts per cell, 200 perturbations;
skipped if present), then in a fresh subprocess per size opens it backed, trains a small
SAMS-VAE (n_latent=10, n_hidden=32, one particle, mean-field guide, batch 1024) for one epoch
and reads the child's resident memory before training and its peak (VmHWM). The sizes are
measured in turn ``--repeats`` times (default 3): one run's peak moves by about 15 MB with the
heap's fragmentation, so the growth is taken between the sizes' median peaks, and the spread is
recorded beside it. Results go to ``benchmarks/results/out_of_core.json`` and ``.md``.

One epoch of more cells is also more training steps, and with the default settings the C heap
under torch keeps growing slowly with the steps (by 13-17 MB from 232 to 928 steps, in memory as
well as out of core: the heap's fragmentation around the large temporaries training keeps).
To tell the two apart, the smallest size is also trained for as many epochs as give the largest
size's number of steps (4 for 250k against 1M; ``--no-equal-steps`` skips it).

``--low-memory`` trains with ``cpu_allocator="compact"`` (glibc's static mmap threshold: large
temporaries returned when freed, no heap growth over the steps; slower) and writes
``out_of_core_low_memory.json`` and ``.md`` instead.
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


def small_model(adata: Any) -> Any:
    """The benchmark's SAMS-VAE on ``adata`` (already set up with ``setup_anndata``)."""
    import samsvae

    return samsvae.SAMSVAE(adata, n_latent=10, n_hidden=32, n_particles=1, guide="mean_field")


def train(model: Any, low_memory: bool = False, **stop: int) -> None:
    """Train with the benchmark's batch and split; ``stop``: ``max_epochs`` or ``max_steps``."""
    options = {"batch_size": 1024, "train_size": 0.95, "progress_bar": False}
    # The allocator settings these figures were measured with ("reuse" was training's default).
    model.train(**options, cpu_allocator="compact" if low_memory else "reuse", **stop)


def open_and_build(path: str) -> tuple[Any, Any]:
    """Open ``path`` backed, set it up and build the benchmark's model; (adata, model)."""
    import samsvae
    from samsvae.data.streaming import read_backed

    adata = read_backed(path)
    samsvae.SAMSVAE.setup_anndata(adata)
    return adata, small_model(adata)


def open_and_train(path: str) -> tuple[Any, Any]:
    """Open ``path`` backed and train the benchmark's model for one epoch; (adata, model)."""
    adata, model = open_and_build(path)
    train(model, max_epochs=1)
    return adata, model


def train_out_of_core(path: str, epochs: int, low_memory: bool) -> dict[str, float]:
    """Run in the child: train out of core; seconds, RSS before training and peak RSS in MB."""
    start = time.perf_counter()
    adata, model = open_and_build(path)
    before_training = status_mb("VmRSS")
    train(model, low_memory, max_epochs=epochs)
    seconds = time.perf_counter() - start
    return {
        "n_cells": adata.n_obs,
        "epochs": epochs,
        "steps": int(model.history["step"].iloc[-1]),
        "seconds": round(seconds, 1),
        "rss_before_training_mb": round(before_training, 1),
        "peak_rss_mb": round(status_mb("VmHWM"), 1),
    }


def status_mb(key: str) -> float:
    """A size from /proc/self/status (``VmRSS``, ``VmHWM``: the peak), in MB."""
    lines = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in lines if line.startswith(key)) / 1024


def measure(path: Path, epochs: int = 1, low_memory: bool = False) -> dict[str, float]:
    """Train on ``path`` in a fresh child process (peak RSS is per process)."""
    options = ["--epochs", str(epochs), *(["--low-memory"] if low_memory else [])]
    child = run_child(__file__, path, *options)
    return {**child, "file_mb": path.stat().st_size >> 20}


def run_child(script: str, path: str | Path, *options: str) -> Any:
    """The JSON that ``python script --child path [options]`` prints on its last line."""
    child = [sys.executable, script, "--child", str(path), *options]
    output = subprocess.run(child, check=True, capture_output=True, text=True).stdout
    return json.loads(output.splitlines()[-1])


def main() -> None:
    """Write the files, measure each size in subprocesses, write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, nargs="+", default=[250_000, 1_000_000])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/samsvae-ooc"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-equal-steps", dest="equal_steps", action="store_false")
    parser.add_argument("--low-memory", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(train_out_of_core(args.child, args.epochs, args.low_memory)))
        return
    args.dir.mkdir(parents=True, exist_ok=True)
    paths = [args.dir / f"synthetic_{n_cells}.h5ad" for n_cells in args.cells]
    for n_cells, path in zip(args.cells, paths, strict=True):
        if not path.exists():
            write_h5ad(path, n_cells)
    same_steps_epochs = round(args.cells[-1] / args.cells[0])  # the largest size's steps
    plan = [(path, 1) for path in paths]
    if args.equal_steps:
        plan.append((paths[0], same_steps_epochs))
    runs = []
    for repeat in range(args.repeats):  # sizes in turn, so a busy spell hits every size
        for path, epochs in plan:
            runs.append({**measure(path, epochs, args.low_memory), "repeat": repeat})
            print(runs[-1], flush=True)
    configurations = [(n, 1) for n in args.cells]
    equal_steps = [(args.cells[0], same_steps_epochs)] if args.equal_steps else []
    name = "out_of_core_low_memory" if args.low_memory else "out_of_core"
    write_results(runs, configurations, equal_steps, args.repeats, name)


def write_results(
    runs: list[dict],
    configurations: list[tuple[int, int]],
    equal_steps: list[tuple[int, int]],
    repeats: int,
    name: str,
) -> None:
    """``{name}.json`` (every run, medians, growth) and ``{name}.md`` (the table).

    ``configurations``: (cells, epochs) of the one-epoch runs; ``equal_steps``: the smallest
    size's run with the largest size's steps, if made.
    """
    sizes = [
        summarise([r for r in runs if (r["n_cells"], r["epochs"]) == key])
        for key in configurations + equal_steps
    ]
    smallest, largest = sizes[0], sizes[len(configurations) - 1]
    growth = largest["peak_rss_mb"] / smallest["peak_rss_mb"] - 1
    result = {"runs": runs, "sizes": sizes, "peak_rss_growth": round(growth, 4), "genes": N_GENES}
    lines = [
        "| cells | epochs (steps) | file (MB) | time incl. setup (s, median) "
        "| RSS before training (MB, median) | peak RSS (MB, median) | peak RSS range (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {s['n_cells']:,} | {s['epochs']} ({s['steps']}) | {s['file_mb']} | {s['seconds']} "
        f"| {s['rss_before_training_mb']} | {s['peak_rss_mb']} "
        f"| {s['peak_rss_min_mb']}-{s['peak_rss_max_mb']} |"
        for s in sizes
    ]
    lines.append(
        f"\nPeak RSS growth over one epoch from {smallest['n_cells']:,} to "
        f"{largest['n_cells']:,} cells (medians of {repeats} runs): {growth:.1%}."
    )
    if equal_steps:
        same_steps = sizes[-1]
        by_cells = largest["peak_rss_mb"] / same_steps["peak_rss_mb"] - 1
        by_steps = same_steps["peak_rss_mb"] / smallest["peak_rss_mb"] - 1
        result["growth_at_equal_steps"] = round(by_cells, 4)
        result["growth_by_steps"] = round(by_steps, 4)
        lines.append(
            f"At equal steps ({same_steps['epochs']} epochs of the smaller size): "
            f"{by_cells:.1%}; the smaller size's own growth from 1 to "
            f"{same_steps['epochs']} epochs: {by_steps:.1%}."
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")


def summarise(runs: list[dict]) -> dict[str, float]:
    """Medians of one configuration's runs (seconds, RSS before training, peak), peak range."""
    peaks = [r["peak_rss_mb"] for r in runs]
    return {
        "n_cells": runs[0]["n_cells"],
        "epochs": runs[0]["epochs"],
        "steps": runs[0]["steps"],
        "file_mb": runs[0]["file_mb"],
        "seconds": float(np.median([r["seconds"] for r in runs])),
        "rss_before_training_mb": float(np.median([r["rss_before_training_mb"] for r in runs])),
        "peak_rss_mb": float(np.median(peaks)),
        "peak_rss_min_mb": min(peaks),
        "peak_rss_max_mb": max(peaks),
    }


if __name__ == "__main__":
    main()
