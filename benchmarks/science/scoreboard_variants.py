"""One model setting on one scoreboard dataset: the scoreboard's first split and tasks, a model
built and trained with the given options, and its ATE r on each task.

For asking whether a setting other than the defaults changes a scoreboard row, and by how much
against the spread over seeds (``real_screens.py --seeds``). Each run appends one JSON line to
``benchmarks/results/scoreboard_variants.jsonl`` and rewrites ``scoreboard_variants.md``.

    python benchmarks/science/scoreboard_variants.py mcfaline '{"train": {"global_lr": 0.001}}'
    python benchmarks/science/scoreboard_variants.py simulation '{"model": {"n_latent": 40}}'
    python benchmarks/science/scoreboard_variants.py mcfaline '{"cls": "SVAEPlus", "seed": 1}'

The variant is JSON with optional keys ``model`` (keywords of the model class), ``train``
(keywords of ``train``), ``cls`` (default ``SAMSVAE``) and ``seed`` (the split's and the
training's; default 0). Tasks scored within strata (McFaline's within-line task) and tasks
with labels the model cannot predict are left out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
import real_screens
from real_data import RESULTS, current_commit

import samsvae
from samsvae.evaluate import ate_metrics

OUT = RESULTS / "scoreboard_variants"


def kept_epoch(history: pd.DataFrame) -> int:
    """The epoch whose weights training kept: best validation loss, or training loss when no
    cell validates."""
    validation = history["val_loss"].astype(float) if "val_loss" in history else None
    if validation is None or validation.isna().all():
        return int(history["train_loss"].astype(float).idxmin())
    return int(validation.idxmin())


def run(dataset: str, variant: dict) -> dict:
    seed = variant.get("seed", 0)
    args = real_screens.scoring_arguments(seed)
    adata = real_screens.load(dataset)
    experiment = next(real_screens.DATASETS[dataset][1](adata, args))
    model = getattr(samsvae, variant.get("cls", "SAMSVAE"))(
        experiment.train, **variant.get("model", {})
    )
    start = time.perf_counter()
    model.train(seed=seed, progress_bar=False, **variant.get("train", {}))
    history = model.history
    out = {
        "dataset": dataset,
        "variant": variant,
        "train_s": round(time.perf_counter() - start, 1),
        "epochs": len(history),
        "best_epoch": kept_epoch(history),
        "global_lr": model.train_settings.get("global_lr"),
    }
    for task in experiment.tasks:
        if task.strata is not None or model.design.unknown_singles(task.targets):
            continue
        metrics = ate_metrics(real_screens.model_effects(model, task, args).X, task.observed)
        out[task.name] = [round(float(metrics[k]), 3) for k in METRICS]
    test = experiment.tasks[0].test
    out["iwelbo"] = round(
        float(model.iwelbo(test, n_particles=100, seed=0, progress_bar=False)), 3
    )
    return out | {"commit": current_commit()[:8]}


METRICS = ("ate_pearson_r", "ate_pearson_r_top20")


def table(records: list[dict]) -> str:
    tasks = list(dict.fromkeys(k for r in records for k in r if isinstance(r[k], list)))
    caption = (
        "Scoreboard variants: one setting per row on the scoreboard's first split of the "
        "dataset (seed as given, default 0); per task ATE r (all genes / top-20) against the "
        "test cells, as in `real_screens.md`; best epoch of the validation loss; held-out "
        "IWELBO on the first task's test cells. Command: `python "
        "benchmarks/science/scoreboard_variants.py DATASET 'VARIANT'`."
    )
    header = "| dataset | variant | " + " | ".join(tasks) + " | best epoch | IWELBO |"
    lines = [caption, "", header, "|---" * (len(tasks) + 4) + "|"]
    for r in records:
        cells = [r["dataset"], f"`{json.dumps(r['variant'])}`"]
        cells += [" / ".join(f"{v:.3f}" for v in r[t]) if t in r else "" for t in tasks]
        cells += [str(r.get("best_epoch", "")), f"{r['iwelbo']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", choices=list(real_screens.DATASETS))
    parser.add_argument("variant", type=json.loads, help="JSON: model, train, cls, seed")
    args = parser.parse_args()
    record = run(args.dataset, args.variant)
    print(json.dumps(record), flush=True)
    lines = OUT.with_suffix(".jsonl")
    with lines.open("a") as f:
        f.write(json.dumps(record) + "\n")
    records = [json.loads(line) for line in lines.read_text().splitlines() if line.strip()]
    OUT.with_suffix(".md").write_text(table(records))


if __name__ == "__main__":
    main()
