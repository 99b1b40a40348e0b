"""Loader shuffling is a function of (seed, epoch), so a resumed run sees the same batches."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from samsvae.data import CellDataset, DeviceBatches, make_loader


def _dataset() -> CellDataset:
    counts = np.arange(40, dtype=np.float32).reshape(20, 2)
    return CellDataset(sp.csr_matrix(counts), sp.csr_matrix(np.ones((20, 1), np.float32)))


def _order(loader: object) -> list[int]:
    return torch.cat([batch.index for batch in loader]).tolist()  # type: ignore[attr-defined]


def test_an_epochs_order_depends_only_on_seed_and_epoch() -> None:
    rows = np.arange(20)
    ran = make_loader(_dataset(), rows, batch_size=6, shuffle=True, seed=3)
    orders = []
    for epoch in range(3):
        ran.sampler.set_epoch(epoch)
        orders.append(_order(ran))
    fresh = make_loader(_dataset(), rows, batch_size=6, shuffle=True, seed=3)
    fresh.sampler.set_epoch(2)  # a new process resuming at epoch 2
    assert _order(fresh) == orders[2]
    assert orders[0] != orders[1] != orders[2]
    assert sorted(orders[0]) == list(range(20))
    device = DeviceBatches(_dataset(), rows, batch_size=6, shuffle=True, device="cpu", seed=3)
    device.sampler.set_epoch(2)
    assert _order(device) == orders[2]


def test_iterating_a_loader_leaves_the_global_rng_alone() -> None:
    state = torch.get_rng_state()
    list(make_loader(_dataset(), np.arange(20), batch_size=6, shuffle=True, seed=0))
    assert torch.equal(torch.get_rng_state(), state)
