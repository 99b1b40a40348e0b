"""Replogle et al. (2022), K562 CRISPRi: the SAMS-VAE paper's filtered subset."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from samsvae.datasets.cache import read_dataset

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    import anndata as ad

GUIDE_PAIR_KEY = "sgID_AB"
CONTROL = "control"


def replogle2022_k562(path: str | Path | None = None) -> ad.AnnData:
    """Load the paper's filtered K562 CRISPRi screen in samsvae's canonical form.

    About 118k cells x 1.2k genes and 722 guide pairs (one per cell) in the published file.

    Parameters
    ----------
    path
        A local copy of the authors' ``replogle.h5ad``. ``None`` downloads it once into the cache
        directory (``$SAMSVAE_DATA_DIR``, see :mod:`samsvae.datasets.cache`) and reuses it.

    Returns
    -------
    AnnData ready for ``setup_anndata`` with its defaults:

    - ``X``: the raw counts as float32 CSR;
    - ``obs["perturbation"]``: ``"control"`` for every guide-pair id containing
      ``"non-targeting"`` (all non-targeting pairs merged), else one label per guide pair;
    - ``obs["sgID_AB"]`` and the other source columns, ``var`` and ``uns`` (e.g.
      ``uns["pathways"]``) unchanged.

    Raises
    ------
    ValueError
        ``obs["sgID_AB"]`` is missing.
    ConnectionError
        ``path=None``, the file is not cached and cannot be downloaded.

    Notes
    -----
    As in the paper, each guide pair stays a perturbation of its own. Its label is the target
    gene when the id names one gene (``"AARS_+_70323216.23-P1P2|AARS_+_70323441.23-P1P2"`` ->
    ``"AARS"``, the part of each guide id before its first ``_``) and no other pair targets that
    gene; pairs sharing a gene are numbered in the order of their ids (``"GENE_1"``,
    ``"GENE_2"``); an id naming several genes keeps the id itself, with ``"+"`` written
    ``"plus"`` so that it never reads as a combination.
    """
    adata = read_dataset("replogle2022_k562", path)
    if GUIDE_PAIR_KEY not in adata.obs:
        msg = (
            f"obs[{GUIDE_PAIR_KEY!r}] (guide-pair id per cell) is missing; obs columns are "
            f"{list(adata.obs.columns)}. Is this the Replogle K562 file?"
        )
        raise ValueError(msg)
    pair_ids = adata.obs[GUIDE_PAIR_KEY].astype(str)
    is_control = pair_ids.str.contains("non-targeting", regex=False).to_numpy()
    names = guide_pair_labels(pair_ids[~is_control].unique())
    labels = np.where(is_control, CONTROL, pair_ids.map(names).to_numpy())
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    adata.obs["perturbation"] = pd.Categorical(labels)
    return adata


def guide_pair_labels(pair_ids: Iterable[str]) -> dict[str, str]:
    """Gene-level label of each guide-pair id, one label per pair (rules in the Notes).

    Parameters
    ----------
    pair_ids
        Distinct guide-pair ids, guides joined by ``"|"``.

    Returns
    -------
    Mapping from each id to its label.

    Notes
    -----
    The label is the single gene the id names when no other id names it, ``GENE_k``
    (k = 1, 2, ... in the order of the sorted ids) when several do, and otherwise the id with
    ``"+"`` replaced by ``"plus"``.

    Examples
    --------
    >>> guide_pair_labels(["A_+_1|A_-_2", "B_+_1-P1|B_+_1-P1", "B_+_9-P2|B_+_9-P2", "C+D"])
    {'A_+_1|A_-_2': 'A', 'B_+_1-P1|B_+_1-P1': 'B_1', 'B_+_9-P2|B_+_9-P2': 'B_2', 'C+D': 'CplusD'}
    """
    ids = sorted(set(pair_ids))
    genes = {pair: {guide.split("_", 1)[0] for guide in pair.split("|")} for pair in ids}
    gene_of = {pair: next(iter(g)) for pair, g in genes.items() if len(g) == 1 and "" not in g}
    n_pairs = Counter(gene_of.values())
    seen: Counter[str] = Counter()
    labels = {}
    for pair in ids:
        gene = gene_of.get(pair)
        if gene is None or "+" in gene:
            labels[pair] = pair.replace("+", "plus")
        elif n_pairs[gene] == 1:
            labels[pair] = gene
        else:
            seen[gene] += 1
            labels[pair] = f"{gene}_{seen[gene]}"
    return labels
