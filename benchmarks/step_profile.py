"""Where a CPU training step's time goes, and how much it moves (diagnostic; prints only).

    python benchmarks/step_profile.py                 # torch.profiler over 5 Replogle steps
    python benchmarks/step_profile.py --paired 40     # 40 steps, each followed by a 4096 GEMM
    python benchmarks/step_profile.py --data-terms    # NB data terms: non-zeros vs dense
    python benchmarks/step_profile.py --gene-layer    # gene layer product: blocks vs one call

The first form prints the median step time of 40 steps, then the time per step of the likelihood
pieces and the matrix products (``torch.profiler``, CPU total per step over 5 further steps on
the same batches). The second times each step and a 4096 x 4096 product after it, to tell a slow
machine (both slow) from a slow step (the product holds its rate). The third times the NB data
terms with their gradient on 512 x 1187 counts of several densities, evaluated at the non-zero
counts and densely (``negative_binomial_fast.SPARSE_DENSITY`` chooses between them). The fourth
times the forward product of a decoder's gene layer (P x B rows, H inputs, several gene counts)
in row blocks and in one call, and prints which one ``samsvae.nn.networks.wide_linear`` chose.

To compare two versions, run it from a checkout of each in turn (``PYTHONPATH=<checkout>/src``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from performance import WORKLOADS, flops_per_cell, train_step, training_setup

from samsvae.data import Batch
from samsvae.distributions import negative_binomial, negative_binomial_fast
from samsvae.inference.training import reuse_large_allocations
from samsvae.nn import networks

EVENTS = (
    "_NBMeanTermsFromLogits",
    "_NBMeanTermsFromLogitsBackward",
    "_NBDataTerms",
    "_NBDataTermsBackward",
    "aten::lgamma",
    "LgammaBackward0",
    "aten::digamma",
    "aten::addmm",
    "aten::mm",
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workload", default="replogle", choices=list(WORKLOADS))
    parser.add_argument("--guide", default="mean_field")
    parser.add_argument("--paired", type=int, default=0, metavar="N_STEPS")
    parser.add_argument("--data-terms", action="store_true")
    parser.add_argument("--gene-layer", action="store_true")
    args = parser.parse_args()
    w = WORKLOADS[args.workload]
    if args.data_terms:
        data_terms_by_density()
        return
    if args.gene_layer:
        gene_layer(w.n_particles * w.batch_size, w.n_hidden)
        return
    n_batches = 3 + max(args.paired, 45)
    cpu = torch.device("cpu")
    module, optimiser, loader = training_setup(w, args.guide, w.batch_size * n_batches, cpu)
    batches = list(loader)

    def step(batch: Batch) -> float:
        start = time.perf_counter()
        train_step(module, optimiser, batch, w.n_particles)
        return time.perf_counter() - start

    with reuse_large_allocations():  # as fit() does
        for batch in batches[:3]:
            step(batch)
        if args.paired:
            paired(
                batches[3 : 3 + args.paired], step, flops_per_cell(w, args.guide, 0) * w.batch_size
            )
        else:
            profiled(batches[3:], step)


def paired(batches: list[Batch], step: Callable[[Batch], float], step_flops: float) -> None:
    a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
    steps, gemms = [], []
    for batch in batches:
        steps.append(step(batch))
        start = time.perf_counter()
        a @ b
        gemms.append(2 * 4096**3 / (time.perf_counter() - start))
    steps_ms, gemm_gflops = np.array(steps) * 1e3, np.array(gemms) / 1e9
    print("step (ms):        ", " ".join(f"{s:.0f}" for s in steps_ms))
    print("GEMM (GFLOP/s):   ", " ".join(f"{g:.0f}" for g in gemm_gflops))
    print(
        f"step {steps_ms.min():.0f}-{steps_ms.max():.0f} ms (median {np.median(steps_ms):.1f}); "
        f"GEMM {gemm_gflops.min():.0f}-{gemm_gflops.max():.0f} GFLOP/s; "
        f"correlation of step time and GEMM time "
        f"{np.corrcoef(steps_ms, 1 / gemm_gflops)[0, 1]:.2f}; step FLOPs without the "
        f"correlated guide's network {step_flops / 1e9:.1f} GFLOP"
    )


def profiled(batches: list[Batch], step: Callable[[Batch], float]) -> None:
    from torch.profiler import ProfilerActivity, profile

    seconds = [step(batch) for batch in batches[:40]]
    print(f"median step over {len(seconds)} steps: {np.median(seconds) * 1e3:.1f} ms")
    n_profiled = len(batches[40:45])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches[40:45]:
            step(batch)
    for event in prof.key_averages():
        if event.key in EVENTS:
            print(f"{event.key:34s} {event.cpu_time_total / n_profiled / 1e3:7.2f} ms per step")


def data_terms_by_density(n_repeats: int = 20) -> None:
    generator = torch.Generator().manual_seed(0)
    weights = torch.randn(512, generator=generator)
    log_theta = torch.randn(1187, generator=generator).requires_grad_()
    threshold = negative_binomial_fast.SPARSE_DENSITY
    for density in (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0):
        rates = torch.rand(512, 1187, generator=generator) * 20 + 0.5
        keep = torch.rand(512, 1187, generator=generator) < density
        counts = torch.poisson(rates, generator=generator) * keep

        def run() -> None:
            terms = negative_binomial.nb_data_terms(counts, log_theta)  # noqa: B023
            (terms.sum(-1) * weights).sum().backward()

        times = {}
        for name, share in (("non-zeros", 1.0), ("dense", -1.0)):
            negative_binomial_fast.SPARSE_DENSITY = share  # every batch down one path
            for _ in range(3):
                run()
            start = time.perf_counter()
            for _ in range(n_repeats):
                run()
            times[name] = (time.perf_counter() - start) / n_repeats * 1e3
        print(f"density {density:.1f}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in times.items()))
    negative_binomial_fast.SPARSE_DENSITY = threshold


def gene_layer(n_rows: int, n_hidden: int) -> None:
    for n_genes in (299, 366, 1187, 2000, 5000):
        compare_gene_layer(torch.nn.Linear(n_hidden, n_genes), torch.randn(n_rows, n_hidden))


def compare_gene_layer(layer: torch.nn.Linear, x: torch.Tensor, n_repeats: int = 20) -> None:
    runs = {
        "row blocks": lambda: networks._RowBlockedLinear.apply(x, layer.weight, layer.bias),
        "one call": lambda: layer(x),
    }
    times: dict[str, list[float]] = {}
    with torch.no_grad():
        for _ in range(2):  # alternate, to share the machine's ups and downs
            for name, run in runs.items():
                run()
                start = time.perf_counter()
                for _ in range(n_repeats):
                    run()
                times.setdefault(name, []).append((time.perf_counter() - start) / n_repeats)
        same = torch.equal(runs["row blocks"](), runs["one call"]())
    blocks, one = min(times["row blocks"]), min(times["one call"])
    print(
        f"({len(x)} x {layer.in_features}) @ ({layer.in_features} x {layer.out_features}): "
        f"row blocks {blocks * 1e3:.1f} ms, one call {one * 1e3:.1f} ms, "
        f"ratio {blocks / one:.2f}; same bits: {same}; "
        f"wide_linear uses blocks: {networks.blocks_win(layer.weight)}"
    )


if __name__ == "__main__":
    main()
