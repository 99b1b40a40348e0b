"""The ``samsvae`` command line: argument parsing only; work is done in workflows/datasets."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import click

from samsvae.metric_names import HEADLINE_METRICS

# A hint per kind of failure, printed under the one-line error (first matching type wins).
ERROR_HINTS: tuple[tuple[type[BaseException], str], ...] = (
    (FileNotFoundError, "check the path (relative paths start from the current folder)."),
    (ValueError, "check the options (`samsvae COMMAND --help`) and the input data."),
    (MemoryError, "try smaller sizes (fewer cells, a smaller batch size)."),
)


class _OneLineErrors(click.Group):
    """A group whose commands fail with ``Error: <message>`` and a hint instead of a traceback;
    the global ``--debug`` option shows the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as error:
            if ctx.params.get("debug"):
                raise
            hint = next(
                (text for kind, text in ERROR_HINTS if isinstance(error, kind)),
                "see `samsvae COMMAND --help`.",
            )
            click.echo(f"Error: {error}", err=True)
            click.echo(f"Hint: {hint} Add --debug for the full traceback.", err=True)
            ctx.exit(1)


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="samsvae")
@click.option(
    "--debug", is_flag=True, help="Show the full traceback when a command fails (before COMMAND)."
)
def main(debug: bool) -> None:  # debug is read by _OneLineErrors from ctx.params
    """SAMS-VAE for single-cell perturbation screens.

    Start with `samsvae quickstart` (a simulated screen; a few minutes on a CPU),
    then open the run folder's report.html. `samsvae COMMAND --help` explains each command.
    """


@main.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("samsvae_quickstart"),
    show_default=True,
    help="Run folder to write.",
)
@click.option("--max-epochs", type=int, default=None, help="Training epochs (default 60).")
@click.option("--n-perturbations", type=int, default=None, help="Simulated single perturbations.")
@click.option("--n-combinations", type=int, default=None, help="Simulated two-gene combinations.")
@click.option(
    "--cells",
    "n_cells",
    type=int,
    default=None,
    help="Cells per perturbation and per combination.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the simulation, the held-out split, training and evaluation.",
)
@click.option("--no-progress", is_flag=True, help="Hide the training progress bar.")
def quickstart(
    out: Path,
    max_epochs: int | None,
    n_perturbations: int | None,
    n_combinations: int | None,
    n_cells: int | None,
    seed: int,
    no_progress: bool,
) -> None:
    """Simulate a screen, hold out combinations, train SAMS-VAE, evaluate, write a run folder.

    The folder holds metrics.json, model/, the figures and report.html (one self-contained
    page: metrics, figures and the model's interpretation). Options left out take the
    defaults of samsvae.workflows.QuickstartSettings.
    """
    from samsvae.workflows import QuickstartSettings, run_quickstart

    overrides = {
        "max_epochs": max_epochs,
        "n_perturbations": n_perturbations,
        "n_combinations": n_combinations,
        "n_cells_per_perturbation": n_cells,
        "n_cells_per_combination": n_cells,
        "seed": seed,
    }
    settings = dataclasses.replace(
        QuickstartSettings(), **{k: v for k, v in overrides.items() if v is not None}
    )
    click.echo(
        f"Simulating {settings.n_perturbations} perturbations and "
        f"{settings.n_combinations} combinations; training SAMS-VAE on CPU/GPU ..."
    )
    metrics = run_quickstart(out, settings, progress_bar=not no_progress)
    _print_summary(metrics)
    click.echo(f"\nWrote {out}/metrics.json, model/, figures and report.html")


def _print_summary(metrics: dict) -> None:
    shown = [(key, label) for key, label in HEADLINE_METRICS if key in metrics]
    width = max(len(label) for _, label in shown)
    click.echo("")
    for key, label in shown:
        click.echo(f"  {label:<{width}}  {metrics[key]:.3f}")


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
def evaluate(run_dir: Path) -> None:
    """Re-evaluate a quickstart RUN_DIR: metrics.json, figures and a self-contained report.html.

    The simulated screen is rebuilt from the settings recorded in RUN_DIR/metrics.json.
    """
    from samsvae.workflows import evaluate_run

    metrics = evaluate_run(run_dir)
    _print_summary(metrics)
    click.echo(f"\nWrote {run_dir}/metrics.json, figures and report.html")


def _config_argument(function: Any) -> Any:
    return click.argument("config", type=click.Path(path_type=Path, exists=True, dir_okay=False))(
        function
    )


def _checked_config(config: Path) -> dict[str, Any]:
    from samsvae.experiment import read_config

    try:
        return read_config(config)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="CONFIG") from error


