"""Data drawn from the SAMS-VAE generative process, with the ground truth kept.

z_basal ~ N(0, I_K); masks m_tk ~ Bernoulli(p); effects e_tk = +-N(effect_mean, effect_sd);
z = z_basal + sum_t d_t (e_t * m_t); x from a fixed random nonlinear decoder:
- ``"nb"``: negative binomial counts with mean l * softmax(f(z)), log-normal library sizes l;
- ``"normal"``: f(z) plus Gaussian noise holding ``noise_fraction`` of each gene's variance.
Optionally cells fall into batches, each adding its own per-gene offset to f(z) (a batch effect),
with an assignment that can depend on the perturbation (confounding).
"""

from __future__ import annotations

from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

CONTROL = "control"


def _random_decoder(
    rng: np.random.Generator, n_latent: int, n_genes: int, n_hidden: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w1 = rng.normal(0, 1 / np.sqrt(n_latent), (n_latent, n_hidden))
    b1 = rng.normal(0, 0.5, n_hidden)
    w2 = rng.normal(0, 1 / np.sqrt(n_hidden), (n_hidden, n_genes))
    return w1, b1, w2


def _decode(z: np.ndarray, decoder: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    w1, b1, w2 = decoder
    hidden = z @ w1 + b1
    return np.where(hidden > 0, hidden, 0.2 * hidden) @ w2


def _perturbation_labels(
    rng: np.random.Generator, names: list[str], n_combinations: int
) -> list[str]:
    pairs: set[tuple[int, int]] = set()
    max_pairs = len(names) * (len(names) - 1) // 2
    if n_combinations > max_pairs:
        msg = (
            f"n_combinations={n_combinations} exceeds the {max_pairs} pairs of "
            f"{len(names)} singles."
        )
        raise ValueError(msg)
    while len(pairs) < n_combinations:
        a, b = sorted(rng.choice(len(names), size=2, replace=False))
        pairs.add((int(a), int(b)))
    return [f"{names[a]}+{names[b]}" for a, b in sorted(pairs)]


def simulate(
    *,
    n_perturbations: int = 50,
    n_latent: int = 15,
    n_genes: int = 100,
    n_cells_per_perturbation: int = 200,
    n_control_cells: int = 1000,
    n_combinations: int = 30,
    n_cells_per_combination: int = 200,
    mask_probability: float = 2 / 15,
    effect_mean: float = 5.0,
    effect_sd: float = 0.5,
    likelihood: Literal["nb", "normal"] = "nb",
    noise_fraction: float = 0.2,
    library_size: float = 2000.0,
    dispersion: float = 10.0,
    n_batches: int = 1,
    batch_effect: float = 0.0,
    batch_confounding: float = 0.0,
    seed: int = 0,
) -> ad.AnnData:
    """Simulate a perturbation screen from the SAMS-VAE generative process.

    Parameters
    ----------
    n_perturbations
        Number of single perturbations T (named ``P0``, ``P1``, ...).
    n_latent
        Latent dimensions K of the simulator.
    n_genes
        Number of genes G.
    n_cells_per_perturbation
        Cells per single perturbation.
    n_control_cells
        Unperturbed cells, labelled ``"control"``.
    n_combinations
        Distinct two-perturbation combinations ("P3+P7"), each with ``n_cells_per_combination``.
    n_cells_per_combination
        Cells per combination.
    mask_probability
        Bernoulli probability of each mask entry; every perturbation gets at least one
        active entry.
    effect_mean, effect_sd
        Effect magnitudes are N(effect_mean, effect_sd) with a random sign.
    likelihood
        ``"nb"`` for raw counts (CSR, float32), ``"normal"`` for Gaussian values.
    noise_fraction
        For ``"normal"``: noise variance as a fraction of each gene's total variance.
    library_size
        For ``"nb"``: median library size (log-normal, sd 0.3 on the log scale).
    dispersion
        For ``"nb"``: median inverse dispersion theta of the genes.
    n_batches
        Number of batches (``obs["batch"]``: ``"batch0"``, ...); batch 0 adds nothing to f(z),
        every other batch b adds a per-gene offset delta_b ~ N(0, batch_effect^2).
    batch_effect
        Standard deviation of the batch offsets (on the scale of f(z), i.e. log expression).
    batch_confounding
        c in [0, 1]: each label has a preferred batch (batch 0 for the control, a random one
        for every other label) and its cells land there with probability c + (1 - c) / n_batches,
        elsewhere uniformly. 0 assigns batches independently of the perturbation.
    seed
        Seed of the NumPy generator; the same seed gives the same data.

    Returns
    -------
    AnnData with X (counts or values); ``obs["perturbation"]`` labels; ``obsm["z_basal"]`` and
    ``obsm["z"]`` (true latents); ``uns["simulation"]`` with ``masks`` and ``embeddings``
    (T x K, rows in ``perturbations`` order), ``perturbations``, ``combinations``, settings, and
    the decoder f(z) = leaky_relu(z W1 + b1, 0.2) W2 as ``decoder_w1`` (K x H), ``decoder_b1``
    (H,) and ``decoder_w2`` (H x G); for ``"nb"`` the mean is l * softmax(f(z)). With several
    batches, ``uns["simulation"]["batch_effects"]`` holds delta (n_batches x G).
    """
    if likelihood not in ("nb", "normal"):
        msg = f"likelihood={likelihood!r} is not supported by simulate; use 'nb' or 'normal'."
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    names = [f"P{t}" for t in range(n_perturbations)]
    masks = rng.random((n_perturbations, n_latent)) < mask_probability
    empty = ~masks.any(1)
    masks[empty, rng.integers(0, n_latent, empty.sum())] = True
    signs = rng.choice([-1.0, 1.0], size=(n_perturbations, n_latent))
    embeddings = signs * rng.normal(effect_mean, effect_sd, (n_perturbations, n_latent))
    combinations = _perturbation_labels(rng, names, n_combinations)

    labels = np.array(
        [CONTROL] * n_control_cells
        + [n for n in names for _ in range(n_cells_per_perturbation)]
        + [c for c in combinations for _ in range(n_cells_per_combination)]
    )
    position = {n: t for t, n in enumerate(names)}
    dosage = np.zeros((len(labels), n_perturbations))
    for label in np.unique(labels):
        if label != CONTROL:
            rows = labels == label
            for part in label.split("+"):
                dosage[rows, position[part]] = 1.0
    z_basal = rng.normal(size=(len(labels), n_latent))
    z = z_basal + dosage @ (embeddings * masks)
    decoder = _random_decoder(rng, n_latent, n_genes, n_hidden=2 * n_genes)
    signal = _decode(z, decoder)
    batches, batch_effects = _batches(
        labels, n_batches, batch_effect, batch_confounding, n_genes, seed
    )
    signal = signal + batch_effects[batches]
    if likelihood == "nb":
        x = _nb_counts(rng, signal, library_size, dispersion)
    else:
        noise_var = noise_fraction / (1 - noise_fraction) * signal.var(0)
        x = (signal + rng.normal(size=signal.shape) * np.sqrt(noise_var)).astype(np.float32)

    adata = ad.AnnData(
        X=x,
        obs=pd.DataFrame(
            {"perturbation": pd.Categorical(labels)},
            index=[f"cell{i}" for i in range(len(labels))],
        ),
        var=pd.DataFrame(index=[f"gene{g}" for g in range(n_genes)]),
    )
    if n_batches > 1:
        adata.obs["batch"] = pd.Categorical([f"batch{b}" for b in batches])
    adata.obsm["z_basal"] = z_basal.astype(np.float32)
    adata.obsm["z"] = z.astype(np.float32)
    adata.uns["simulation"] = {
        "masks": masks.astype(np.int8),
        "embeddings": embeddings.astype(np.float32),
        "perturbations": np.array(names),
        "combinations": np.array(combinations, dtype=str),
        "likelihood": likelihood,
        "seed": seed,
        **{f"decoder_{name}": w for name, w in zip(("w1", "b1", "w2"), decoder, strict=True)},
    }
    if n_batches > 1:
        adata.uns["simulation"]["batch_effects"] = batch_effects.astype(np.float32)
    return adata


def _batches(
    labels: np.ndarray,
    n_batches: int,
    batch_effect: float,
    confounding: float,
    n_genes: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Batch of each cell (n_cells,) and the batch offsets (n_batches, n_genes).

    Drawn from a generator of their own, so adding batches changes none of the other draws.
    """
    if n_batches < 1 or not 0 <= confounding <= 1 or batch_effect < 0:
        msg = (
            f"n_batches={n_batches}, batch_effect={batch_effect}, batch_confounding="
            f"{confounding}: need n_batches >= 1, batch_effect >= 0, 0 <= confounding <= 1."
        )
        raise ValueError(msg)
    rng = np.random.default_rng([seed, 1])
    effects = rng.normal(0, batch_effect, (n_batches, n_genes))
    effects[0] = 0.0
    batches = np.zeros(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        preferred = 0 if label == CONTROL else rng.integers(n_batches)
        shares = np.full(n_batches, (1 - confounding) / n_batches)
        shares[preferred] += confounding
        batches[rows] = rng.choice(n_batches, size=len(rows), p=shares)
    return batches, effects


def _nb_counts(
    rng: np.random.Generator, signal: np.ndarray, library_size: float, dispersion: float
) -> sp.csr_matrix:
    logits = signal - signal.max(1, keepdims=True)
    proportions = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    library = library_size * np.exp(rng.normal(0, 0.3, (signal.shape[0], 1)))
    theta = dispersion * np.exp(rng.normal(0, 0.5, signal.shape[1]))
    rate = rng.gamma(theta, library * proportions / theta)
    return sp.csr_matrix(rng.poisson(rate).astype(np.float32))
