"""Helpers the parts of the user-facing model share."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Key of ``adata.uns`` where :meth:`setup_anndata` records the setup.
SETUP_KEY = "samsvae"


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run a block with torch's global RNG seeded, leaving the caller's RNG state untouched."""
    with torch.random.fork_rng():
        if seed is not None:
            torch.manual_seed(seed)
        yield
