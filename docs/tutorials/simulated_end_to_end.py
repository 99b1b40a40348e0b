"""
Tutorial 1: a simulated screen end to end
=========================================

Simulate a CRISPR screen whose true answer we know, fit SAMS-VAE, read which latent programs
each perturbation switches on (the masks), estimate its effect on every gene (the average
treatment effect, ATE) with uncertainty, then save and reload the model.

Run it from a shell (``--small``: tiny sizes, seconds)::

    python docs/tutorials/simulated_end_to_end.py [--small] [--out FOLDER]
"""

from __future__ import annotations

import numpy as np
from _common import SIMULATION, TRAIN, arguments, save

import samsvae
from samsvae.evaluate import mask_recovery

args = arguments(__doc__, "simulated_end_to_end")

# 1. Simulate: cells x genes counts in adata.X, each cell's label in obs["perturbation"]
#    ("control", a single target "P3", or a two-gene combination "P3+P7"). The simulator
#    keeps the truth (which latent programs each perturbation affects) in uns["simulation"].
adata = samsvae.datasets.simulate(**SIMULATION[args.size], seed=0)
print(adata)

# 2. Tell the model where the labels are and which label is the unperturbed control.
samsvae.SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control="control")

# 3. Train with the defaults: the number of latent programs, the network, the learning rates
#    and the budget are chosen from the screen (model.config and model.train_settings show
#    them). 10% of the cells are held out to pick the best epoch.
model = samsvae.SAMSVAE(adata)
model.train(**TRAIN[args.size], seed=0, progress_bar=False)

# 4. Masks: probability that perturbation t affects latent program k. Compare the confident
#    ones (> 0.5) with the simulator's truth; rows are matched by perturbation name.
masks = model.get_mask_probabilities()  # DataFrame, perturbations x latent programs
truth_row = {str(p): i for i, p in enumerate(adata.uns["simulation"]["perturbations"])}
true_masks = np.asarray(adata.uns["simulation"]["masks"])[[truth_row[p] for p in masks.index]]
print("mask recovery:", mask_recovery(masks.to_numpy() > 0.5, true_masks))
save(samsvae.pl.mask_heatmap(masks), args.out / "masks.png")

# 5. Effects on genes: the ATE of a perturbation is the change of the mean (normalised,
#    log-transformed) expression against controls; intervals say how sure the model is.
targets = list(masks.index[:3])
ate = model.average_treatment_effects(targets, n_samples=200, seed=0)  # AnnData, targets x genes
intervals = model.treatment_effect_intervals(targets, level=0.9, seed=0)
width = intervals.layers["upper"] - intervals.layers["lower"]
print(f"ATE of {targets[0]}: largest |effect| {np.abs(ate.X[0]).max():.3f}")
print(f"mean width of the 90% intervals: {width.mean():.3f}")

# 6. Save and reload: weights (safetensors) and settings (JSON) in a folder.
model.save(args.out / "model", overwrite=True)
reloaded = samsvae.SAMSVAE.load(args.out / "model", adata=adata)
same = np.allclose(reloaded.get_mask_probabilities().to_numpy(), masks.to_numpy())
print("reloaded model gives the same masks:", same)
