"""Small files in the published datasets' schemas (DESIGN.md §6), written to temporary folders."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import samsvae

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


def write_norman_file(
    path: Path, *, n_combinations: int = 6, n_cells: int = 5, n_genes: int = 20
) -> Path:
    """Write a Norman-schema h5ad: counts layer, log-normalised X, guide_* indicator columns.

    ``n_cells`` cells per single and per combination, ``2 * n_cells`` controls.
    """
    rng = np.random.default_rng(0)
    genes = [f"G{i:02d}" for i in range(n_genes)]
    pairs = list(itertools.combinations(genes, 2))[:n_combinations]
    targets = [()] * 2 * n_cells + [(g,) for g in genes] * n_cells + pairs * n_cells
    indicators = pd.DataFrame(
        {f"guide_{g}": [int(g in t) for t in targets] for g in reversed(genes)}
    )
    obs = pd.DataFrame(
        {
            "guide_identity": ["_".join(t) or "NegCtrl0" for t in targets],
            "guide_ids": [",".join(t) for t in targets],
            "UMI_count": rng.integers(100, 200, len(targets)),
        }
    ).join(indicators)
    obs.index = [f"cell{i}" for i in range(len(targets))]
    counts = rng.poisson(2.0, (len(targets), 6)).astype(np.float32)
    var = pd.DataFrame({"highly_variable": [True, True, False, True, True, True]})
    var.index = [f"gene{j}" for j in range(6)]
    adata = ad.AnnData(np.log1p(counts), obs=obs, var=var, layers={"counts": counts})
    adata.write_h5ad(path)
    return path


@pytest.fixture
def norman_file(tmp_path: Path) -> Callable[..., Path]:
    """A writer of Norman-schema files into a temporary folder (see ``write_norman_file``)."""
    return lambda **sizes: write_norman_file(tmp_path / "norman.h5ad", **sizes)


@pytest.fixture(scope="session")
def norman_132(tmp_path_factory: pytest.TempPathFactory) -> ad.AnnData:
    """A Norman-schema file with 132 combinations (10 cells each), read by the loader."""
    path = tmp_path_factory.mktemp("norman") / "norman.h5ad"
    write_norman_file(path, n_combinations=132, n_cells=10)
    return samsvae.datasets.norman2019(path)


@pytest.fixture
def replogle_file(tmp_path: Path) -> Path:
    """Write a Replogle-schema h5ad: dense counts in X, obs['sgID_AB'], uns['pathways']."""
    pair_ids = [
        "AARS_+_70323216.23-P1P2|AARS_-_70323392.23-P1P2",
        "BB_+_10.1-P1|BB_+_12.1-P1",
        "BB_-_90.1-P2|BB_-_95.1-P2",
        "non-targeting_00001|non-targeting_00002",
        "non-targeting_00003|non-targeting_00004",
    ]
    labels = np.repeat(pair_ids, 4)
    obs = pd.DataFrame({"sgID_AB": labels, "gem_group": 1})
    obs.index = [f"c{i}" for i in range(len(labels))]
    counts = np.random.default_rng(0).poisson(3.0, (len(labels), 5)).astype(np.float32)
    adata = ad.AnnData(counts, obs=obs)
    adata.uns["pathways"] = {"tRNA synthetase": ["AARS"], "other": ["BB"]}
    path = tmp_path / "replogle.h5ad"
    adata.write_h5ad(path)
    return path
