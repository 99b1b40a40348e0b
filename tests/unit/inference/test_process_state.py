"""The training scope restores every process-wide setting it or Lightning changes."""

from __future__ import annotations

import contextlib
import logging
import os

import pytest
import torch

from samsvae.inference.process_state import (
    CUBLAS_WORKSPACE,
    LIGHTNING_LOGGERS,
    ProcessState,
    training_scope,
)


def _change_everything() -> None:
    """What Lightning's deterministic trainer and DDP do to the process, and more."""
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = True
    os.environ[CUBLAS_WORKSPACE] = ":4096:8"
    for name in LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    torch.set_float32_matmul_precision("medium")
    torch.manual_seed(123)


@pytest.mark.parametrize("fails", [False, True])
def test_the_scope_restores_flags_loggers_environment_and_rng_even_on_error(fails: bool) -> None:
    torch.set_float32_matmul_precision("highest")
    logging.getLogger("lightning.pytorch").setLevel(logging.DEBUG)
    os.environ.pop(CUBLAS_WORKSPACE, None)
    before, rng = ProcessState.now(), torch.random.get_rng_state()
    expected_error = pytest.raises(RuntimeError) if fails else contextlib.nullcontext()
    with expected_error, training_scope(seed=5):
        assert torch.get_float32_matmul_precision() == "high"
        assert logging.getLogger("lightning.pytorch").level == logging.WARNING
        first = torch.rand(3)
        _change_everything()
        if fails:
            msg = "training failed"
            raise RuntimeError(msg)
    assert ProcessState.now() == before
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert logging.getLogger("lightning.pytorch").level == logging.DEBUG
    assert CUBLAS_WORKSPACE not in os.environ
    with training_scope(seed=5):
        assert torch.equal(torch.rand(3), first)  # seeded inside: the same draws


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_the_scope_destroys_a_process_group_it_set_up_and_keeps_the_users() -> None:
    def start() -> None:
        store = torch.distributed.HashStore()
        torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1)

    with training_scope(seed=0):
        start()  # as Lightning's DDP strategy does
    assert not torch.distributed.is_initialized()
    start()  # the user's own group
    try:
        with training_scope(seed=0):
            pass
        assert torch.distributed.is_initialized()
    finally:
        torch.distributed.destroy_process_group()
