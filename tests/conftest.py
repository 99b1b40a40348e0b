"""Shared tiny fixtures: one simulated screen built once per session, handed out as copies."""

from __future__ import annotations

import anndata as ad
import pytest
import torch

import samsvae

TINY = {
    "n_perturbations": 6,
    "n_combinations": 4,
    "n_genes": 24,
    "n_latent": 4,
    "n_cells_per_perturbation": 30,
    "n_cells_per_combination": 30,
    "n_control_cells": 60,
}


@pytest.fixture(scope="session")
def _tiny_adata() -> ad.AnnData:
    return samsvae.datasets.simulate(**TINY, seed=0)


@pytest.fixture
def tiny_adata(_tiny_adata: ad.AnnData) -> ad.AnnData:
    """A fresh copy of a tiny simulated screen with combinations (raw counts, CSR)."""
    return _tiny_adata.copy()


@pytest.fixture
def tiny_model(tiny_adata: ad.AnnData) -> samsvae.SAMSVAE:
    """An untrained small SAMS-VAE on ``tiny_adata``."""
    samsvae.SAMSVAE.setup_anndata(tiny_adata)
    return samsvae.SAMSVAE(tiny_adata, n_latent=4, n_hidden=16, n_particles=3)


@pytest.fixture
def float64():
    """Run a test in float64."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
