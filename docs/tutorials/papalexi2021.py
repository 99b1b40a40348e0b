"""
Tutorial 2: a real CRISPR knock-out screen (Papalexi et al. 2021, THP-1 cells)
==============================================================================

25 genes knocked out in THP-1 cells, 299 measured genes, non-targeting guides as controls.
We keep cells whose guide assignment is clear, fit SAMS-VAE, and check that knocking out a
gene that is also measured lowers its own expression.

Run it from a shell (``--small``: tiny sizes, seconds)::

    python docs/tutorials/papalexi2021.py [--small] [--out FOLDER]
"""

from __future__ import annotations

import sys
from pathlib import Path

import anndata as ad
import numpy as np
from _common import TRAIN, arguments, save

import samsvae
from samsvae.evaluate import data_average_treatment_effects

# The screen sits in ../shared/data beside the repository (argv[0] is this script's path, also
# when the documentation build runs it).
REPOSITORY = Path(sys.argv[0]).resolve().parents[2]
DATA = REPOSITORY.parent / "shared/data/papalexi2021/papalexi2021_thp1_lowmoi.h5ad"
args = arguments(__doc__, "papalexi2021")
if not DATA.is_file():
    sys.exit(f"{DATA} is missing; see its README.txt for how to build it.")

# 1. Raw UMI counts; obs["perturbation"] is the target gene of the cell's guide or
#    "non-targeting". Keep cells where one guide has at least 80% of the guide UMIs.
adata = ad.read_h5ad(DATA)
adata = adata[adata.obs["grna_umi_frac"] >= 0.8].copy()
if args.small:  # a random subsample of cells, enough to run in seconds
    rows = np.random.default_rng(0).choice(adata.n_obs, size=2000, replace=False)
    adata = adata[np.sort(rows)].copy()
print(adata)

# 2. Fit: the control label is "non-targeting".
samsvae.SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control="non-targeting")
model = samsvae.SAMSVAE(adata)
model.train(**TRAIN[args.size], seed=0, progress_bar=False)

# 3. Sanity check: targets that are also measured genes should go down when knocked out.
#    Model ATE at the data's sequencing depth (these cells have few UMIs) vs observed ATE.
#    With --small the model has trained for 3 epochs only: read the full run's numbers.
measured = [t for t in model.design.perturbations if t in set(adata.var_names)]
depth = float(np.median(np.asarray(adata.X.sum(axis=1)).ravel()))
model_ate = model.average_treatment_effects(
    measured, n_samples=200, library_size=depth, seed=0
).to_df()
labels = adata.obs["perturbation"].astype(str).to_numpy()
observed = data_average_treatment_effects(adata.X, labels, measured, "non-targeting")
genes = list(adata.var_names)
for row, target in enumerate(measured):
    own = genes.index(target)
    print(
        f"{target:>9}: model {model_ate.loc[target, target]:+.3f}, "
        f"observed {observed[row, own]:+.3f}"
    )
ax = samsvae.pl.ate_scatter(model_ate.to_numpy(), observed, title="knock-outs, all genes")
save(ax, args.out / "ate_scatter.png")
