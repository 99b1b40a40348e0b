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

from out_of_core import small_model, status_mb, train


def memory(stage: str) -> None:
    """Print the current resident size and the peak since the last call, then reset the peak."""
    rss, peak = status_mb("VmRSS"), status_mb("VmHWM")
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
    model = small_model(adata)
    memory("model built")
    train(model, max_steps=30)
    memory("30 training steps")


if __name__ == "__main__":
    main()
