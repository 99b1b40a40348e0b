"""Resumable training: a killed run resumes to the same parameters, bit for bit (CPU).

Training runs in a subprocess that the test kills with SIGKILL, between checkpoints or in the
middle of writing one; checkpoints of other runs are refused; divergence restarts from the last
good checkpoint at a lower learning rate.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

import samsvae
from samsvae import io
from samsvae.config import TrainConfig
from samsvae.inference import training
from samsvae.inference.training import NonFiniteLossError

if TYPE_CHECKING:
    import anndata as ad

MODEL = {"n_latent": 4, "n_hidden": 16, "n_particles": 3}
# 324 training cells: 3 steps per epoch. Early stopping is on so that its state is resumed too.
TRAIN = {
    "max_epochs": 4,
    "batch_size": 108,
    "lr": 3e-3,
    "progress_bar": False,
    "early_stopping": True,
    "early_stopping_patience": 20,
}

# Test-only fault injection lives here, in the child process, not in samsvae: "pause" sleeps
# after each checkpoint so the test can kill training between checkpoints; "die_at:<suffix>"
# kills the process when the second checkpoint's file ending in <suffix> is about to be renamed
# into place, i.e. after its temporary file was written and fsynced (checkpoint.json: after the
# new tensor file is in place, just before the commit).
CHILD = """
import json, os, signal, sys, time
from pathlib import Path

sys.path.insert(0, sys.argv[4])
from conftest import TINY
import samsvae
from samsvae import io

directory, fault = Path(sys.argv[1]), sys.argv[2]
if fault == "pause":
    save = io.save_checkpoint

    def save_and_pause(*args):
        path = save(*args)
        time.sleep(0.3)
        return path

    io.save_checkpoint = save_and_pause
else:
    suffix, replace = fault.removeprefix("die_at:"), os.replace

    def replace_or_die(src, dst):
        if str(dst).endswith(suffix) and (directory / "checkpoint.json").exists():
            os.kill(os.getpid(), signal.SIGKILL)
        replace(src, dst)

    os.replace = replace_or_die
