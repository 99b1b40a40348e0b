"""Worker of test_distributed.py: ``torchrun --nproc_per_node=N ddp_train.py OUT [--backed H5AD]``.

Trains the tiny model data-parallel on CPU (gloo) and has rank 0 save the parameters to OUT;
with ``--sparse-restart``, see :func:`train_with_the_sparse_restart`.
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


def train_with_the_sparse_restart(out: str) -> None:
    """Nine epochs with the sparse mask restart; every rank saves its mask logits to
    ``OUT.rank{r}``. The sd rule of the pruning is off: on the tiny data it would switch every
    entry off, leaving the held-out test nothing to decide."""
    from samsvae.inference import mask_refinement

    mask_refinement.PRUNE_BELOW_SDS = 0.0
    adata = samsvae.datasets.simulate(**TINY, seed=0)
    options = {"max_steps": None, "max_epochs": 9, "mask_refinement": "varimax"}
    model = train(adata, accelerator="cpu", devices=2, strategy="ddp", **options)
    logits = model.module.guide.mask_logits.detach().contiguous()
    save_file({"mask_logits": logits}, f"{out}.rank{model.global_rank}")


if __name__ == "__main__":
    out = sys.argv[1]
    if sys.argv[2:] == ["--sparse-restart"]:
        train_with_the_sparse_restart(out)
        sys.exit()
    backed = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--backed" else None
    adata = read_backed(backed) if backed else samsvae.datasets.simulate(**TINY, seed=0)
    model = train(adata, accelerator="cpu", devices=2, strategy="ddp")
    if torch.distributed.is_initialized():
        sys.exit("training left the process group it set up")
    if model.global_rank == 0:
        save_file({k: v.contiguous() for k, v in model.module.state_dict().items()}, out)