@main.command()
@_config_argument
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Run folder (default: runs/<CONFIG file name without suffix>).",
)
@click.option(
    "--only",
    multiple=True,
    help="Run only this grid point (its folder name); repeat for several.",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue interrupted runs from their last checkpoint (RUN/checkpoint unless the "
    "config's train section sets checkpoint_dir); the result equals an uninterrupted run.",
)
def train(config: Path, out: Path | None, only: tuple[str, ...], resume: bool) -> None:
    """Run the experiment of a YAML CONFIG: dataset, preprocessing, task split, model, training.

    With a grid section, one run per point, each in its own subfolder of the run folder. Each run
    checkpoints every epoch into its folder's checkpoint/ (or the config's checkpoint_dir), so an
    interrupted run continues with --resume.
    """
    from samsvae.experiment import expand_grid, run_config

    points = expand_grid(_checked_config(config))
    unknown = sorted(set(only) - set(points))
    if unknown:
        msg = f"{unknown} are not grid points of {config}; they are {sorted(points)}."
        raise click.BadParameter(msg, param_hint="--only")
    out = out if out is not None else Path("runs") / config.stem
    for name, point in points.items():
        if only and name not in only:
            continue
        train_options = point["train"]
        train_options.setdefault("checkpoint_dir", str(out / name / "checkpoint"))
        train_options["resume"] = resume or bool(train_options.get("resume", False))
        metrics = run_config(point, out / name)
        click.echo(f"\n{out / name}")
        for key, value in metrics.items():
            click.echo(f"  {key}: {value}")
    click.echo("\nEach run folder holds config.yaml, split.json, model/ and metrics.json")


@main.command()
@_config_argument
@click.option("--n-trials", type=click.IntRange(min=1), required=True, help="Complete trials.")
@click.option(
    "--storage",
    default=None,
    help="Optuna database URL shared by the workers (default: sqlite:///OUT/study.db), e.g. "
    "postgresql://user:password@host/db for workers on several machines.",
)
@click.option("--study-name", default=None, help="Default: the CONFIG file name without suffix.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder of the trials' run folders (default: runs/<CONFIG name>_sweep).",
)
@click.option(
    "--heartbeat-interval",
    type=click.IntRange(min=1),
    default=60,
    show_default=True,
    help="Seconds between the heartbeats a running trial writes to the storage.",
)
@click.option(
    "--grace-period",
    type=click.IntRange(min=1),
    default=None,
    help="Seconds without heartbeat before a trial of a dead worker is marked failed "
    "(default: twice the heartbeat interval).",
)
def sweep(
    config: Path,
    n_trials: int,
    storage: str | None,
    study_name: str | None,
    out: Path | None,
    heartbeat_interval: int,
    grace_period: int | None,
) -> None:
    """Search the sweep section of CONFIG with Optuna, maximising validation IWELBO.

    Start the same command several times (on several machines, with a shared --storage) to
    run trials in parallel; each worker stops once the study has N-TRIALS complete trials.
    """
    from samsvae.sweep import run_sweep

    _checked_config(config)
    out = out if out is not None else Path("runs") / f"{config.stem}_sweep"
    try:
        study = run_sweep(
            config,
            out,
            n_trials=n_trials,
            storage=storage,
            study_name=study_name,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
        )
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="CONFIG") from error
    best = study.best_trial
    click.echo(f"Best trial {best.number}: validation IWELBO {best.value:.4f}, {best.params}")
    click.echo(f"Wrote {out}/trials/, trials.csv and best_config.yaml")


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@click.option(
    "--group-by",
    multiple=True,
    help="Config option (section.option) defining a configuration; repeat for several "
    "(default: every option that differs between runs, except seeds).",
)
@click.option("--metric", "metrics", multiple=True, help="Metric to show (default: all).")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Markdown table to write, with .csv and .json beside it (default: print it).",
)
def aggregate(
    run_dirs: tuple[Path, ...],
    group_by: tuple[str, ...],
    metrics: tuple[str, ...],
    out: Path | None,
) -> None:
    """Mean ± sd over seeds of the metrics of the run folders in or under RUN_DIRS."""
    from samsvae.aggregate import aggregate_runs, collect_runs, markdown_table, write_table

    try:
        table = aggregate_runs(
            collect_runs(run_dirs), group_by=group_by or None, metrics=metrics or None
        )
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    if out is None:
        click.echo(markdown_table(table), nl=False)
    else:
        click.echo("Wrote " + ", ".join(map(str, write_table(table, out))))


@main.command()
@click.argument("output", type=click.Path(path_type=Path))
@click.option(
    "--n-perturbations", type=int, default=50, show_default=True, help="Single perturbations."
)
@click.option(
    "--n-combinations", type=int, default=30, show_default=True, help="Two-gene combinations."
)
@click.option("--n-genes", type=int, default=100, show_default=True, help="Measured genes.")
@click.option(
    "--likelihood",
    type=click.Choice(["nb", "normal"]),
    default="nb",
    show_default=True,
    help="nb: integer counts (negative binomial); normal: continuous values.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Simulation seed.")
def simulate(
    output: Path,
    n_perturbations: int,
    n_combinations: int,
    n_genes: int,
    likelihood: str,
    seed: int,
) -> None:
    """Write a simulated screen with known masks and effects to OUTPUT (.h5ad)."""
    from samsvae.datasets import simulate as simulate_data

    adata = simulate_data(
        n_perturbations=n_perturbations,
        n_combinations=n_combinations,
        n_genes=n_genes,
        likelihood=likelihood,
        seed=seed,
    )  # type: ignore[arg-type]
    adata.uns["simulation"] = {
        k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in adata.uns["simulation"].items()
    }
    adata.uns["simulation"] = json.loads(json.dumps(adata.uns["simulation"]))
    adata.write_h5ad(output)
    click.echo(f"Wrote {adata.n_obs} cells x {adata.n_vars} genes to {output}")


if __name__ == "__main__":
    sys.exit(main())
