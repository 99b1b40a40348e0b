"""Worker of test_distributed.py: ``torchrun --nproc_per_node=N ddp_train.py OUT [--backed H5AD]``.

Trains the tiny model data-parallel on CPU (gloo) and has rank 0 save the parameters to OUT.
"""

from __future__ import annotations

import sys

import torch
from safetensors.torch import save_file

import samsvae
from samsvae.data.streaming import read_backed

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1]))
from conftest import TINY

MODEL = {"n_latent": 4, "n_hidden": 16, "n_particles": 3, "guide": "mean_field"}
TRAIN = {"max_steps": 8, "batch_size": 50, "seed": 3, "progress_bar": False}


def train(adata: object, **options: object) -> samsvae.SAMSVAE:
    """The tiny SAMS-VAE trained with ``TRAIN`` and ``options``."""
    samsvae.SAMSVAE.setup_anndata(adata)
    model = samsvae.SAMSVAE(adata, **MODEL)
    model.train(**{**TRAIN, **options})
    return model


if __name__ == "__main__":
    out = sys.argv[1]
    backed = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--backed" else None
    adata = read_backed(backed) if backed else samsvae.datasets.simulate(**TINY, seed=0)
    model = train(adata, accelerator="cpu", devices=2, strategy="ddp")
    if torch.distributed.is_initialized():
        sys.exit("training left the process group it set up")
    if model.global_rank == 0:
        save_file({k: v.contiguous() for k, v in model.module.state_dict().items()}, out)
