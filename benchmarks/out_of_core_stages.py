"""Resident memory at each stage of out-of-core setup and a few training steps (diagnostic).

Prints VmRSS / VmHWM (MB) after opening the file, setup_anndata, building the model, the
statistics pass and 30 training steps, to see which stage grows with the number of cells:

    python benchmarks/out_of_core_stages.py /tmp/samsvae-ooc/synthetic_250000.h5ad
    python benchmarks/out_of_core_stages.py /tmp/samsvae-ooc/synthetic_1000000.h5ad

(the files are written by ``benchmarks/out_of_core.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path


def memory(stage: str) -> None:
    """Print the current and peak resident size of this process."""
    status = Path("/proc/self/status").read_text().splitlines()

    def megabytes(key: str) -> float:
        return int(next(line.split()[1] for line in status if line.startswith(key))) / 1024

    print(f"{stage:<24} rss {megabytes('VmRSS'):8.1f} MB   peak {megabytes('VmHWM'):8.1f} MB")


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
