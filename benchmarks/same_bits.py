"""Check that a change to the numerics' implementation leaves trained parameters equal to the bit.

    PYTHONPATH=<old checkout>/src python benchmarks/same_bits.py /tmp/before.safetensors
    python benchmarks/same_bits.py /tmp/after.safetensors --compare /tmp/before.safetensors

Trains, with ``--threads`` intra-op threads: SAMS-VAE with each guide for 3 epochs on the
quickstart simulation (``samsvae.datasets.simulate(seed=0)``), and the Replogle- and Norman-shaped
models of ``performance.py`` with each guide for 3 steps of 512 cells and one of 137. Writes every
parameter and loss to the file; with ``--compare``, prints which tensors differ from another run's
file in any bit (exit status 1 if any do).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from performance import WORKLOADS, train_step, training_setup
from safetensors.torch import load_file, save_file

import samsvae
from samsvae.datasets import simulate
from samsvae.inference.training import reuse_large_allocations

GUIDES = ("mean_field", "correlated")


def simulation_runs() -> dict[str, torch.Tensor]:
    tensors = {}
    for guide in GUIDES:
        adata = simulate(seed=0)
        samsvae.SAMSVAE.setup_anndata(adata)
        model = samsvae.SAMSVAE(adata, n_latent=15, guide=guide)
        model.train(max_epochs=3, batch_size=128, seed=0, progress_bar=False)
        for name, value in model.module.state_dict().items():
            tensors[f"simulation.{guide}.{name}"] = value
        iwelbo = model.iwelbo(adata[:300], n_particles=20, progress_bar=False)
        tensors[f"simulation.{guide}.iwelbo"] = torch.tensor(float(iwelbo))
    return tensors


def shaped_steps() -> dict[str, torch.Tensor]:
    tensors = {}
    for name, w in WORKLOADS.items():
        for guide in GUIDES:
            cpu = torch.device("cpu")
            module, optimiser, loader = training_setup(w, guide, 512 * 3 + 137, cpu, lr=1e-3)
            torch.manual_seed(1)
            with reuse_large_allocations():
                for step, batch in enumerate(loader):
                    loss = train_step(module, optimiser, batch, w.n_particles)
                    tensors[f"{name}.{guide}.loss{step}"] = loss.detach()
            for key, value in module.state_dict().items():
                tensors[f"{name}.{guide}.{key}"] = value
    return tensors


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("output", type=Path)
    parser.add_argument("--compare", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tensors = {**simulation_runs(), **shaped_steps()}
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, args.output)
    print(f"{len(tensors)} tensors written to {args.output} ({samsvae.__file__})")
    if args.compare:
        other = load_file(args.compare)
        differing = sorted(
            k for k in tensors if k not in other or not torch.equal(tensors[k], other[k])
        )
        print(
            f"{len(differing)} of {len(tensors)} tensors differ from {args.compare}: {differing}"
        )
        sys.exit(1 if differing else 0)


if __name__ == "__main__":
    main()
