"""Training changes process-wide settings; this scope gives every one of them back.

Lightning's ``Trainer(deterministic=True)`` turns on torch's deterministic algorithms, sets
cuDNN's flags and ``CUBLAS_WORKSPACE_CONFIG``; data-parallel training initialises the default
process group; training seeds torch's global generator and quiets Lightning's loggers; it asks
for TF32 matmuls on GPUs. :func:`training_scope` sets what training needs and restores the
caller's state on exit, on error too, so that a user's process is as it was before ``train``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from collections.abc import Iterator

LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")
CUBLAS_WORKSPACE = "CUBLAS_WORKSPACE_CONFIG"


@dataclass(frozen=True)
class ProcessState:
    """The process-wide settings that training may change (RNG states are kept by fork_rng)."""

    deterministic: bool
    deterministic_warn_only: bool
    cudnn_deterministic: bool
    cudnn_benchmark: bool
    matmul_precision: str
    cublas_workspace: str | None
    logger_levels: dict[str, int] = field(default_factory=dict)
    process_group: bool = False

    @classmethod
    def now(cls) -> ProcessState:
        return cls(
            deterministic=torch.are_deterministic_algorithms_enabled(),
            deterministic_warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
            cudnn_deterministic=torch.backends.cudnn.deterministic,
            cudnn_benchmark=torch.backends.cudnn.benchmark,
            matmul_precision=torch.get_float32_matmul_precision(),
            cublas_workspace=os.environ.get(CUBLAS_WORKSPACE),
            logger_levels={name: logging.getLogger(name).level for name in LIGHTNING_LOGGERS},
            process_group=_process_group_up(),
        )

    def restore(self) -> None:
        torch.use_deterministic_algorithms(
            self.deterministic, warn_only=self.deterministic_warn_only
        )
        torch.backends.cudnn.deterministic = self.cudnn_deterministic
        torch.backends.cudnn.benchmark = self.cudnn_benchmark
        torch.set_float32_matmul_precision(self.matmul_precision)
        if self.cublas_workspace is None:
            os.environ.pop(CUBLAS_WORKSPACE, None)
        else:
            os.environ[CUBLAS_WORKSPACE] = self.cublas_workspace
        for name, level in self.logger_levels.items():
            logging.getLogger(name).setLevel(level)
        if not self.process_group and _process_group_up():
            # Left up by Lightning's DDP: a gloo group still up at exit can abort the process.
            torch.distributed.destroy_process_group()


def _process_group_up() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _cuda_devices() -> list[int]:
    """The CUDA devices whose generators training may draw from."""
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


@contextlib.contextmanager
def training_scope(seed: int) -> Iterator[None]:
    """Seed torch's generators, quiet Lightning's per-fit banner and allow TF32 matmuls on GPUs
    for the block; restore every setting of :class:`ProcessState` and the RNG states after it."""
    before = ProcessState.now()
    try:
        with torch.random.fork_rng(devices=_cuda_devices()):
            torch.manual_seed(seed)
            for name in LIGHTNING_LOGGERS:
                logging.getLogger(name).setLevel(logging.WARNING)
            torch.set_float32_matmul_precision("high")  # likelihoods stay fp32 elementwise
            yield
    finally:
        before.restore()
