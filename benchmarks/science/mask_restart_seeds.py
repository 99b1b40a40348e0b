"""The sparse mask restart against training as published over training seeds, one simulation.

The task of a sweep setting (``mask_recovery_sweep.SETTINGS`` or one of its realistic
settings; the simulation, its held-out combinations and the budget fixed) trained with each
training seed (initial weights, training/validation split, minibatch order) twice: with
``mask_refinement="varimax"`` and ``"none"``. Scores as in the sweep. Writes
``benchmarks/results/{out-name}.{json,md}`` (``mask_restart_seeds`` by default).

    python benchmarks/science/mask_restart_seeds.py --threads 2 [--setting quickstart]
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


def run(name: str, refinement: str, train_seed: int) -> dict[str, Any]:
    if name in REALISTIC_CELLS:
        row = run_realistic(name, refinement, ate_samples=1000, train_seed=train_seed)
        return {key: row.get(key) for key, _ in COLUMNS}
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
        "--procedures", nargs="+", choices=["varimax", "none"], default=["varimax", "none"]
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out-name", default="mask_restart_seeds")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    path = RESULTS / f"{args.out_name}.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}
    # rows of the other procedures are kept from the file's earlier runs of the same setting
    rows = earlier.get("rows", {}) if earlier.get("setting") == args.setting else {}
    for seed in args.train_seeds:
        for refinement in args.procedures:
            rows[f"training seed {seed}, {refinement}"] = run(args.setting, refinement, seed)
            print(rows, flush=True)
    rows = dict(sorted(rows.items(), key=lambda item: _seed_and_procedure(item[0])))
    command = "python benchmarks/science/mask_restart_seeds.py " + shlex.join(sys.argv[1:])
    caption = (
        f"The sparse mask restart (`varimax`) against training as published (`none`) over "
        f"training seeds on the sweep's `{args.setting}` simulation (simulation, held-out "
        f"combinations and budget fixed). Rows come from runs of this script; the last: "
        f"`{command}`, commit {current_commit()[:8]}, torch threads {torch.get_num_threads()}."
    )
    record = {"setting": args.setting, "command": command, "rows": rows}
    save_results(args.out_name, record, markdown_table(caption, rows, COLUMNS))


def _seed_and_procedure(label: str) -> tuple[int, bool]:
    """Sort key of a row label "training seed S, PROCEDURE": by seed, the restart first."""
    seed, procedure = label.removeprefix("training seed ").split(", ")
    return int(seed), procedure != "varimax"


if __name__ == "__main__":
    main()