adata = samsvae.datasets.simulate(**TINY, seed=0)
samsvae.SAMSVAE.setup_anndata(adata)
model = samsvae.SAMSVAE(adata, **json.loads(sys.argv[3])["model"])
model.train(checkpoint_dir=directory, resume=True, **json.loads(sys.argv[3])["train"])
"""


def _model(adata: ad.AnnData, **overrides: object) -> samsvae.SAMSVAE:
    samsvae.SAMSVAE.setup_anndata(adata)
    return samsvae.SAMSVAE(adata, **{**MODEL, **overrides})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def uninterrupted(_tiny_adata: ad.AnnData) -> samsvae.SAMSVAE:
    """The reference: the same training without checkpoints or interruptions."""
    model = _model(_tiny_adata.copy())
    model.train(**TRAIN)
    return model


def _assert_bit_identical(model: samsvae.SAMSVAE, reference: samsvae.SAMSVAE) -> None:
    expected = reference.module.state_dict()
    for key, value in model.module.state_dict().items():
        assert torch.equal(value, expected[key]), key
    assert model.history.equals(reference.history)


def _committed_epochs(directory: Path) -> int:
    try:
        return json.loads((directory / "checkpoint.json").read_text())["sequence"]
    except (OSError, ValueError, KeyError):  # absent, or being replaced
        return 0


def _run_child_until_killed(
    directory: Path, fault: str, train: dict | None = None, after_epochs: int = 2
) -> None:
    settings = json.dumps({"model": MODEL, "train": train or TRAIN})
    tests = str(Path(__file__).parents[1])
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(directory), fault, settings, tests])
    deadline = time.monotonic() + 60
    while (
        fault == "pause" and _committed_epochs(directory) < after_epochs and child.poll() is None
    ):
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.05)
    if fault == "pause":
        os.kill(child.pid, signal.SIGKILL)
    assert child.wait(timeout=60) == -signal.SIGKILL


def test_a_run_killed_between_checkpoints_resumes_bit_identically(
    tiny_adata: ad.AnnData, tmp_path: Path, uninterrupted: samsvae.SAMSVAE
) -> None:
    _run_child_until_killed(tmp_path, "pause")
    assert 2 <= _committed_epochs(tmp_path) < TRAIN["max_epochs"]
    resumed = _model(tiny_adata)
    resumed.train(checkpoint_dir=tmp_path, resume=True, **TRAIN)
    _assert_bit_identical(resumed, uninterrupted)


# so short a fit leaves no entry 5 posterior sds out: the pruning switches every one off
@pytest.mark.filterwarnings("ignore:The sparse mask restart's pruning switched off every")
def test_a_run_killed_after_the_sparse_mask_restart_resumes_bit_identically(
    tiny_adata: ad.AnnData, tmp_path: Path
) -> None:
    # 9 epochs: the restart after epoch 6, masks held from then on, pruned after 8; killed
    # after 7 or 8, so the resumed run may have the pruning still to do.
    train = {**TRAIN, "max_epochs": 9, "mask_refinement": "varimax"}
    reference = _model(tiny_adata.copy())
    reference.train(**train)
    masks = reference.get_mask_probabilities().to_numpy()
    assert ((masks < 0.05) | (masks > 0.95)).all()  # restarted (as published: 0.18-0.85 here)
    _run_child_until_killed(tmp_path, "pause", train, after_epochs=7)
    assert 7 <= _committed_epochs(tmp_path) < train["max_epochs"]
    resumed = _model(tiny_adata)
    resumed.train(checkpoint_dir=tmp_path, resume=True, **train)
    _assert_bit_identical(resumed, reference)


def test_a_run_killed_while_writing_a_checkpoint_keeps_the_previous_one(
    tiny_adata: ad.AnnData, tmp_path: Path, uninterrupted: samsvae.SAMSVAE
) -> None:
    _run_child_until_killed(tmp_path, "die_at:checkpoint.json")
    assert (tmp_path / "checkpoint-2.safetensors").is_file()  # written, but never committed
    assert any(p.name.startswith(".checkpoint") for p in tmp_path.iterdir())  # the torn write
    assert io.read_checkpoint(tmp_path)["epoch"] == 0  # the first checkpoint still loads
    resumed = _model(tiny_adata)
    resumed.train(checkpoint_dir=tmp_path, resume=True, **TRAIN)
    _assert_bit_identical(resumed, uninterrupted)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"checkpoint-{TRAIN['max_epochs']}.safetensors",
        "checkpoint.json",
    ]


def _checkpointed(adata: ad.AnnData, directory: Path) -> None:
    _model(adata).train(checkpoint_dir=directory, **{**TRAIN, "max_epochs": 1})


@pytest.mark.parametrize(
    ("model_overrides", "train_overrides", "message"),
    [
        ({"n_hidden": 8}, {}, "n_hidden=16 in the checkpoint but 8 now"),
        ({}, {"seed": 1}, "seed=0 in the checkpoint but 1 now"),
        ({}, {"train_size": 0.8}, "train_and_validation_cells="),
    ],
)
def test_a_checkpoint_of_another_run_is_refused(
    tiny_adata: ad.AnnData,
    tmp_path: Path,
    model_overrides: dict,
    train_overrides: dict,
    message: str,
) -> None:
    _checkpointed(tiny_adata, tmp_path)
    other = _model(tiny_adata, **model_overrides)
    with pytest.raises(io.ModelFileError, match=f"belongs to another run: .*{message}"):
        other.train(checkpoint_dir=tmp_path, resume=True, **{**TRAIN, **train_overrides})


def test_a_truncated_checkpoint_is_refused_on_resume(
    tiny_adata: ad.AnnData, tmp_path: Path
) -> None:
    _checkpointed(tiny_adata, tmp_path)
    tensors = tmp_path / "checkpoint-1.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:-8])
    with pytest.raises(io.ModelFileError, match="modified, truncated or replaced"):
        _model(tiny_adata).train(checkpoint_dir=tmp_path, resume=True, **TRAIN)


def test_an_existing_checkpoint_is_not_overwritten_without_resume(
    tiny_adata: ad.AnnData, tmp_path: Path
) -> None:
    _checkpointed(tiny_adata, tmp_path)
    with pytest.raises(FileExistsError, match="pass resume=True to continue"):
        _model(tiny_adata).train(checkpoint_dir=tmp_path, **TRAIN)
    with pytest.raises(ValueError, match="resume=True needs checkpoint_dir"):
        _model(tiny_adata).train(resume=True, **TRAIN)


@pytest.fixture
def nan_at_step(monkeypatch: pytest.MonkeyPatch):
    """Make the loss NaN at the given (1-based) training steps, counted across restarts."""

    def install(*steps: int) -> list[int]:
        calls: list[int] = []
        elbo = training.minibatch_elbo

        def elbo_with_nan(module, batch, n_particles, **options):
            terms = elbo(module, batch, n_particles, **options)
            if module.training:
                calls.append(len(calls) + 1)
                if calls[-1] in steps:
                    return type(terms)(**{**vars(terms), "loss": terms.loss * torch.nan})
            return terms

        monkeypatch.setattr(training, "minibatch_elbo", elbo_with_nan)
        return calls

    return install


def test_divergence_stops_with_the_step_and_keeps_the_last_good_checkpoint(
    tiny_adata: ad.AnnData, tmp_path: Path, nan_at_step
) -> None:
    nan_at_step(5)  # in epoch 1; epoch 0 (steps 1-3) was checkpointed
    with pytest.raises(NonFiniteLossError, match="Training diverged at step 4"):
        _model(tiny_adata).train(checkpoint_dir=tmp_path, **TRAIN)
    assert io.read_checkpoint(tmp_path)["epoch"] == 0


def test_divergence_restarts_from_the_last_checkpoint_at_a_lower_learning_rate(
    tiny_adata: ad.AnnData, tmp_path: Path, nan_at_step, uninterrupted: samsvae.SAMSVAE
) -> None:
    calls = nan_at_step(5)
    model = _model(tiny_adata)
    with pytest.warns(RuntimeWarning, match="Restart 1 of 2 from the last checkpoint"):
        model.train(checkpoint_dir=tmp_path, restart_on_divergence=2, **TRAIN)
    # Steps 1-5, then steps 4-15 again from the end of epoch 0 (step 3).
    assert len(calls) == 5 + (3 * TRAIN["max_epochs"] - 3)
    assert model.history.iloc[0].equals(uninterrupted.history.iloc[0])
    assert list(model.history["epoch"]) == list(range(TRAIN["max_epochs"]))
    checkpoint = io.read_checkpoint(tmp_path)
    assert checkpoint["divergence_restarts"] == 1
    learning_rates = [g["lr"] for g in checkpoint["optimizer_states"][0]["param_groups"]]
    # the networks' lr and the per-perturbation parameters' default global_lr (30 x lr), halved
    assert learning_rates == pytest.approx([TRAIN["lr"] * 0.5, 30 * TRAIN["lr"] * 0.5])


def test_divergence_before_any_checkpoint_restarts_from_the_initial_weights(
    tiny_adata: ad.AnnData, nan_at_step
) -> None:
    nan_at_step(1, 2)
    model = _model(tiny_adata)
    with pytest.warns(RuntimeWarning, match="from the initial weights") as record:
        model.train(restart_on_divergence=2, **TRAIN)
    assert len(record) == 2
    assert list(model.history["epoch"]) == list(range(TRAIN["max_epochs"]))
    with pytest.raises(NonFiniteLossError):
        nan_at_step(1)
        _model(tiny_adata).train(restart_on_divergence=0, **TRAIN)


def test_train_takes_every_train_config_option_and_names_an_unknown_one(
    tiny_adata: ad.AnnData,
) -> None:
    parameters = inspect.signature(samsvae.SAMSVAE.train).parameters
    explicit = {name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert explicit <= {f.name for f in dataclasses.fields(TrainConfig)} | {
        "train_indices",
        "validation_indices",
    }
    assert parameters["options"].kind is inspect.Parameter.VAR_KEYWORD  # the other fields
    with pytest.raises(ValueError, match=r"Unknown TrainConfig keys \['max_epoch'\]"):
        _model(tiny_adata).train(max_epoch=3)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"checkpoint_every_n_epochs": 0}, "checkpoint_every_n_epochs=0 must be an integer >= 1"),
        ({"restart_on_divergence": -1}, "restart_on_divergence=-1 must be an integer >= 0"),
        (
            {"divergence_lr_factor": 1.5},
            "divergence_lr_factor=1.5 must be a number strictly between",
        ),
    ],
)
def test_bad_checkpoint_and_restart_options_are_refused(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**options)
