"""Peak memory and time of the out-of-core training loader alone, one epoch, no model.

    python benchmarks/streaming_loader.py --dir /tmp/samsvae-ooc

Writes sparse h5ad files of 100,000 cells x 2,000 genes with 40 and 400 non-zero counts a cell
(skipped if present; ``out_of_core.write_h5ad``), then, in a fresh child process per file and
repeat, opens each with ``read_backed``, builds the loader training uses (a 95% split, batch
1,024, blocks of 1,024 rows, 32 a window) and walks one epoch under the training allocator
settings. It records the epoch's seconds and the peak resident memory the epoch adds (the peak
is reset just before it through /proc/self/clear_refs). A window of the 400-count file holds
about 100 MB of counts. To measure another version, run it with ``PYTHONPATH=<checkout>/src``
and ``--label``. Results: ``benchmarks/results/streaming_loader.{json,md}`` (rows of other
labels are kept).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
from out_of_core import RESULTS, run_child, status_mb, write_h5ad

N_CELLS, PER_CELL = 100_000, (40, 400)


def walk_one_epoch(path: str) -> dict[str, float]:
    """Run in the child: one epoch of the training loader over ``path``."""
    import scipy.sparse as sp

    from samsvae.data.splits import train_validation_split
    from samsvae.data.streaming import CodedDosage, DiskCellDataset, StreamingBatches, read_backed
    from samsvae.inference.training import reuse_large_allocations

    adata = read_backed(path)
    dosage = CodedDosage(
        sp.identity(3, dtype=np.float32, format="csr"), np.zeros(adata.n_obs, np.uint8)
    )
    rows, _ = train_validation_split(adata.n_obs, train_size=0.95, seed=0)
    loader = StreamingBatches(
        DiskCellDataset(adata.X, dosage), rows, batch_size=1024, shuffle=True, seed=0
    )
    before = status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    start = time.perf_counter()
    with reuse_large_allocations():
        n_batches = sum(1 for _ in loader)
    return {
        "batches": n_batches,
        "seconds": round(time.perf_counter() - start, 2),
        "peak_added_mb": round(status_mb("VmHWM") - before, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/samsvae-ooc"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--label", help="the version's name in the table (default: its commit)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(walk_one_epoch(args.child)))
        return
    args.label = args.label or _commit()
    args.dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for per_cell in PER_CELL:
        path = args.dir / f"loader_{N_CELLS}_{per_cell}.h5ad"
        if not path.exists():
            write_h5ad(path, N_CELLS, per_cell=per_cell)
        runs = [run_child(__file__, path) for _ in range(args.repeats)]
        rows.append(
            {
                "label": args.label,
                "counts_per_cell": per_cell,
                "batches": runs[0]["batches"],
                "seconds": float(np.median([r["seconds"] for r in runs])),
                "peak_added_mb": float(np.median([r["peak_added_mb"] for r in runs])),
                "runs": runs,
            }
        )
        print(rows[-1], flush=True)
    _write(rows)


def _commit() -> str:
    import samsvae

    source = Path(samsvae.__file__).parent
    command = ["git", "-C", str(source), "rev-parse", "--short", "HEAD"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    return result.stdout.strip() or "unknown"


def _write(rows: list[dict]) -> None:
    """Merge ``rows`` into the results, replacing earlier rows of the same label."""
    path = RESULTS / "streaming_loader.json"
    kept = json.loads(path.read_text()) if path.exists() else []
    labels = {row["label"] for row in rows}
    table = [row for row in kept if row["label"] not in labels] + rows
    path.write_text(json.dumps(table, indent=1) + "\n")
    lines = [
        "| version | counts a cell | batches | epoch (s, median) | peak added (MB, median) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['label']} | {r['counts_per_cell']} | {r['batches']} | {r['seconds']} "
        f"| {r['peak_added_mb']} |"
        for r in table
    ]
    (RESULTS / "streaming_loader.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
