"""Training and ATE throughput against the machine's own matrix-multiply peak (DESIGN.md §8).

One process, one run: measures the fp32 GEMM peak, then for each configuration and guide the
training throughput (median step) of the real data path (CSR row slicing) + plated ELBO +
backward + Adam, the analytic FLOPs per cell, and efficiency = achieved FLOP/s / GEMM peak
(best of 10 products); then the time of a full ATE
(every perturbation, 2,500 particles) at Replogle scale against one training epoch, with a
floor under it (the decoder's products at the GEMM peak plus the measured cost of every NB
count drawn), and peak memory.
Writes JSON and a markdown table.

    python benchmarks/performance.py                       # CPU, all configurations
    python benchmarks/performance.py --device cuda         # on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from samsvae.config import SAMSVAEConfig
from samsvae.data import Batch, CellDataset, DeviceBatches, make_loader
from samsvae.distributions.negative_binomial import nb_sample
from samsvae.evaluate.ate import estimate_average_treatment_effects
from samsvae.inference.objectives import minibatch_elbo
from samsvae.inference.training import reuse_large_allocations
from samsvae.models import SAMSVAEModule

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Workload:
    name: str
    n_genes: int
    n_perturbations: int
    n_latent: int
    n_hidden: int
    n_particles: int
    batch_size: int
    n_train_cells: int


WORKLOADS = {
    "replogle": Workload("replogle", 1187, 722, 100, 400, 5, 512, 75_000),
    "norman": Workload("norman", 5000, 237, 200, 400, 5, 512, 70_000),
}


def gemm_peak(device: torch.device, size: int = 4096, repeats: int = 10) -> float:
    """Best FLOP/s of a large fp32 matrix product over ``repeats`` timed runs."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    best = float("inf")
    for _ in range(repeats + 2):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def flops_per_cell(w: Workload, guide: str, perturbations_per_batch: float) -> float:
    """Analytic training FLOPs per cell: 2 forward + 4 backward per multiply-add of a weight.

    The encoder's expression layer (G x H) runs once per cell and needs no input gradient
    (4 FLOP per multiply-add); everything else runs once per particle (6 FLOP per multiply-add).
    The correlated guide's network runs once per particle and perturbation present in the batch.
    """
    g, k, h, p = w.n_genes, w.n_latent, w.n_hidden, w.n_particles
    encoder_per_particle = k * h + 2 * h * k
    decoder_per_particle = k * h + h * g
    total = 4 * g * h + 6 * p * (encoder_per_particle + decoder_per_particle)
    if guide == "correlated":
        total += 6 * p * (k * h + 2 * h * k) * perturbations_per_batch / w.batch_size
    return float(total)


