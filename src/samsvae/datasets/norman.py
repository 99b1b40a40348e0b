"""Norman et al. (2019), K562 CRISPRa singles and two-gene combinations."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from samsvae.datasets.cache import read_dataset

if TYPE_CHECKING:
    from pathlib import Path

    import anndata as ad

SOURCE_GUIDE_COLUMNS = ("guide_identity", "guide_ids")
CONTROL = "control"


def norman2019(path: str | Path | None = None, *, highly_variable: bool = True) -> ad.AnnData:
    """Load the Norman CRISPRa screen (singles and combinations) in samsvae's canonical form.

    Parameters
    ----------
    path
        A local copy of the sc-pert "Norman processed" h5ad (or the SAMS-VAE authors'
        ``norman.h5ad``, same schema). ``None`` downloads it once into the cache directory
        (``$SAMSVAE_DATA_DIR``, see :mod:`samsvae.datasets.cache`) and reuses it.
    highly_variable
        Keep only the genes marked in the file's precomputed ``var["highly_variable"]``.

    Returns
    -------
    AnnData ready for ``setup_anndata`` with its defaults:

    - ``X``: the raw counts of ``layers["counts"]`` as float32 CSR (the layer is removed, not
      duplicated); the file's log-normalised ``X`` moves to ``layers["log_normalized"]``;
    - ``obs["perturbation"]``: ``"control"`` for cells with no ``guide_*`` indicator set, else
      the targeted genes, sorted and joined by ``"+"`` (``"CEBPA+KLF1"``);
    - ``obs["guide_identity"]``, ``obs["guide_ids"]``, the indicator columns and every other
      source column unchanged.

    Raises
    ------
    ValueError
        ``layers["counts"]``, ``var["highly_variable"]`` (with ``highly_variable=True``) or the
        ``guide_*`` indicator columns are missing, or an indicator holds values other than 0/1.
    ConnectionError
        ``path=None``, the file is not cached and cannot be downloaded.

    Notes
    -----
    The indicator columns are every ``obs`` column whose name contains ``"guide_"`` except
    ``guide_identity`` and ``guide_ids``; the gene is the name with its first ``"guide_"``
    removed (``"guide_KLF1"`` -> ``"KLF1"``).
    """
    adata = read_dataset("norman2019", path)
    if "counts" not in adata.layers:
        msg = (
            f"layers['counts'] (raw counts) is missing; layers are {list(adata.layers)}. "
            "Is this the Norman processed file?"
        )
        raise ValueError(msg)
    if highly_variable:
        if "highly_variable" not in adata.var:
            msg = (
                "var['highly_variable'] is missing; pass highly_variable=False to keep all genes."
            )
            raise ValueError(msg)
        adata = adata[:, adata.var["highly_variable"].to_numpy(dtype=bool)].copy()
    adata.obs["perturbation"] = pd.Categorical(guide_labels(adata.obs))
    adata.layers["log_normalized"] = adata.X
    adata.X = sp.csr_matrix(adata.layers.pop("counts"), dtype=np.float32)
    return adata


def guide_labels(obs: pd.DataFrame) -> np.ndarray:
    """Perturbation label of each cell from its 0/1 ``guide_*`` indicator columns.

    Parameters
    ----------
    obs
        Cell annotations with one indicator column per targeted gene (see
        :func:`norman2019`, Notes).

    Returns
    -------
    (n_cells,) array of labels: ``"control"`` or sorted gene names joined by ``"+"``.

    Examples
    --------
    >>> obs = pd.DataFrame({"guide_identity": ["x", "y", "z"], "guide_B": [1, 0, 1],
    ...                     "guide_A": [0, 0, 1]})
    >>> guide_labels(obs).tolist()
    ['B', 'control', 'A+B']
    """
    columns = [c for c in obs.columns if "guide_" in c and c not in SOURCE_GUIDE_COLUMNS]
    if not columns:
        msg = f"obs has no 0/1 'guide_<gene>' indicator columns; columns are {list(obs.columns)}."
        raise ValueError(msg)
    genes = np.array([c.replace("guide_", "", 1).strip("_") for c in columns])
    order = np.argsort(genes)
    indicators = obs[columns].to_numpy(dtype=float)[:, order]
    if not np.isin(indicators, (0, 1)).all():
        msg = f"The indicator columns {columns} must hold only 0 and 1 (or booleans)."
        raise ValueError(msg)
    patterns, inverse = np.unique(indicators.astype(bool), axis=0, return_inverse=True)
    names = ["+".join(genes[order][row]) or CONTROL for row in patterns]
    return np.asarray(names, dtype=object)[inverse.ravel()]
