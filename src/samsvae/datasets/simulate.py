"""Data drawn from the SAMS-VAE generative process, with the ground truth kept.

z_basal ~ N(0, I_K); masks m_tk ~ Bernoulli(p); effects e_tk = +-N(effect_mean, effect_sd);
z = z_basal + sum_t d_t (e_t * m_t); x from a fixed random nonlinear decoder:
- ``"nb"``: negative binomial counts with mean l * softmax(f(z)), log-normal library sizes l;
- ``"normal"``: f(z) plus Gaussian noise holding ``noise_fraction`` of each gene's variance.
Optionally cells fall into batches, each adding its own per-gene offset to f(z) (a batch effect),
with an assignment that can depend on the perturbation (confounding).

``simulate_realistic`` draws a shallow Perturb-seq screen from the same process, with a direct
effect on one target gene per perturbation and perturbations that do nothing, at the depth,
sparsity and effect sizes of real screens.
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


def _labels_and_dosage(
    names: list[str],
    combinations: list[str],
    n_control_cells: int,
    n_cells_per_perturbation: int,
    n_cells_per_combination: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's label, controls first, then singles, then combinations, and the dosage
    matrix D (n_cells, n_perturbations) with columns in ``names`` order."""
    labels = np.array(
        [CONTROL] * n_control_cells
        + [n for n in names for _ in range(n_cells_per_perturbation)]
        + [c for c in combinations for _ in range(n_cells_per_combination)]
    )
    position = {n: t for t, n in enumerate(names)}
    dosage = np.zeros((len(labels), len(names)))
    for label in np.unique(labels):
        if label != CONTROL:
            rows = labels == label
            for part in label.split("+"):
                dosage[rows, position[part]] = 1.0
    return labels, dosage


def _screen(
    x: np.ndarray | sp.csr_matrix, labels: np.ndarray, z_basal: np.ndarray, z: np.ndarray
) -> ad.AnnData:
    """AnnData with X, ``obs["perturbation"]``, genes ``gene0``... and the true latents."""
    adata = ad.AnnData(
        X=x,
        obs=pd.DataFrame(
            {"perturbation": pd.Categorical(labels)},
            index=[f"cell{i}" for i in range(len(labels))],
        ),
        var=pd.DataFrame(index=[f"gene{g}" for g in range(x.shape[1])]),
    )
    adata.obsm["z_basal"] = z_basal.astype(np.float32)
    adata.obsm["z"] = z.astype(np.float32)
    return adata


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

    labels, dosage = _labels_and_dosage(
        names,
        combinations,
        n_control_cells,
        n_cells_per_perturbation,
        n_cells_per_combination,
    )
    z_basal = rng.normal(size=(len(labels), n_latent))
    z = z_basal + dosage @ (embeddings * masks)
    decoder = _random_decoder(rng, n_latent, n_genes, n_hidden=2 * n_genes)
    signal = _decode(z, decoder)
    batches, batch_effects = _batches(
        labels, n_batches, batch_effect, batch_confounding, n_genes, seed
    )
    signal = signal + batch_effects[batches]
    if likelihood == "nb":
        x = _nb_counts(rng, signal, library_size, dispersion)[0]
    else:
        noise_var = noise_fraction / (1 - noise_fraction) * signal.var(0)
        x = (signal + rng.normal(size=signal.shape) * np.sqrt(noise_var)).astype(np.float32)

    adata = _screen(x, labels, z_basal, z)
    if n_batches > 1:
        adata.obs["batch"] = pd.Categorical([f"batch{b}" for b in batches])
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


# Fixed settings of simulate_realistic, tuned so that its screens fall among the real screens in
# benchmarks/science/calibrate_simulation.py (results/simulation_calibration.md).
_GENE_SPREAD = 2.0  # sd of the genes' baseline log expression
_DECODER_SCALE = 0.5  # scale of f(z): cell-to-cell variation and the programs' effects
_LIBRARY_SD = 0.55  # sd of the log library size
_DISPERSION = 2.0  # median inverse dispersion theta of the genes
_MASK_PROBABILITY = 0.15
_EFFECT_MEAN, _EFFECT_SD = 2.0, 0.5
_KNOCKDOWN_LOG2, _KNOCKDOWN_SPREAD = 1.0, 0.5  # target log2 FC -exp(N(log 1.0, 0.5^2))
_TARGET_POOL = 0.25  # targets come from this most-expressed share of the genes
KINDS = ("null", "target", "program")


