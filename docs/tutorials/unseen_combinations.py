"""
Tutorial 3: predicting combinations the model never saw
=======================================================

SAMS-VAE adds the latent shifts of single perturbations, so it can predict a double knock-out
"A+B" from cells with A and cells with B. Here we hold out some combinations, train on the
rest, and compare the predicted effects with the held-out cells.

Run it from a shell (``--small``: tiny sizes, seconds)::

    python docs/tutorials/unseen_combinations.py [--small] [--out FOLDER]
"""

from __future__ import annotations

from _common import SIMULATION, TRAIN, arguments, save

import samsvae
from samsvae.data import split_combinations
from samsvae.evaluate import ate_metrics, data_average_treatment_effects

args = arguments(__doc__, "unseen_combinations")

adata = samsvae.datasets.simulate(**SIMULATION[args.size], seed=0)

# 1. Hold out a quarter of the combinations: their cells are removed from training.
combinations = list(adata.uns["simulation"]["combinations"])
_, held_out = split_combinations(combinations, held_out_fraction=0.25, seed=0)
is_held_out = adata.obs["perturbation"].isin(held_out).to_numpy()
train, test = adata[~is_held_out].copy(), adata[is_held_out].copy()
print("held-out combinations:", held_out)

# 2. Train on the other cells (singles, controls and the remaining combinations).
samsvae.SAMSVAE.setup_anndata(train, perturbation_key="perturbation", control="control")
model = samsvae.SAMSVAE(train)
model.train(**TRAIN[args.size], seed=0, progress_bar=False)

# 3. Predicted effects of the held-out combinations (never seen together by the model) ...
predicted = model.average_treatment_effects(held_out, n_samples=500, seed=0).X

# 4. ... against the effects observed in their cells, both relative to the control cells.
labels = adata.obs["perturbation"].astype(str).to_numpy()
observed = data_average_treatment_effects(adata.X, labels, held_out, "control")
print("agreement with the held-out cells:", ate_metrics(predicted, observed))
ax = samsvae.pl.ate_scatter(predicted, observed, title="held-out combinations")
save(ax, args.out / "ate_scatter.png")

# 5. Genetic interaction: how far A+B departs from "effect of A + effect of B", per gene.
scores = model.genetic_interactions(held_out, n_samples=30, seed=0)
print(scores.sort_values("score", key=abs, ascending=False).head())
