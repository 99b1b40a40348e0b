"""The sparse mask restart against training as published over training seeds or screens.

The task of a sweep setting (``mask_recovery_sweep.SETTINGS`` or one of its realistic
settings; the simulation, its held-out combinations and the budget fixed) trained with each
training seed (initial weights, training/validation split, minibatch order) twice: with
``mask_refinement="varimax"`` and ``"none"``. With ``--screens`` (realistic settings only) the
seeds choose the screen instead: each is ``simulate_realistic(seed=S)``, its own truth and
held-out combinations (3 of its 10, so one screen scores prediction on few), trained with
training seed S. Scores as in the sweep. Writes ``benchmarks/results/{out-name}.{json,md}``
(``mask_restart_seeds`` by default).

    python benchmarks/science/mask_restart_seeds.py --threads 2 [--setting quickstart]
    python benchmarks/science/mask_restart_seeds.py --threads 2 --setting "realistic (defaults)" \
        --screens --out-name mask_restart_screens_realistic
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

from samsvae.workflows import (
    evaluate_on_simulation,
    quickstart_model,
    simulate_task,
    train_on_task,
)

sys.path.insert(0, str(Path(__file__).parent))
from mask_recovery_sweep import REALISTIC_CELLS, SETTINGS, run_realistic
from real_data import RESULTS, current_commit, markdown_table, save_results

COLUMNS = [
    ("mask_f1", "mask F1"),
    ("mask_active_estimated", "active entries"),
    ("heldout_combo_ate_pearson_r", "held-out combo ATE r"),
    ("heldout_iwelbo", "held-out IWELBO"),
]
#: realistic screens differ in how well their truth can be found: the most the restart can find
SCREEN_COLUMNS = [
    ("mask_f1_from_true_shifts", "F1 from the true shifts"),
    *COLUMNS,
    ("shift_r2_rotation", "shifts R² by rotation"),
    ("shift_r2_linear", "by linear map"),
]


def run(
    name: str, refinement: str, train_seed: int, screen: int = 0, n_latent: int | None = None
) -> dict[str, Any]:
    if name in REALISTIC_CELLS:
        row = run_realistic(name, refinement, 1000, screen, train_seed, n_latent)
        return {key: row.get(key) for key, _ in SCREEN_COLUMNS}
    settings = dataclasses.replace(
        SETTINGS[name], mask_refinement=refinement, ate_samples=1000, iwelbo_particles=50
    )
    task = simulate_task(settings)
    model = quickstart_model(task, settings)
    train_on_task(model, settings, progress_bar=False, seed=train_seed)
    metrics = evaluate_on_simulation(model, task.adata, task.test, task.held_out, settings)
    return {key: metrics.get(key) for key, _ in COLUMNS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--setting", choices=[*SETTINGS, *REALISTIC_CELLS], default="quickstart")
    parser.add_argument("--train-seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument(
        "--screens", action="store_true", help="the seeds choose the realistic screen too"
    )
    parser.add_argument(
        "--procedures", nargs="+", choices=["varimax", "none"], default=["varimax", "none"]
    )
    parser.add_argument(
        "--n-latent", type=int, default=None, help="latent size K (realistic settings only)"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out-name", default="mask_restart_seeds")
    args = parser.parse_args()
    if (args.screens or args.n_latent) and args.setting not in REALISTIC_CELLS:
        parser.error("--screens and --n-latent need a realistic --setting")
    if args.threads:
        torch.set_num_threads(args.threads)
    path = RESULTS / f"{args.out_name}.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}
    # rows of the other procedures are kept from the file's earlier runs of the same setting and K
    same = (earlier.get("setting"), earlier.get("n_latent")) == (args.setting, args.n_latent)
    rows = earlier.get("rows", {}) if same else {}
    varied = "screen" if args.screens else "training seed"
    for seed in args.train_seeds:
        screen = seed if args.screens else 0
        for refinement in args.procedures:
            row = run(args.setting, refinement, seed, screen, args.n_latent)
            rows[f"{varied} {seed}, {refinement}"] = row
            print(rows, flush=True)
    rows = dict(sorted(rows.items(), key=lambda item: _seed_and_procedure(item[0])))
    command = "python benchmarks/science/mask_restart_seeds.py " + shlex.join(sys.argv[1:])
    fixed = (
        "screen S (its own truth and held-out combinations) trained with training seed S"
        if args.screens
        else "simulation, held-out combinations and budget fixed"
    )
    latent = "" if args.n_latent is None else f"; K = {args.n_latent}"
    caption = (
        f"The sparse mask restart (`varimax`) against training as published (`none`) over "
        f"{varied}s on the sweep's `{args.setting}` simulation ({fixed}{latent}). Rows come from "
        f"runs of this script; the last: "
        f"`{command}`, commit {current_commit()[:8]}, torch threads {torch.get_num_threads()}."
    )
    record = {"setting": args.setting, "n_latent": args.n_latent, "command": command, "rows": rows}
    columns = SCREEN_COLUMNS if args.screens else COLUMNS
    save_results(args.out_name, record, markdown_table(caption, rows, columns))


def _seed_and_procedure(label: str) -> tuple[int, bool]:
    """Sort key of a row label "training seed S, PROCEDURE" or "screen S, PROCEDURE": by seed,
    the restart first."""
    varied, procedure = label.split(", ")
    return int(varied.rsplit(" ", 1)[1]), procedure != "varimax"


if __name__ == "__main__":
    main()