def simulate_realistic(
    *,
    n_perturbations: int = 24,
    n_combinations: int = 10,
    n_genes: int = 500,
    n_latent: int = 10,
    n_cells_per_perturbation: int = 100,
    n_cells_per_combination: int = 100,
    n_control_cells: int = 800,
    null_fraction: float = 0.25,
    target_only_fraction: float = 0.35,
    library_size: float = 150.0,
    seed: int = 0,
    sample: int = 0,
) -> ad.AnnData:
    """Simulate a shallow Perturb-seq screen: few counts, sparse, mostly small effects.

    The SAMS-VAE process of :func:`simulate` with a direct effect on one target gene per
    perturbation, null perturbations and the depth, sparsity and effect sizes of real screens
    (Papalexi 2021, Gasperini 2019, McFaline-Figueroa 2023; see
    ``benchmarks/science/calibrate_simulation.py``). With gene baselines b_g ~ N(0, 2^2),
    a target gene g_t and a knock-down k_t (log2) per perturbation t:

    - z = z_basal + sum_t d_t (e_t * m_t), z_basal ~ N(0, I_K);
    - the mean of gene g is l * softmax_g(b + f(z) + ln 2 * sum_t d_t k_t [g = g_t]), with
      log-normal library sizes l (median ``library_size``, sd 0.55 on the log scale) and
      negative binomial counts (gene inverse dispersions theta_g around 2).

    Each perturbation is of one kind: ``"null"`` (no effect: k_t = 0 and m_t = 0, a guide
    that does nothing), ``"target"`` (only its target gene changes, k_t = -exp(N(0, 0.5^2)),
    median -1, so about a halving) or ``"program"`` (the knock-down plus a latent shift:
    masks m_tk ~ Bernoulli(0.15), at least one per perturbation, effects +-N(2, 0.5)).
    Perturbations are named after their target genes (``"gene17"``), drawn without
    replacement among the most expressed quarter of the genes, so each name is a gene of
    ``var_names``. Combinations pair two perturbations that are not null ("gene3+gene17");
    their effects add in the latent space and on the target genes.

    Parameters
    ----------
    n_perturbations
        Number of single perturbations T; at most a quarter of ``n_genes`` (distinct targets).
    n_combinations
        Distinct two-perturbation combinations, each with ``n_cells_per_combination`` cells.
    n_genes
        Number of genes G (``gene0``, ``gene1``, ...).
    n_latent
        Latent dimensions K.
    n_cells_per_perturbation
        Cells per single perturbation.
    n_cells_per_combination
        Cells per combination.
    n_control_cells
        Unperturbed cells, labelled ``"control"``.
    null_fraction
        Share of the perturbations without any effect (rounded to a whole number).
    target_only_fraction
        Share of the perturbations that act on their target gene only (rounded); the rest
        also shift the latent state.
    library_size
        Median number of counts per cell over the G genes.
    seed
        Seed of the NumPy generator; the same seed gives the same data.
    sample
        Which sample of cells to draw from the screen of ``seed``: another number gives fresh
        cells of the same truth (the truth never depends on ``sample`` or on the numbers of
        cells), e.g. a large independent sample whose effects are the true ones.

    Returns
    -------
    AnnData with raw counts in X (CSR, float32); ``obs["perturbation"]``; ``obsm["z_basal"]``
    and ``obsm["z"]``; ``uns["simulation"]`` with the keys of :func:`simulate` (``masks``,
    ``embeddings``, ``perturbations``, ``combinations``, ``likelihood``, ``seed`` and the
    decoder, whose ``decoder_w2`` includes the scale of f) and the truth of this regime:
    ``target_genes`` (T gene names), ``target_log2_fold_changes`` k (T,), ``kinds`` (T, one
    of ``"null"``, ``"target"``, ``"program"``), ``null`` (T, bool), ``gene_baselines`` b
    (G,), ``dispersions`` theta (G,), ``library_size`` and ``regime`` (``"realistic"``).

    Raises
    ------
    ValueError
        If the fractions are outside [0, 1] or sum above 1, if the targets cannot be distinct
        genes of the expressed quarter, or if there are fewer pairs of non-null perturbations
        than ``n_combinations``.

    Examples
    --------
    >>> adata = simulate_realistic(seed=0)
    >>> truth = adata.uns["simulation"]
    >>> bool(set(truth["target_genes"]) <= set(adata.var_names))
    True
    """
    n_pool = round(_TARGET_POOL * n_genes)
    _check_realistic(n_perturbations, n_genes, n_pool, null_fraction, target_only_fraction)
    rng = np.random.default_rng(seed)
    gene_baselines = rng.normal(0, _GENE_SPREAD, n_genes)
    targets = rng.choice(np.argsort(-gene_baselines)[:n_pool], n_perturbations, replace=False)
    names = [f"gene{g}" for g in targets]
    n_null = round(null_fraction * n_perturbations)
    n_target = round(target_only_fraction * n_perturbations)
    counts = [n_null, n_target, n_perturbations - n_null - n_target]
    kinds = np.array(KINDS)[rng.permutation(np.repeat([0, 1, 2], counts))]
    masks = rng.random((n_perturbations, n_latent)) < _MASK_PROBABILITY
    empty = ~masks.any(1)
    masks[empty, rng.integers(0, n_latent, empty.sum())] = True
    masks[kinds != "program"] = False
    signs = rng.choice([-1.0, 1.0], size=(n_perturbations, n_latent))
    embeddings = signs * rng.normal(_EFFECT_MEAN, _EFFECT_SD, (n_perturbations, n_latent))
    knockdown = -np.exp(rng.normal(np.log(_KNOCKDOWN_LOG2), _KNOCKDOWN_SPREAD, n_perturbations))
    knockdown[kinds == "null"] = 0.0
    active = [n for n, kind in zip(names, kinds, strict=True) if kind != "null"]
    combinations = _perturbation_labels(rng, active, n_combinations)

    w1, b1, w2 = _random_decoder(rng, n_latent, n_genes, n_hidden=2 * n_genes)
    decoder = (w1, b1, _DECODER_SCALE * w2)
    dispersions = _DISPERSION * np.exp(rng.normal(0, 0.5, n_genes))

    # The cells come from a stream of their own: the truth above does not depend on how many
    # cells are drawn, so a larger sample of the same screen gives its effects more exactly.
    cells = np.random.default_rng([seed, 2] if sample == 0 else [seed, 3, sample])
    labels, dosage = _labels_and_dosage(
        names, combinations, n_control_cells, n_cells_per_perturbation, n_cells_per_combination
    )
    z_basal = cells.normal(size=(len(labels), n_latent))
    z = z_basal + dosage @ (embeddings * masks)
    direct = np.zeros((n_perturbations, n_genes))
    direct[np.arange(n_perturbations), targets] = np.log(2) * knockdown
    signal = gene_baselines + _decode(z, decoder) + dosage @ direct
    x, _ = _nb_counts(
        cells, signal, library_size, _DISPERSION, library_sd=_LIBRARY_SD, theta=dispersions
    )

    adata = _screen(x, labels, z_basal, z)
    adata.uns["simulation"] = {
        "masks": masks.astype(np.int8),
        "embeddings": embeddings.astype(np.float32),
        "perturbations": np.array(names),
        "combinations": np.array(combinations, dtype=str),
        "likelihood": "nb",
        "seed": seed,
        **{f"decoder_{name}": w for name, w in zip(("w1", "b1", "w2"), decoder, strict=True)},
        "target_genes": np.array(names),
        "target_log2_fold_changes": knockdown.astype(np.float32),
        "kinds": kinds.astype(str),
        "null": kinds == "null",
        "gene_baselines": gene_baselines.astype(np.float32),
        "dispersions": dispersions.astype(np.float32),
        "library_size": library_size,
        "regime": "realistic",
    }
    return adata


