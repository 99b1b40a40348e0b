"""Smoke check of the CUDA path: train SAMS-VAE on the default simulation on a GPU and evaluate.

Run on a machine with a GPU:  python benchmarks/gpu_smoke.py --accelerator gpu
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import samsvae


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accelerator", default="gpu")
    parser.add_argument("--max-epochs", type=int, default=5)
    args = parser.parse_args()
    adata = samsvae.datasets.simulate(seed=0)
    samsvae.SAMSVAE.setup_anndata(adata)
    model = samsvae.SAMSVAE(adata, n_latent=15, n_hidden=128, guide="correlated")
    start = time.perf_counter()
    model.train(
        max_epochs=args.max_epochs, accelerator=args.accelerator, devices=1, progress_bar=False
    )
    seconds = time.perf_counter() - start
    ate = model.average_treatment_effects(["P0+P1"], n_samples=500)
    generated = model.predict(["P0", "P2+P3"], n_samples=10)
    iwelbo = model.iwelbo(adata[:1000].copy(), n_particles=20)
    latent = model.get_latent_representation(adata[:1000].copy())
    print(
        json.dumps(
            {
                "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                "torch": torch.__version__,
                "train_seconds": round(seconds, 2),
                "final_val_loss": float(model.history["val_loss"].iloc[-1]),
                "ate_finite": bool(torch.isfinite(torch.as_tensor(ate.X)).all()),
                "module_device": str(next(model.module.parameters()).device),
                "generated_shape": list(generated.shape),
                "iwelbo": iwelbo,
                "latent_shape": list(latent.shape),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