def synthetic_data(
    w: Workload, n_cells: int, seed: int = 0
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Sparse NB-like counts (about 10% non-zero) and one perturbation per cell (10% controls)."""
    rng = np.random.default_rng(seed)
    counts = sp.random(
        n_cells,
        w.n_genes,
        density=0.1,
        format="csr",
        random_state=seed,
        data_rvs=lambda n: rng.poisson(3.0, n) + 1.0,
    ).astype(np.float32)
    labels = rng.integers(0, w.n_perturbations, n_cells)
    perturbed = rng.random(n_cells) > 0.1
    dosage = sp.csr_matrix(
        (
            np.ones(perturbed.sum(), dtype=np.float32),
            (np.flatnonzero(perturbed), labels[perturbed]),
        ),
        shape=(n_cells, w.n_perturbations),
    )
    return counts, dosage


def build_module(
    w: Workload, guide: str, dosage: sp.csr_matrix, device: torch.device
) -> SAMSVAEModule:
    torch.manual_seed(0)
    config = SAMSVAEConfig(
        n_latent=w.n_latent, n_hidden=w.n_hidden, n_particles=w.n_particles, guide=guide
    )  # type: ignore[arg-type]
    module = SAMSVAEModule(w.n_genes, w.n_perturbations, config)
    n_t = np.asarray((dosage != 0).sum(0)).ravel()
    module.n_cells_per_perturbation.copy_(torch.as_tensor(n_t, dtype=torch.float32))
    return module.to(device)


def training_setup(
    w: Workload, guide: str, n_cells: int, device: torch.device, *, lr: float = 1e-4
) -> tuple[SAMSVAEModule, torch.optim.Optimizer, Iterable[Batch]]:
    """The module, its Adam optimiser and shuffled batches of ``w.batch_size`` of ``n_cells``
    synthetic cells: CSR row slices on CPU, device-resident rows on a GPU (as SAMSVAE.train
    does when the data fit)."""
    counts, dosage = synthetic_data(w, n_cells)
    module = build_module(w, guide, dosage, device)
    optimiser = torch.optim.Adam(module.parameters(), lr=lr)
    dataset, rows = CellDataset(counts, dosage), np.arange(n_cells)
    if device.type == "cuda":
        return (
            module,
            optimiser,
            DeviceBatches(dataset, rows, batch_size=w.batch_size, shuffle=True, device=device),
        )
    return module, optimiser, make_loader(dataset, rows, batch_size=w.batch_size, shuffle=True)


def train_step(
    module: SAMSVAEModule, optimiser: torch.optim.Optimizer, batch: Batch, n_particles: int
) -> torch.Tensor:
    """One step of the plated ELBO: zero the gradients, backward, Adam; returns the loss."""
    optimiser.zero_grad(set_to_none=True)
    loss = minibatch_elbo(module, batch, n_particles).loss
    loss.backward()
    optimiser.step()
    return loss


def time_training(w: Workload, guide: str, device: torch.device, n_steps: int) -> dict:
    """Steps/s of loader + ELBO + backward + Adam over ``n_steps`` after 3 warm-up steps.

    Each step (its batch's loading included) is timed on its own; the throughput comes from the
    median step, which a few steps slowed by other work on a shared machine do not move. The
    mean is recorded beside it.
    """
    module, optimiser, loader = training_setup(w, guide, w.batch_size * (n_steps + 3), device)
    present, ends = [], []
    _sync(device)
    for batch in loader:
        batch = batch.to(device)
        present.append(len(batch.perturbation_index))
        train_step(module, optimiser, batch, w.n_particles)
        _sync(device)
        ends.append(time.perf_counter())
    step_seconds = np.diff(ends[2:])  # steps 4, 5, ...: after 3 warm-up steps
    seconds = float(np.median(step_seconds))
    cells_per_second = w.batch_size / seconds
    flops = flops_per_cell(w, guide, float(np.mean(present)))
    return {
        "seconds_per_step": seconds,
        "seconds_per_step_mean": float(np.mean(step_seconds)),
        "n_timed_steps": len(step_seconds),
        "cells_per_second": cells_per_second,
        "flops_per_cell": flops,
        "achieved_flops": flops * cells_per_second,
        "epoch_seconds": w.n_train_cells / cells_per_second,
        "mean_perturbations_per_batch": float(np.mean(present)),
    }


ATE_PARTICLES_PER_CHUNK = 250  # the sampled estimator's chunk before chunks were sized by shape
#: particles of the sampled estimator actually run; its time and standard errors at the paper's
#: 2,500 are scaled from these (time linear in particles, standard errors as 1/sqrt(particles))
SAMPLED_PROBE = 250


def _ate_module(w: Workload, device: torch.device) -> SAMSVAEModule:
    _, dosage = synthetic_data(w, 1000)
    return build_module(w, "mean_field", dosage, device)


def _timed_ate(module: SAMSVAEModule, device: torch.device, **kwargs: Any) -> tuple[Any, float]:
    interventions = torch.eye(module.n_perturbations)
    _sync(device)
    start = time.perf_counter()
    estimate = estimate_average_treatment_effects(module, interventions, **kwargs)
    _sync(device)
    return estimate, time.perf_counter() - start


def time_ate(w: Workload, device: torch.device, n_samples: int) -> dict:
    """The ATE of every perturbation (one-hot dosages) at the paper's precision.

    The paper's estimator (counts drawn, a basal state per intervention) runs with
    ``SAMPLED_PROBE`` particles; its median standard error scaled to ``n_samples`` particles is
    the paper's precision. The default estimator (``n_samples="auto"``) then runs until every
    effect's standard error is at most that.
    """
    module = _ate_module(w, device)
    torch.manual_seed(0)
    sampled, sampled_seconds = _timed_ate(
        module, device, estimator="sampled", n_samples=SAMPLED_PROBE
    )
    scale = (SAMPLED_PROBE / n_samples) ** 0.5
    target = float(sampled.standard_errors.median()) * scale
    torch.manual_seed(0)
    default, seconds = _timed_ate(module, device, target_standard_error=target)
    return {
        "seconds": seconds,
        "n_samples": default.n_samples,
        "target_standard_error": target,
        "median_standard_error": float(default.standard_errors.median()),
        "max_standard_error": float(default.standard_errors.max()),
        "sampled": {
            "n_samples": n_samples,
            "seconds": sampled_seconds * n_samples / SAMPLED_PROBE,
            "median_standard_error": target,
            "max_standard_error": float(sampled.standard_errors.max()) * scale,
            "measured_with": SAMPLED_PROBE,
        },
    }


@torch.no_grad()
def nb_draw_seconds(w: Workload, device: torch.device) -> float:
    """Seconds per count of ``nb_sample`` (all threads) on one ATE chunk: the means the
    ATE's module decodes for its default chunk of particles x (control + every perturbation)."""
    module = _ate_module(w, device)
    z = torch.randn(ATE_PARTICLES_PER_CHUNK, w.n_perturbations + 1, w.n_latent, device=device)
    hidden = module.decode(z, module.draw_covariates(len(z), z))
    log_library = torch.full(z.shape[:-1], 1e4, device=device).log()
    log_mu = module.likelihood.mean(hidden, log_library).log_()
    _sync(device)
    start = time.perf_counter()
    nb_sample(log_mu, module.likelihood.log_theta)
    _sync(device)
    return (time.perf_counter() - start) / log_mu.numel()


def ate_floor(w: Workload, n_samples: int, peak: float, draw_seconds: float) -> dict:
    """A floor under the ATE's time with this sampler: the decoder's products (two layers per
    particle and intervention) at the GEMM peak plus every count at ``draw_seconds``."""
    n_rows = n_samples * (w.n_perturbations + 1)
    decoder_flops = 2 * n_rows * (w.n_latent * w.n_hidden + w.n_hidden * w.n_genes)
    n_draws = n_rows * w.n_genes
    return {
        "decoder_flops": decoder_flops,
        "decoder_seconds_at_peak": decoder_flops / peak,
        "nb_draws": n_draws,
        "nb_draw_ns": draw_seconds * 1e9,
        "nb_draw_seconds": n_draws * draw_seconds,
        "seconds": decoder_flops / peak + n_draws * draw_seconds,
    }


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--ate-samples", type=int, default=2500)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS))
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":  # training uses TF32 matmuls on GPUs; so does the peak
        torch.set_float32_matmul_precision("high")
    peak = gemm_peak(device)
    rows = []
    for name in args.workloads:
        w = WORKLOADS[name]
        for guide in ("mean_field", "correlated"):
            with reuse_large_allocations():  # as fit() does
                timing = time_training(w, guide, device, args.steps)
            rows.append(
                {
                    "workload": asdict(w),
                    "guide": guide,
                    **timing,
                    "efficiency": timing["achieved_flops"] / peak,
                }
            )
            print(
                json.dumps(
                    {
                        "workload": name,
                        "guide": guide,
                        "cells_per_second": round(timing["cells_per_second"], 1),
                        "efficiency": round(rows[-1]["efficiency"], 3),
                    }
                ),
                flush=True,
            )
    ate = None
    if "replogle" in args.workloads:
        timing = time_ate(WORKLOADS["replogle"], device, args.ate_samples)
        epoch = next(
            r["epoch_seconds"]
            for r in rows
            if r["workload"]["name"] == "replogle" and r["guide"] == "mean_field"
        )
        floor = ate_floor(
            WORKLOADS["replogle"],
            args.ate_samples,
            peak,
            nb_draw_seconds(WORKLOADS["replogle"], device),
        )
        ate = {
            **timing,
            "n_interventions": WORKLOADS["replogle"].n_perturbations,
            "epoch_seconds_mean_field": epoch,
            "ate_over_epoch": timing["seconds"] / epoch,
            "sampled_over_epoch": timing["sampled"]["seconds"] / epoch,
            "sampled_floor": {**floor, "over_epoch": floor["seconds"] / epoch},
        }
    result = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "commit": _git_commit(),
        "gemm_peak_flops": peak,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "training": rows,
        "ate": ate,
        "peak_memory_bytes": peak_memory_bytes(device),
    }
    output = args.output or RESULTS / f"performance_{device.type}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2))
    output.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    lines = [
        f"Device: {result['device']} ({result['threads']} threads), torch {result['torch']}, "
        f"commit {result['commit'][:8]}. fp32 GEMM peak "
        f"(matmul precision {result['float32_matmul_precision']}): "
        f"{result['gemm_peak_flops'] / 1e9:.1f} GFLOP/s.",
        "",
        "| workload | guide | step (ms), median / mean | cells/s | GFLOP/cell "
        "| achieved GFLOP/s | efficiency | epoch (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["training"]:
        lines.append(
            f"| {r['workload']['name']} | {r['guide']} | {r['seconds_per_step'] * 1e3:.1f} / "
            f"{r.get('seconds_per_step_mean', r['seconds_per_step']) * 1e3:.1f} | "
            f"{r['cells_per_second']:.0f} | "
            f"{r['flops_per_cell'] / 1e9:.4f} | {r['achieved_flops'] / 1e9:.1f} | "
            f"{r['efficiency']:.2f} | {r['epoch_seconds']:.1f} |"
        )
    n_steps = result["training"][0].get("n_timed_steps")
    if n_steps:
        lines += [
            "",
            f"cells/s, achieved FLOP/s and efficiency from the median of {n_steps} steps.",
        ]
    if result["ate"]:
        a = result["ate"]
        sampled = a.get("sampled")
        lines += [
            "",
            f"ATE of all {a['n_interventions']} Replogle interventions with the default "
            f"estimator (counts integrated out, n_samples='auto'): {a['n_samples']} particles, "
            f"{a['seconds']:.1f} s = {a['ate_over_epoch']:.2f} of one mean-field training "
            f"epoch ({a['epoch_seconds_mean_field']:.1f} s, measured in the same run).",
        ]
        if sampled:
            lines.append(
                f"The paper's estimator (counts drawn) at {sampled['n_samples']} particles: "
                f"median standard error {sampled['median_standard_error']:.4f} (the target the "
                f"default met for every effect: its median {a['median_standard_error']:.4f}, "
                f"largest {a['max_standard_error']:.4f}), {sampled['seconds']:.1f} s = "
                f"{a['sampled_over_epoch']:.1f} epochs (both scaled from "
                f"{sampled['measured_with']} particles)."
            )
        if "sampled_floor" in a:
            f = a["sampled_floor"]
            lines.append(
                f"Floor of the paper's estimator: the decoder's {f['decoder_flops'] / 1e12:.2f} "
                f"TFLOP at the GEMM peak ({f['decoder_seconds_at_peak']:.1f} s) + "
                f"{f['nb_draws'] / 1e9:.2f}e9 NB counts at {f['nb_draw_ns']:.1f} ns each "
                f"({f['nb_draw_seconds']:.1f} s) = "
                f"{f['seconds']:.1f} s = {f['over_epoch']:.2f} epochs."
            )
    lines += ["", f"Peak memory: {result['peak_memory_bytes'] / 2**30:.2f} GiB."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
