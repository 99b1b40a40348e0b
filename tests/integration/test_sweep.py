"""`samsvae sweep`: worker processes share one Optuna study; `samsvae aggregate` tables runs.

Each test runs against SQLite, and against PostgreSQL when ``SAMSVAE_TEST_POSTGRES_URL`` names a
server (``.ci/postgres`` starts one; ``.ci/run`` sets the variable).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from samsvae.cli import main
from samsvae.experiment import read_config

from .test_experiment import CONFIG

if TYPE_CHECKING:
    from collections.abc import Iterator

SWEEP = {
    "model.mask_prior": {"type": "categorical", "choices": [0.1, 0.01]},
    "train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
}
POSTGRES_URL = os.environ.get("SAMSVAE_TEST_POSTGRES_URL")
STATES = optuna.trial.TrialState


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    if not POSTGRES_URL:
        pytest.skip("set SAMSVAE_TEST_POSTGRES_URL to a PostgreSQL server URL (see .ci/postgres)")
    pytest.importorskip("psycopg", reason="the PostgreSQL driver (test extra) is not installed")
    return POSTGRES_URL


def _sweep_config(tmp_path: Path, max_steps: int) -> Path:
    config = {**CONFIG, "train": {**CONFIG["train"], "max_steps": max_steps}, "sweep": SWEEP}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen]]:
    """Started worker processes, killed at teardown if a test left them running."""
    started: list[subprocess.Popen] = []
    yield started
    for worker in started:
        if worker.poll() is None:
            worker.kill()
        worker.communicate()


def _start(
    workers: list,
    config: Path,
    storage: str,
    name: str,
    out: Path,
    n_trials: int,
    *,
    heartbeat: tuple[int, int] = (1, 3),
) -> list[subprocess.Popen]:
    """Start two workers; ``heartbeat`` is (interval, grace period) in seconds."""
    command = [sys.executable, "-m", "samsvae.cli", "sweep", str(config), "--n-trials"]
    command += [str(n_trials), "--storage", storage, "--study-name", name, "--out", str(out)]
    command += ["--heartbeat-interval", str(heartbeat[0]), "--grace-period", str(heartbeat[1])]
    for _ in range(2):
        workers.append(
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        )
    return workers


def _finish(worker: subprocess.Popen) -> None:
    output, _ = worker.communicate(timeout=120)
    assert worker.returncode == 0, output


def test_two_workers_share_one_study_and_aggregate_makes_the_table(
    tmp_path: Path, storage: str, workers: list
) -> None:
    name, out = f"share-{uuid.uuid4().hex[:8]}", tmp_path / "sweep"
    config = _sweep_config(tmp_path, max_steps=2)
    # A long grace period, so that the worker held below is not taken for dead; rare heartbeats,
    # so that it is very unlikely to be held in the middle of writing one.
    started = _start(workers, config, storage, name, out, 4, heartbeat=(10, 300))
    _hold_the_first_until_the_other_runs_a_trial(started, storage, name)
    for worker in started:
        _finish(worker)
    trials = _trials(storage, name)
    complete = [t for t in trials if t.state == STATES.COMPLETE]
    # Two workers that both see 3 of 4 trials started may each start one more.
    assert 4 <= len(complete) <= 5 and len(complete) == len(trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    for trial in complete:
        metrics = json.loads((Path(trial.user_attrs["run_dir"]) / "metrics.json").read_text())
        assert metrics["validation_iwelbo"] == pytest.approx(trial.value)
    read_config(out / "best_config.yaml")

    table = tmp_path / "table.md"
    args = [
        "aggregate",
        str(out / "trials"),
        "--group-by",
        "model.mask_prior",
        "--out",
        str(table),
    ]
    result = CliRunner().invoke(main, [*args, "--metric", "validation_iwelbo"])
    assert result.exit_code == 0, result.output
    text = table.read_text()
    assert text.splitlines()[0] == "| model.mask_prior | runs | validation_iwelbo |"
    rows = json.loads(table.with_suffix(".json").read_text())
    assert sum(row["runs"] for row in rows) == len(complete)
    assert table.with_suffix(".csv").exists()


def test_a_killed_worker_leaves_a_failed_trial_and_the_other_finishes_the_study(
    tmp_path: Path, storage: str, workers: list
) -> None:
    name, out = f"kill-{uuid.uuid4().hex[:8]}", tmp_path / "sweep"
    config = _sweep_config(tmp_path, max_steps=10)
    started = _start(workers, config, storage, name, out, 2)
    # Kill whichever worker runs a trial first: on a loaded machine one worker may start so much
    # later than the other that it never runs a trial of this two-trial study.
    victim, killed = _running_trial(storage, name, {worker.pid for worker in started})
    os.kill(victim, signal.SIGKILL)
    _finish(next(worker for worker in started if worker.pid != victim))
    trials = _trials(storage, name)
    assert trials[killed].state == STATES.FAIL
    assert sum(t.state == STATES.COMPLETE for t in trials) >= 2
    assert not [t for t in trials if t.state == STATES.RUNNING]


def _hold_the_first_until_the_other_runs_a_trial(
    workers: list[subprocess.Popen], storage: str, name: str
) -> None:
    """Stop (SIGSTOP) whichever worker first runs a trial until the other runs one too, so that
    both share the study however unequal their start-up times on a loaded machine."""
    pids = {worker.pid for worker in workers}
    first, _ = _running_trial(storage, name, pids)
    os.kill(first, signal.SIGSTOP)
    try:
        _running_trial(storage, name, pids - {first})
    finally:
        os.kill(first, signal.SIGCONT)


def _running_trial(storage: str, name: str, pids: set[int]) -> tuple[int, int]:
    """(pid, trial number) of a trial run by one of ``pids`` once its parameters are stored, so
    that the worker is training, not writing to the database."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for trial in _trials(storage, name, must_exist=False):
            pid = trial.user_attrs.get("worker", ":").rsplit(":", 1)[1]
            running = trial.state == STATES.RUNNING and set(trial.params) == set(SWEEP)
            if running and pid.isdigit() and int(pid) in pids:
                return int(pid), trial.number
        time.sleep(0.2)
    pytest.fail(f"none of the workers {sorted(pids)} ran a trial")


def _trials(storage: str, name: str, *, must_exist: bool = True) -> list[optuna.trial.FrozenTrial]:
    """The study's trials, read without creating tables (workers may be creating them)."""
    rdb = None
    try:
        # NullPool: a connection is closed when released, also when the storage fails to load
        # (tables not created yet), instead of lingering in a pool that is never disposed.
        rdb = optuna.storages.RDBStorage(
            storage, skip_table_creation=True, engine_kwargs={"poolclass": NullPool}
        )
        return rdb.get_all_trials(rdb.get_study_id_from_name(name))
    except (KeyError, SQLAlchemyError, optuna.exceptions.StorageInternalError):
        if must_exist:
            raise
        return []
    finally:
        if rdb is not None:
            rdb.engine.dispose()
