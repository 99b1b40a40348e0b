"""Hyperparameter sweeps of an experiment file with Optuna, selected by validation IWELBO.

The ``sweep:`` section of the YAML file (see :mod:`samsvae.experiment`) declares the search
space; every trial runs the experiment with its values into ``OUT/trials/trial-NNNN`` and
reports the mean predictive IWELBO of the validation cells, which the study maximises. Workers
started with the same file, study name and storage URL (SQLite for one machine, e.g.
PostgreSQL for several) share one study. A worker that dies stops sending heartbeats; after
``grace_period`` seconds Optuna's :func:`optuna.storages.fail_stale_trials` marks its trial
failed, and the other workers run trials until the study has ``n_trials`` complete ones.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import yaml
from sqlalchemy.exc import SQLAlchemyError

from samsvae.experiment import SECTIONS, expand_grid, read_config, run_config, with_values
from samsvae.inference.training import NonFiniteLossError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

OBJECTIVE = "validation_iwelbo"
_DONE = (optuna.trial.TrialState.COMPLETE,)
_CREATE_ATTEMPTS = 5
_ACTIVE = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING)


def run_sweep(
    config_path: str | Path,
    out: str | Path,
    *,
    n_trials: int,
    storage: str | None = None,
    study_name: str | None = None,
    heartbeat_interval: int = 60,
    grace_period: int | None = None,
) -> optuna.Study:
    """Run this worker's share of a sweep: trials until the study has ``n_trials`` complete.

    Parameters
    ----------
    config_path
        Experiment file with a ``sweep:`` section and no ``grid:``.
    out
        Folder of the trials' run folders, ``best_config.yaml`` and ``trials.csv``.
    n_trials
        Complete trials the study should reach, counted over all workers.
    storage
        Database URL Optuna accepts; ``None``: ``sqlite:///OUT/study.db``.
    study_name
        Name of the study in the storage; ``None``: the config file's name without suffix.
    heartbeat_interval
        Seconds between the heartbeats of a running trial.
    grace_period
        Seconds without heartbeat after which a running trial counts as dead and is marked
        failed; ``None``: twice ``heartbeat_interval``.

    Returns
    -------
    The study, after this worker stopped.

    Raises
    ------
    ValueError
        The file has no sweep, has a grid, or ``n_trials`` is not positive.
    """
    config = read_config(config_path)
    if not config["sweep"] or config["grid"] or n_trials < 1:
        msg = (
            f"{config_path}: a sweep needs a 'sweep:' section, no 'grid:' and n_trials >= 1 "
            f"(got n_trials={n_trials})."
        )
        raise ValueError(msg)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    study = load_study(
        storage or f"sqlite:///{out / 'study.db'}",
        study_name or Path(config_path).stem,
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period if grace_period is not None else 2 * heartbeat_interval,
    )
    objective = _objective(expand_grid(config)[""], out)
    while _wait_for_room(study, n_trials, poll=heartbeat_interval):
        study.optimize(objective, n_trials=1, catch=(NonFiniteLossError,))
    _write_results(study, config, out)
    return study


def load_study(
    storage: str, study_name: str, *, heartbeat_interval: int, grace_period: int
) -> optuna.Study:
    """Create the study, or load it when another worker did: maximise validation IWELBO."""
    engine_kwargs = {"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else {}
    attempt = 1
    while True:
        try:  # workers starting together race to create the tables and the study
            with _heartbeats_are_intended():
                rdb = optuna.storages.RDBStorage(
                    storage,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                )
            return optuna.create_study(
                storage=rdb, study_name=study_name, direction="maximize", load_if_exists=True
            )
        except (SQLAlchemyError, optuna.exceptions.StorageInternalError):
            if attempt == _CREATE_ATTEMPTS:
                raise
            attempt += 1
            time.sleep(0.2 * attempt + (os.getpid() % 7) / 10)  # workers retry apart


def _wait_for_room(study: optuna.Study, n_trials: int, *, poll: float) -> bool:
    """Whether to start a trial: wait while running trials may still complete the study."""
    while True:
        with _heartbeats_are_intended():
            optuna.storages.fail_stale_trials(study)
        if _count(study, _DONE) >= n_trials:
            return False
        if _count(study, _ACTIVE) < n_trials:
            return True
        time.sleep(poll)


@contextlib.contextmanager
def _heartbeats_are_intended() -> Iterator[None]:
    """Silence Optuna's note that heartbeats and ``fail_stale_trials`` are experimental."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def _count(study: optuna.Study, states: tuple[optuna.trial.TrialState, ...]) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


def _objective(config: dict[str, Any], out: Path) -> Callable[[optuna.Trial], float]:
    space = config["sweep"]

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        run_dir = out / "trials" / f"trial-{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir.resolve()))
        values = {key: _suggest(trial, key, spec) for key, spec in space.items()}
        metrics = run_config(with_values(config, values), run_dir)
        return float(metrics[OBJECTIVE])

    return objective


def _suggest(trial: optuna.Trial, key: str, spec: dict[str, Any]) -> Any:
    options = {k: v for k, v in spec.items() if k != "type"}
    if spec["type"] == "categorical":
        return trial.suggest_categorical(key, options["choices"])
    if spec["type"] == "int":
        return trial.suggest_int(key, **options)
    return trial.suggest_float(key, **options)


def _write_results(study: optuna.Study, config: dict[str, Any], out: Path) -> None:
    """``trials.csv`` (every trial) and, once one completed, ``best_config.yaml``."""
    study.trials_dataframe().to_csv(out / "trials.csv", index=False)
    if _count(study, _DONE):
        best = study.best_trial
        config = with_values(config, best.params)
        header = f"# best of study {study.study_name!r}: trial {best.number}, "
        header += f"{OBJECTIVE} {best.value:.4f}\n"
        text = yaml.safe_dump({name: config[name] for name in SECTIONS}, sort_keys=False)
        (out / "best_config.yaml").write_text(header + text)