def _check_realistic(
    n_perturbations: int,
    n_genes: int,
    n_pool: int,
    null_fraction: float,
    target_only_fraction: float,
) -> None:
    """Raise ValueError for settings :func:`simulate_realistic` cannot draw."""
    if not (0 <= null_fraction <= 1 and 0 <= target_only_fraction <= 1) or (
        null_fraction + target_only_fraction > 1
    ):
        msg = (
            f"null_fraction={null_fraction}, target_only_fraction={target_only_fraction}: "
            "each must lie in [0, 1] and together sum to at most 1."
        )
        raise ValueError(msg)
    if n_perturbations > n_pool:
        msg = (
            f"n_perturbations={n_perturbations} needs distinct targets among the {n_pool} most "
            f"expressed genes of n_genes={n_genes}; use n_genes >= {4 * n_perturbations}."
        )
        raise ValueError(msg)


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
    rng: np.random.Generator,
    signal: np.ndarray,
    library_size: float,
    dispersion: float,
    library_sd: float = 0.3,
    theta: np.ndarray | None = None,
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Counts (CSR, float32) and the genes' inverse dispersions theta (n_genes,); ``theta``
    given is used as it is, else drawn around ``dispersion``."""
    logits = signal - signal.max(1, keepdims=True)
    proportions = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    library = library_size * np.exp(rng.normal(0, library_sd, (signal.shape[0], 1)))
    if theta is None:
        theta = dispersion * np.exp(rng.normal(0, 0.5, signal.shape[1]))
    rate = rng.gamma(theta, library * proportions / theta)
    return sp.csr_matrix(rng.poisson(rate).astype(np.float32)), theta
