"""
Tutorial 4: reading the masks
=============================

Each perturbation switches on a few latent programs (its mask). Perturbations that act on
the same programs are likely to share a mechanism; the genes a program moves say what it is.

Run it from a shell (``--small``: tiny sizes, seconds)::

    python docs/tutorials/reading_masks.py [--small] [--out FOLDER]
"""

from __future__ import annotations

from _common import SIMULATION, TRAIN, arguments, save

import samsvae

args = arguments(__doc__, "reading_masks")

adata = samsvae.datasets.simulate(**SIMULATION[args.size], seed=0)
samsvae.SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control="control")
model = samsvae.SAMSVAE(adata)
model.train(**TRAIN[args.size], seed=0, progress_bar=False)

# 1. q(mask = 1): for each perturbation (row) and latent program (column), the probability
#    that the perturbation shifts that program.
masks = model.get_mask_probabilities()
print("programs per perturbation (probability > 0.5):")
print((masks > 0.5).sum(axis=1).describe())

# 2. Group perturbations by the similarity of their latent shifts (cosine of E[e * m]),
#    then draw the masks with the perturbations of a cluster next to each other.
n_clusters = max(2, len(masks) // 6)
clusters = model.get_perturbation_clusters(n_clusters=n_clusters)
print(clusters.groupby("cluster").groups)
save(samsvae.pl.mask_heatmap(masks, order=clusters.index), args.out / "masks_by_cluster.png")

# 3. What a program does: the genes whose expression changes most along each latent
#    dimension (log expected expression, a unit step from the average cell).
effects = model.get_latent_gene_effects(n_top=10)
busiest = masks.sum(axis=0).idxmax()  # the program switched on by the most perturbations
print(effects[effects["latent"] == busiest])
save(samsvae.pl.latent_program_bars(effects, busiest), args.out / f"{busiest}_genes.png")

# 4. When the masks are dense (many more active entries than expected), the latent axes are
#    mixtures of mechanisms. Rotate them so that each perturbation loads on few programs
#    (varimax of E[e * m]) and read the genes along the rotated programs instead.
loadings, directions = model.get_latent_programs(rotation="varimax")
print("perturbations loading most on program0:")
print(loadings["program0"].abs().sort_values(ascending=False).head())
program_effects = model.get_latent_gene_effects(n_top=10, rotation="varimax")
save(samsvae.pl.latent_program_bars(program_effects, "program0"), args.out / "program0_genes.png")
