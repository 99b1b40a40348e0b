"""Resident memory at each stage of out-of-core setup and a few training steps (diagnostic).

Prints VmRSS after opening the file, setup_anndata, building the model (one checking pass over
the file) and 30 training steps, with the peak within each stage (the peak is reset between
stages through ``/proc/self/clear_refs``), to see which stage grows with the number of cells:

    python benchmarks/out_of_core_stages.py /tmp/samsvae-ooc/synthetic_250000.h5ad
    python benchmarks/out_of_core_stages.py /tmp/samsvae-ooc/synthetic_1000000.h5ad

(the files are written by ``benchmarks/out_of_core.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path


def memory(stage: str) -> None:
    """Print the current resident size and the peak since the last call, then reset the peak."""
    status = Path("/proc/self/status").read_text().splitlines()

    def megabytes(key: str) -> float:
        return int(next(line.split()[1] for line in status if line.startswith(key))) / 1024

    rss, peak = megabytes("VmRSS"), megabytes("VmHWM")
    print(f"{stage:<24} rss {rss:8.1f} MB   stage peak {peak:8.1f} MB")
    Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak (VmHWM) to the current RSS


def main() -> None:
    import samsvae
    from samsvae.data.streaming import read_backed

    memory("imports")
    adata = read_backed(sys.argv[1])
    memory("file opened")
    samsvae.SAMSVAE.setup_anndata(adata)
    memory("setup_anndata")
    model = samsvae.SAMSVAE(adata, n_latent=10, n_hidden=32, n_particles=1, guide="mean_field")
    memory("model built")
    model.train(max_steps=30, batch_size=1024, train_size=0.95, progress_bar=False)
    memory("30 training steps")


if __name__ == "__main__":
    main()
