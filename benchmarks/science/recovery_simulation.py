"""Mask recovery and held-out-combination ATE of SAMS-VAE on the quickstart simulation.

Runs ``samsvae.workflows.run_quickstart`` (the default ``samsvae.datasets.simulate`` screen:
50 singles, 30 two-gene combinations, K = 15, G = 100, NB counts; 25% of the combinations held
out; SAMS-VAE trained on the rest; ``evaluate_on_simulation``) with settings taken from the
command line, times it, and writes ``benchmarks/results/recovery_simulation.{json,md}``.
With ``--compare-default`` the plain ``QuickstartSettings()`` defaults are run too (same seed)
and reported beside it. Model folders and figures go to ``--run-dir`` (git-ignored by default).

    python benchmarks/science/recovery_simulation.py --threads 1 --max-epochs 150 \
        --global-lr 0.03 --n-hidden 256 --compare-default
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning
import numpy as np
import torch

import samsvae
from samsvae.workflows import QuickstartSettings, run_quickstart

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"


def run(settings: QuickstartSettings, run_dir: Path) -> dict[str, Any]:
    """``run_quickstart`` with its end-to-end wall time (simulate, train, evaluate, save)."""
    start = time.perf_counter()
    metrics = run_quickstart(run_dir, settings, progress_bar=False)
    metrics = {k: v for k, v in metrics.items() if k != "settings"}
    metrics["wall_seconds"] = time.perf_counter() - start
    return {"settings": dataclasses.asdict(settings), "metrics": metrics}


def provenance() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    return {
        "git_commit": git("rev-parse", "HEAD") or None,
        "git_src_dirty": bool(git("status", "--porcelain", "--", "src")),
        "versions": {
            "samsvae": samsvae.__version__,
            "torch": torch.__version__,
            "lightning": lightning.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "torch_threads": torch.get_num_threads(),
        },
    }


# (label, metric key, additive-baseline key)
ROWS = (
    (
        "ATE Pearson r, held-out combos, all genes",
        "heldout_combo_ate_pearson_r",
        "heldout_combo_additive_baseline_ate_pearson_r",
    ),
    (
        "ATE Pearson r, held-out combos, top-20 genes",
        "heldout_combo_ate_pearson_r_top20",
        "heldout_combo_additive_baseline_ate_pearson_r_top20",
    ),
    (
        "ATE R², held-out combos, all genes",
        "heldout_combo_ate_r2",
        "heldout_combo_additive_baseline_ate_r2",
    ),
    (
        "ATE R², held-out combos, top-20 genes",
        "heldout_combo_ate_r2_top20",
        "heldout_combo_additive_baseline_ate_r2_top20",
    ),
    ("mask precision (q(m) > 0.5)", "mask_precision", None),
    ("mask recall", "mask_recall", None),
    ("mask F1", "mask_f1", None),
    ("active mask entries, estimated / true", "mask_active", None),
    ("mask AUROC of q(m)", "mask_auroc", None),
    ("held-out IWELBO per cell (100 particles)", "heldout_iwelbo", None),
    ("best-validation epoch", "best_epoch", None),
    ("wall time of run_quickstart, s (simulate + train + evaluate)", "wall_seconds", None),
)


def _cell(metrics: dict[str, Any], key: str | None) -> str:
    if key is None:
        return ""
    if key == "mask_active":
        return f"{metrics['mask_active_estimated']} / {metrics['mask_active_true']}"
    value = metrics.get(key)
    if isinstance(value, float):
        return f"{value:.1f}" if key == "wall_seconds" else f"{value:.3f}"
    return "" if value is None else str(value)


def markdown(record: dict[str, Any]) -> str:
    runs = record["runs"]
    names = list(runs)
    lines = [
        "# SAMS-VAE on the quickstart simulation",
        "",
        "`samsvae.workflows.run_quickstart`: default `samsvae.datasets.simulate` screen (50 "
        "singles, 30 two-gene combinations, K = 15, G = 100, NB counts), 25% of the combinations "
        "held out (seeded), SAMS-VAE trained on the rest. Mask metrics: Hungarian matching of "
        "latent dimensions, rows aligned to the simulation by perturbation name. The additive "
        "baseline predicts a combination's effect as the sum of its singles' observed effects.",
        "",
        f"Command: `{record['command']}`",
        "",
        "| metric | "
        + " | ".join(f"SAMS-VAE ({name})" for name in names)
        + " | additive baseline |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    first = runs[names[0]]["metrics"]
    for label, key, baseline in ROWS:
        cells = [_cell(runs[name]["metrics"], key) for name in names]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {_cell(first, baseline)} |")
    lines.append("")
    for name in names:
        lines.append(f"Settings ({name}): `{json.dumps(runs[name]['settings'])}`")
        lines.append("")
    lines.append(
        f"Seed {record['seed']}; git {record['git_commit']} (src dirty: "
        f"{record['git_src_dirty']}); versions `{json.dumps(record['versions'])}`."
    )
    return "\n".join(lines) + "\n"


def _optional_float(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    d = QuickstartSettings()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-epochs", type=int, default=d.max_epochs)
    p.add_argument("--guide", choices=("mean_field", "correlated"), default=d.guide)
    p.add_argument("--mask-prior", type=float, default=d.mask_prior)
    p.add_argument("--n-hidden", type=int, default=d.n_hidden)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument(
        "--global-lr",
        type=_optional_float,
        default=d.global_lr,
        help="Adam lr of the guide's global parameters; 'none' = the same as --lr.",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help="Seed of the simulation, held-out split, training and evaluation.",
    )
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument(
        "--compare-default",
        action="store_true",
        help="Also run the QuickstartSettings defaults (same seed).",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=RESULTS / "recovery_simulation.json",
        help="JSON path; the markdown table is written next to it (.md).",
    )
    p.add_argument(
        "--run-dir",
        type=Path,
        default=RESULTS / "tmp" / "recovery_simulation",
        help="Where run_quickstart writes models and figures.",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    settings = dataclasses.replace(
        QuickstartSettings(),
        max_epochs=args.max_epochs,
        guide=args.guide,
        mask_prior=args.mask_prior,
        n_hidden=args.n_hidden,
        lr=args.lr,
        global_lr=args.global_lr,
        seed=args.seed,
    )
    code = provenance()  # before training: the code that runs
    runs = {"this configuration": run(settings, args.run_dir / "configured")}
    if args.compare_default:
        default = dataclasses.replace(QuickstartSettings(), seed=args.seed)
        runs["quickstart defaults"] = run(default, args.run_dir / "default")
    argv0 = Path(sys.argv[0]).resolve()
    script = argv0.relative_to(ROOT) if argv0.is_relative_to(ROOT) else argv0
    record = {
        "command": "python " + shlex.join([script.as_posix(), *sys.argv[1:]]),
        "seed": args.seed,
        "runs": runs,
        **code,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    args.output.with_suffix(".md").write_text(markdown(record))
    print(markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
