r"""Interpretation of a fitted model: what the global variables say about the perturbations.

- Posterior summaries of the globals: q(m_tk = 1), the mean and a central credible interval of
  e_tk, and E_q[e_tk m_tk], the expected latent shift (closed form for mean-field guides,
  Monte-Carlo for the correlated guide, where q(e_t | m_t) depends on the sampled mask).
- Perturbation similarity in the sparse latent space (cosine of E_q[e_t * m_t] rows, or Jaccard of
  binary masks) and average-linkage hierarchical clustering into programs (scipy).
- The genes each latent dimension moves: the decoder's response f(s e_k) - f(0) to a step s along
  dimension k at the basal mean z = 0, with f the log expected normalised expression
  (log softmax of the decoder logits) for count likelihoods, the expected value for ``normal``;
  or along the directions of latent programs: the varimax rotation of E_q[e_t * m_t] (Kaiser 1958),
  the orthonormal basis in which the perturbation shifts are sparse.
- Gene-set enrichment: one-sided hypergeometric test (Fisher's exact test for over-representation),
  Benjamini-Hochberg adjusted over every (query, gene set) pair of the table.
- Genetic interactions of two-perturbation combinations: GI(A+B) = ATE(A+B) - ATE(A) - ATE(B) per
  gene, with a bootstrap over cells (data) or over posterior draws of the globals (model).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from scipy.cluster.hierarchy import fcluster, leaves_list, linkage
from scipy.spatial.distance import squareform
from scipy.stats import false_discovery_control, hypergeom

from samsvae.evaluate.ate import (
    PERTURBSEQ_SCALE,
    ATEMethod,
    model_average_treatment_effect_draws,
    transformed_cells_of,
)
from samsvae.models.cpa_vae import UnmaskedGuide
from samsvae.models.guides import MeanFieldGuide, mean_field_embedding_distribution

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from torch import nn

    from samsvae.models import SAMSVAEModule

SimilarityMetric = Literal["cosine", "jaccard"]
SIMILARITY_METRICS = ("cosine", "jaccard")


# --- posterior summaries of the global variables ----------------------------------------------
@dataclass(frozen=True)
class GlobalSummary:
    """Posterior summaries of the global variables, returned by :func:`summarise_globals`.

    Parameters
    ----------
    mask_probabilities
        Mask inclusion probabilities q(m_tk = 1), (n_perturbations, n_latent) float64.
    embedding_mean
        Mean of q(e_tk) (for the correlated guide, of its marginal over the masks),
        (n_perturbations, n_latent) float64.
    embedding_lower
        Lower bound of the central ``level`` credible interval of q(e_tk), same shape.
    embedding_upper
        Upper bound of that interval, same shape.
    shift_mean
        E_q[e_tk m_tk], the expected latent shift, same shape.
    level
        Probability mass of the credible interval, e.g. 0.9.
    closed_form
        True when the values are exact (mean-field guides), False when they are Monte-Carlo
        estimates.
    """

    mask_probabilities: np.ndarray
    embedding_mean: np.ndarray
    embedding_lower: np.ndarray
    embedding_upper: np.ndarray
    shift_mean: np.ndarray
    level: float
    closed_form: bool


@torch.no_grad()
def summarise_globals(
    guide: nn.Module,
    n_perturbations: int,
    *,
    level: float = 0.9,
    n_samples: int = 1000,
    chunk_size: int = 64,
    generator: torch.Generator | None = None,
) -> GlobalSummary:
    """Summarise the posterior q(M) q(E | M) of the global variables.

    Exact for the mean-field guides (and the unmasked guide of CPA-VAE): a Normal interval for
    e_tk and E_q[e_tk m_tk] = q(m_tk = 1) E_q[e_tk]. Otherwise (the correlated guide)
    Monte-Carlo estimates from ``n_samples`` draws; mask probabilities are the guide's in
    either case.

    Parameters
    ----------
    guide
        The model's guide (``module.guide``).
    n_perturbations
        Number of perturbations; all of them are summarised.
    level
        Probability mass of the central credible interval, strictly between 0 and 1
        (default 0.9).
    n_samples
        Draws per perturbation for the Monte-Carlo estimates (default 1000); unused by the
        mean-field guides.
    chunk_size
        Perturbations drawn at a time for the Monte-Carlo estimates (default 64).
    generator
        Random-number generator for the draws; the global one by default.

    Returns
    -------
    GlobalSummary
        Mask probabilities, embedding mean and interval, and expected shift, each
        (n_perturbations, n_latent) float64.

    Raises
    ------
    ValueError
        If ``level`` is not strictly between 0 and 1.
    """
    if not 0 < level < 1:
        msg = f"level={level} must lie strictly between 0 and 1, e.g. 0.9."
        raise ValueError(msg)
    probabilities = guide.mask_probabilities().double().cpu().numpy()
    if isinstance(guide, MeanFieldGuide | UnmaskedGuide):
        index = torch.arange(n_perturbations, device=guide.embedding_loc.device)
        loc, scale = mean_field_embedding_distribution(
            guide.embedding_loc, guide.embedding_scale_raw, index
        )
        loc, scale = loc.double().cpu().numpy(), scale.double().cpu().numpy()
        half_width = NormalDist().inv_cdf((1 + level) / 2) * scale
        return GlobalSummary(
            probabilities,
            loc,
            loc - half_width,
            loc + half_width,
            probabilities * loc,
            level,
            True,
        )
    device = next(guide.parameters()).device
    quantiles = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    parts = []
    for start in range(0, n_perturbations, chunk_size):
        index = torch.arange(start, min(start + chunk_size, n_perturbations), device=device)
        sample = guide.sample(index, n_samples, generator)
        embeddings = sample.embeddings.double().cpu()  # (n_samples, T_chunk, K)
        bounds = torch.quantile(embeddings, quantiles, dim=0)  # (2, T_chunk, K)
        shift = sample.shifts.double().cpu().mean(0)
        parts.append(torch.stack([embeddings.mean(0), bounds[0], bounds[1], shift]))
    mean, lower, upper, shift = torch.cat(parts, dim=1).numpy()
    return GlobalSummary(probabilities, mean, lower, upper, shift, level, False)


def global_summary_table(
    summary: GlobalSummary, perturbations: Iterable[str], latent_names: Iterable[str]
) -> pd.DataFrame:
    """Lay out a :class:`GlobalSummary` as a long table.

    Parameters
    ----------
    summary
        Posterior summaries from :func:`summarise_globals`.
    perturbations
        Names of the perturbations, in row order of the summary.
    latent_names
        Names of the latent dimensions, in column order.

    Returns
    -------
    pandas.DataFrame
        One row per (perturbation, latent) pair, indexed by that pair, with columns
        ``mask_probability``, ``embedding_mean``, ``embedding_lower``, ``embedding_upper``
        and ``shift_mean``.
    """
    index = pd.MultiIndex.from_product(
        [list(perturbations), list(latent_names)], names=["perturbation", "latent"]
    )
    columns = {
        "mask_probability": summary.mask_probabilities,
        "embedding_mean": summary.embedding_mean,
        "embedding_lower": summary.embedding_lower,
        "embedding_upper": summary.embedding_upper,
        "shift_mean": summary.shift_mean,
    }
    return pd.DataFrame({name: values.ravel() for name, values in columns.items()}, index=index)


# --- similarity and clustering ----------------------------------------------------------------
def cosine_similarity(vectors: np.ndarray) -> np.ndarray:
    """Compute the cosine similarity between the rows of a matrix.

    Parameters
    ----------
    vectors
        Rows to compare, (n, K), e.g. E_q[e_t * m_t] of each perturbation.

    Returns
    -------
    numpy.ndarray
        Similarities in [-1, 1], (n, n) float64, with 1 on the diagonal. A zero row is similar
        to nothing (0) but itself (1).
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1)
    unit = np.divide(vectors, norms[:, None], out=np.zeros_like(vectors), where=norms[:, None] > 0)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, 1.0)
    return np.clip(similarity, -1.0, 1.0)


def jaccard_similarity(masks: np.ndarray) -> np.ndarray:
    """Compute the Jaccard index ``|A & B| / |A | B|`` between binary rows.

    Parameters
    ----------
    masks
        Binary masks (0 or 1, or bool), (n, K); threshold probabilities first (e.g. q > 0.5).

    Returns
    -------
    numpy.ndarray
        Similarities in [0, 1], (n, n) float64, with 1 on the diagonal. Two rows with no
        active entry share nothing (0).

    Raises
    ------
    ValueError
        If ``masks`` has entries other than 0 and 1.
    """
    masks = np.asarray(masks).astype(np.float64)
    if not np.isin(masks, (0.0, 1.0)).all():
        msg = "jaccard_similarity needs binary masks; threshold probabilities first (q > 0.5)."
        raise ValueError(msg)
    intersection = masks @ masks.T
    sizes = masks.sum(1)
    union = sizes[:, None] + sizes[None, :] - intersection
    similarity = np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)
    np.fill_diagonal(similarity, 1.0)
    return similarity


@dataclass(frozen=True)
class Clustering:
    """Hierarchical clustering of n items, returned by :func:`cluster_by_similarity`.

    Parameters
    ----------
    labels
        Cluster of each item, (n,) int in 1..n_clusters.
    order
        The dendrogram's leaf order, (n,): a row order for heatmaps.
    linkage
        The linkage matrix of ``scipy.cluster.hierarchy.linkage``, (n - 1, 4).
    """

    labels: np.ndarray
    order: np.ndarray
    linkage: np.ndarray


def cluster_by_similarity(
    similarity: np.ndarray,
    *,
    n_clusters: int | None = None,
    distance_threshold: float | None = None,
    method: Literal["average", "complete", "single"] = "average",
) -> Clustering:
    """Cluster items hierarchically on the distance 1 - similarity.

    Agglomerative clustering with scipy's ``linkage``; the similarity is symmetrised first,
    (S + S^T) / 2, and distances below 0 are set to 0.

    Parameters
    ----------
    similarity
        Square similarity matrix, (n, n), e.g. from :func:`cosine_similarity` or
        :func:`jaccard_similarity`.
    n_clusters
        Cut the tree into at most this many clusters.
    distance_threshold
        Cut the tree where the merge distance exceeds this value. Pass exactly one of
        ``n_clusters`` and ``distance_threshold``.
    method
        Linkage: ``"average"`` (default), ``"complete"`` or ``"single"``.

    Returns
    -------
    Clustering
        Cluster labels, leaf order and linkage matrix. With fewer than two items every item
        is in cluster 1 and the linkage matrix is empty.

    Raises
    ------
    ValueError
        If both or neither of ``n_clusters`` and ``distance_threshold`` are given, or
        ``similarity`` is not square.
    """
    if (n_clusters is None) == (distance_threshold is None):
        msg = "Pass exactly one of `n_clusters` or `distance_threshold`."
        raise ValueError(msg)
    similarity = np.asarray(similarity, dtype=np.float64)
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1]:
        msg = f"similarity must be a square matrix; got shape {similarity.shape}."
        raise ValueError(msg)
    if similarity.shape[0] < 2:
        one = np.ones(similarity.shape[0], dtype=int)
        return Clustering(one, np.arange(similarity.shape[0]), np.zeros((0, 4)))
    distance = np.clip(1.0 - (similarity + similarity.T) / 2, 0.0, None)
    np.fill_diagonal(distance, 0.0)
    tree = linkage(squareform(distance, checks=False), method=method)
    if n_clusters is not None:
        labels = fcluster(tree, n_clusters, criterion="maxclust")
    else:
        labels = fcluster(tree, distance_threshold, criterion="distance")
    return Clustering(labels.astype(int), leaves_list(tree), tree)


# --- sparse latent programs -------------------------------------------------------------------
ProgramRotation = Literal["varimax", "lp", "none"]
PROGRAM_ROTATIONS = ("varimax", "lp", "none")


def varimax_rotation(
    loadings: np.ndarray, *, normalize: bool = True, max_iter: int = 1000, tol: float = 1e-10
) -> np.ndarray:
    """Find the orthogonal rotation that maximises the varimax criterion of a loading matrix.

    Varimax (Kaiser 1958) maximises sum_k Var_i[(L R)_ik^2]: it favours columns with a few large
    and many near-zero entries.

    Parameters
    ----------
    loadings
        Loading matrix L, (n, K).
    normalize
        Scale rows to unit length first (Kaiser normalisation, default True), so that the
        largest rows do not decide the rotation alone; zero rows are left out.
    max_iter
        Largest number of iterations (default 1000).
    tol
        Stop when the criterion (the sum of the gradient's singular values) grows by a
        relative amount of at most ``tol`` (default 1e-10).

    Returns
    -------
    numpy.ndarray
        Orthogonal rotation R, (K, K); the rotated loadings are L @ R. The identity when no
        row is left.

    Notes
    -----
    Fixed-point iteration: R <- U V^T from the SVD U S V^T of the criterion's gradient.
    """
    x = _unit_rows(loadings) if normalize else np.asarray(loadings, dtype=np.float64)
    n_rows, n_columns = x.shape
    rotation = np.eye(n_columns)
    if n_rows == 0:
        return rotation
    criterion = 0.0
    for _ in range(max_iter):
        rotated = x @ rotation
        gradient = x.T @ (rotated**3 - rotated * (rotated**2).mean(0))
        u, singular, vt = np.linalg.svd(gradient)
        rotation = u @ vt
        if singular.sum() <= criterion * (1 + tol):
            break
        criterion = singular.sum()
    return rotation


def _unit_rows(loadings: np.ndarray) -> np.ndarray:
    """Kaiser normalisation: the non-zero rows of ``loadings`` scaled to unit length."""
    x = np.asarray(loadings, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1)
    return x[norms > 0] / norms[norms > 0, None]


def lp_rotation(
    loadings: np.ndarray,
    *,
    power: float = 1.5,
    n_starts: int = 20,
    seed: int = 0,
    smoothing: float = 1e-2,
    max_iter: int = 1000,
    tol: float = 1e-8,
) -> np.ndarray:
    """Find the orthogonal rotation that minimises the Lp norm (p = ``power`` < 2) of a
    Kaiser-normalised loading matrix.

    Varimax rewards a few large entries per column; when rows have several mechanisms of
    unequal size (dense masks, or a perturbation with one strong and one weak mechanism), the
    fourth powers let the strong entries decide and leave the weak ones smeared over other
    axes. An Lp norm with p < 2 grows faster near zero than far from it, so its minimum
    concentrates each row on few axes whatever their sizes (p = 1 is the convex stand-in for
    counting non-zeros; p = 2 is the same for every rotation). It has local minima under
    rotation, so the descent starts from :func:`varimax_rotation` and from ``n_starts`` - 1
    random rotations, and the lowest minimum found wins.

    Parameters
    ----------
    loadings
        Loading matrix L, (n, K); rows are scaled to unit length first, zero rows left out.
    power
        p, in (0, 2) (default 1.5: on fitted shifts p = 1 let noise pull the frame more).
    n_starts
        Number of starting rotations: varimax and ``n_starts`` - 1 random ones (default 20).
    seed
        Seed of the random starting rotations (default 0); the global RNG is not used.
    smoothing
        The criterion is sum (x^2 + smoothing^2)^(p/2), smooth at zero (default 1e-2).
    max_iter, tol
        Largest number of iterations of each descent, and the size of the projected gradient
        under which it stops (defaults 1000 and 1e-8).

    Returns
    -------
    numpy.ndarray
        Orthogonal rotation R, (K, K); the rotated loadings are ``loadings @ R``.

    Notes
    -----
    Each descent is gradient projection (Jennrich 2001): a step along the criterion's gradient
    projected on the tangent space of the orthogonal group, mapped back to the group by the
    polar decomposition, the step halved until the criterion falls enough (Armijo).
    """
    if not 0 < power < 2:
        msg = f"power must lie in (0, 2) (got {power}); p = 2 is the same for every rotation."
        raise ValueError(msg)
    if n_starts < 1:
        msg = f"n_starts must be at least 1 (got {n_starts})."
        raise ValueError(msg)
    x = _unit_rows(loadings)
    rng = np.random.default_rng(seed)
    size = x.shape[1]
    starts = [varimax_rotation(x, normalize=False)]
    starts += [np.linalg.qr(rng.normal(size=(size, size)))[0] for _ in range(n_starts - 1)]

    def criterion(r: np.ndarray) -> tuple[float, np.ndarray]:
        rotated = x @ r
        smooth = rotated**2 + smoothing**2
        value = float((smooth ** (power / 2)).sum())
        return value, x.T @ (power * rotated * smooth ** (power / 2 - 1))

    descents = [_projected_descent(criterion, start, max_iter, tol) for start in starts]
    return min(descents, key=lambda descent: descent[1])[0]


def _projected_descent(
    criterion: Callable[[np.ndarray], tuple[float, np.ndarray]],
    rotation: np.ndarray,
    max_iter: int,
    tol: float,
) -> tuple[np.ndarray, float]:
    """Gradient projection on the orthogonal group from ``rotation`` for ``criterion`` (value
    and gradient): the rotation reached and its value."""
    value, gradient = criterion(rotation)
    step = 1.0
    for _ in range(max_iter):
        m = rotation.T @ gradient
        projected = gradient - rotation @ (m + m.T) / 2
        size = float(np.linalg.norm(projected))
        if size < tol:
            break
        step *= 2
        for _ in range(40):
            u, _, vt = np.linalg.svd(rotation - step * projected)
            candidate = u @ vt
            candidate_value, candidate_gradient = criterion(candidate)
            if candidate_value <= value - 0.5 * step * size**2:
                break
            step /= 2
        else:
            break  # no step lowers the criterion: a minimum to numerical precision
        rotation, value, gradient = candidate, candidate_value, candidate_gradient
    return rotation, value


@dataclass(frozen=True)
class LatentPrograms:
    """Latent programs, returned by :func:`latent_programs`.

    Parameters
    ----------
    directions
        Orthonormal rows, (n_programs, n_latent), each a program's direction in latent space
        (n_programs = n_latent).
    loadings
        Loadings shifts @ directions.T, (n_perturbations, n_programs): how far each
        perturbation moves the cell along each program.
    """

    directions: np.ndarray
    loadings: np.ndarray


def latent_programs(
    shifts: np.ndarray, *, rotation: ProgramRotation = "varimax"
) -> LatentPrograms:
    """Find an orthonormal basis of the latent space in which the perturbation shifts are sparse.

    Why rotate: the basal prior is isotropic, so when the masks are dense the fitted latent
    axes are a mixture of the mechanisms rather than the mechanisms themselves; if each
    perturbation touches few mechanisms, a sparse rotation of the shifts points its axes at
    them.

    Parameters
    ----------
    shifts
        Expected latent shifts E_q[e_t * m_t], (n_perturbations, n_latent), e.g.
        ``GlobalSummary.shift_mean``.
    rotation
        ``"varimax"`` (default, :func:`varimax_rotation`); ``"lp"`` (:func:`lp_rotation`,
        which also finds the weaker mechanisms of perturbations with several, where varimax
        lets the strongest decide the axes; slower, 20 descents); or ``"none"``, which keeps
        the latent axes (identity directions, loadings equal to ``shifts``).

    Returns
    -------
    LatentPrograms
        Directions (n_latent, n_latent) and loadings (n_perturbations, n_latent). Rotated,
        each program is oriented so that its cubed loadings sum to >= 0 (the heaviest
        loadings are positive) and programs are ordered by their sum of squared loadings,
        largest first.

    Raises
    ------
    ValueError
        If ``rotation`` is not ``"varimax"``, ``"lp"`` or ``"none"``.
    """
    shifts = np.asarray(shifts, dtype=np.float64)
    if rotation not in PROGRAM_ROTATIONS:
        msg = f"rotation={rotation!r} is not supported; choose one of {list(PROGRAM_ROTATIONS)}."
        raise ValueError(msg)
    n_latent = shifts.shape[1]
    if rotation == "none":
        return LatentPrograms(np.eye(n_latent), shifts.copy())
    directions = (varimax_rotation(shifts) if rotation == "varimax" else lp_rotation(shifts)).T
    loadings = shifts @ directions.T
    signs = np.where((loadings**3).sum(0) < 0, -1.0, 1.0)
    order = np.argsort(-(loadings**2).sum(0), kind="stable")
    return LatentPrograms((directions * signs[:, None])[order], (loadings * signs)[:, order])


# --- genes moved by each latent dimension -----------------------------------------------------
@torch.no_grad()
def latent_gene_response(
    decode: Callable[[torch.Tensor], torch.Tensor],
    n_latent: int,
    *,
    step: float = 1.0,
    basal: torch.Tensor | None = None,
    directions: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor:
    """Compute how the decoded expression responds to a step along each latent direction.

    The response to direction d_j is f(basal + step d_j) - f(basal).

    Parameters
    ----------
    decode
        The function f: maps z (n, n_latent) to the expression scale compared,
        (n, n_genes), e.g. :func:`decoder_expression_scale`.
    n_latent
        Number of latent dimensions.
    step
        Length of the step along each direction (default 1.0).
    basal
        Point the steps start from, (n_latent,); the prior mean 0 by default. Its dtype sets
        that of the directions.
    directions
        Directions d_j, (n_directions, n_latent); the latent axes e_k (the identity) by
        default, or e.g. ``LatentPrograms.directions`` from :func:`latent_programs`.

    Returns
    -------
    torch.Tensor
        Response of each gene to each direction, (n_directions, n_genes), in the units of
        ``decode``'s output (natural-log fold changes with :func:`decoder_expression_scale`
        for count likelihoods).
    """
    if basal is None:
        basal = torch.zeros(n_latent)
    if directions is None:
        directions = torch.eye(n_latent, dtype=basal.dtype)
    directions = torch.as_tensor(directions, dtype=basal.dtype)
    z = torch.cat([basal[None], basal + step * directions])
    out = decode(z)  # (1 + n_directions, n_genes)
    return out[1:] - out[:1]


def decoder_expression_scale(module: SAMSVAEModule) -> Callable[[torch.Tensor], torch.Tensor]:
    """Make the decoding function f used by :func:`latent_gene_response`.

    Parameters
    ----------
    module
        The fitted model; its covariates, if any, are set to the training cells' shares.

    Returns
    -------
    callable
        f(z): maps z (n, n_latent) to an (n, n_genes) CPU tensor through ``module``'s
        decoder and likelihood head: the natural log of the expected normalised expression
        (library size 1) for count likelihoods, or the expected value for ``normal``.
    """
    device = next(module.parameters()).device

    def decode(z: torch.Tensor) -> torch.Tensor:
        z = z.to(device=device, dtype=next(module.parameters()).dtype)
        hidden = module.decode(z, module.average_covariates())  # covariates at training shares
        mean = module.likelihood.mean(hidden, torch.zeros(z.shape[0], device=device))
        return (mean.log() if module.likelihood.uses_counts else mean).cpu()

    return decode


def rank_genes(
    response: np.ndarray,
    genes: Iterable[str],
    *,
    latent_names: Iterable[str] | None = None,
    n_top: int | None = None,
) -> pd.DataFrame:
    """Rank the genes each latent dimension (or direction) moves most.

    Parameters
    ----------
    response
        Gene responses, (n_latent, n_genes), e.g. from :func:`latent_gene_response`.
    genes
        Gene names, (n_genes,).
    latent_names
        Name of each row of ``response``; 0, 1, ... by default.
    n_top
        Keep only the first ``n_top`` genes of each row; all genes by default.

    Returns
    -------
    pandas.DataFrame
        Long table with columns ``latent``, ``rank``, ``gene`` and ``effect`` (the signed
        response), genes ranked by ``|effect|`` within each row of ``response`` (rank 1 moves
        most).
    """
    response = np.asarray(response, dtype=np.float64)
    genes = np.asarray(list(genes), dtype=object)
    names = list(latent_names) if latent_names is not None else list(range(len(response)))
    n_keep = response.shape[1] if n_top is None else min(n_top, response.shape[1])
    order = np.argsort(-np.abs(response), axis=1, kind="stable")[:, :n_keep]
    return pd.DataFrame(
        {
            "latent": np.repeat(names, n_keep),
            "rank": np.tile(np.arange(1, n_keep + 1), len(response)),
            "gene": genes[order].ravel(),
            "effect": np.take_along_axis(response, order, axis=1).ravel(),
        }
    )


# --- gene-set enrichment ----------------------------------------------------------------------
def read_gmt(path: str | Path) -> dict[str, list[str]]:
    """Read the gene sets of a GMT file.

    Parameters
    ----------
    path
        GMT file: one set a line, ``name<TAB>description<TAB>gene<TAB>gene...``.

    Returns
    -------
    dict of str to list of str
        Genes of each set, by set name; empty gene fields are skipped, as are lines without a
        name.
    """
    gene_sets: dict[str, list[str]] = {}
    for line in Path(path).read_text().splitlines():
        fields = [field.strip() for field in line.split("\t")]
        if len(fields) >= 2 and fields[0]:
            gene_sets[fields[0]] = [gene for gene in fields[2:] if gene]
    return gene_sets


def gene_set_enrichment(
    queries: Mapping[str, Iterable[str]],
    gene_sets: Mapping[str, Iterable[str]] | str | Path,
    universe: Iterable[str],
) -> pd.DataFrame:
    """Test each gene set for over-representation in each query set.

    Queries are e.g. a cluster's perturbed genes or a latent program's top genes. Queries and
    gene sets are restricted to ``universe``; gene sets with no gene in it are dropped.
    p = P(X >= overlap) for X ~ Hypergeometric(universe size, set size, query size): the
    one-sided Fisher exact test.

    Parameters
    ----------
    queries
        Genes of each query set, by query name.
    gene_sets
        Genes of each gene set, by set name, or the path of a GMT file (:func:`read_gmt`).
    universe
        Every gene that could have been selected, e.g. the genes measured.

    Returns
    -------
    pandas.DataFrame
        One row per (query, gene set) pair, with columns ``query``, ``gene_set``,
        ``overlap``, ``query_size``, ``set_size``, ``universe_size``, ``p_value``,
        ``q_value`` (Benjamini-Hochberg over every row of the table) and ``genes`` (the
        overlapping genes, sorted and comma-separated), sorted by ``p_value``.
    """
    if isinstance(gene_sets, str | Path):
        gene_sets = read_gmt(gene_sets)
    universe_set = set(map(str, universe))
    sets = {name: set(map(str, genes)) & universe_set for name, genes in gene_sets.items()}
    sets = {name: genes for name, genes in sets.items() if genes}
    rows = []
    for query, members in queries.items():
        selected = set(map(str, members)) & universe_set
        for name, genes in sets.items():
            overlap = selected & genes
            p = hypergeom.sf(len(overlap) - 1, len(universe_set), len(genes), len(selected))
            rows.append(
                (
                    query,
                    name,
                    len(overlap),
                    len(selected),
                    len(genes),
                    len(universe_set),
                    float(p),
                    ",".join(sorted(overlap)),
                )
            )
    columns = [
        "query",
        "gene_set",
        "overlap",
        "query_size",
        "set_size",
        "universe_size",
        "p_value",
        "genes",
    ]
    table = pd.DataFrame(rows, columns=columns)
    p_values = np.clip(table["p_value"].to_numpy(dtype=np.float64), 0.0, 1.0)
    table.insert(7, "q_value", false_discovery_control(p_values) if len(table) else p_values)
    return table.sort_values(["p_value", "query", "gene_set"], ignore_index=True)


# --- genetic interactions ---------------------------------------------------------------------
@dataclass(frozen=True)
class InteractionScores:
    """Genetic interaction scores GI(A+B) = ATE(A+B) - ATE(A) - ATE(B), with uncertainty.

    Returned by :func:`data_genetic_interactions` and :func:`model_genetic_interactions`.

    Parameters
    ----------
    combinations
        Combination labels, one per row of the arrays.
    score
        Point estimate, (n_combinations, n_genes).
    lower
        Lower bound of the central ``level`` interval of the bootstrap or posterior draws,
        (n_combinations, n_genes).
    upper
        Upper bound of that interval, (n_combinations, n_genes).
    standard_error
        Standard deviation of the bootstrap or posterior draws, (n_combinations, n_genes).
    level
        Probability mass of the interval, e.g. 0.9.
    """

    combinations: list[str]
    score: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    standard_error: np.ndarray
    level: float


def interaction_table(scores: InteractionScores, genes: Iterable[str]) -> pd.DataFrame:
    """Lay out :class:`InteractionScores` as a long table.

    Parameters
    ----------
    scores
        Genetic interaction scores.
    genes
        Gene names, (n_genes,).

    Returns
    -------
    pandas.DataFrame
        One row per (combination, gene) pair, with columns ``combination``, ``gene``,
        ``score``, ``lower``, ``upper`` and ``standard_error``.
    """
    genes = list(genes)
    return pd.DataFrame(
        {
            "combination": np.repeat(scores.combinations, len(genes)),
            "gene": np.tile(genes, len(scores.combinations)),
            "score": scores.score.ravel(),
            "lower": scores.lower.ravel(),
            "upper": scores.upper.ravel(),
            "standard_error": scores.standard_error.ravel(),
        }
    )


def interaction_scores(
    combination: np.ndarray, first: np.ndarray, second: np.ndarray
) -> np.ndarray:
    """Compute the departure from additivity ATE(A+B) - (ATE(A) + ATE(B)), elementwise.

    Parameters
    ----------
    combination
        ATE(A+B).
    first
        ATE(A), broadcastable with ``combination``.
    second
        ATE(B), broadcastable with ``combination``.

    Returns
    -------
    numpy.ndarray
        The genetic interaction scores, of the broadcast shape.
    """
    return np.asarray(combination) - np.asarray(first) - np.asarray(second)


def combination_parts(combination: str, delimiter: str = "+") -> tuple[str, str]:
    """Split a two-perturbation combination label into its two singles.

    Parameters
    ----------
    combination
        Label such as ``"A+B"``.
    delimiter
        Separator of the parts (default ``"+"``).

    Returns
    -------
    tuple of str
        ``("A", "B")``.

    Raises
    ------
    ValueError
        If the label does not have exactly two non-empty parts.
    """
    parts = combination.split(delimiter)
    if len(parts) != 2 or not all(parts):
        msg = (
            f"{combination!r} is not a two-perturbation combination 'A{delimiter}B'; "
            "genetic interactions are defined for pairs."
        )
        raise ValueError(msg)
    return parts[0], parts[1]


def _summarise_draws(
    combinations: list[str], score: np.ndarray, draws: np.ndarray, level: float
) -> InteractionScores:
    """``draws`` (n_draws, n_combinations, n_genes) -> interval and standard error."""
    if draws.shape[0] < 2:
        msg = f"Uncertainty needs at least 2 bootstrap or posterior draws; got {draws.shape[0]}."
        raise ValueError(msg)
    lower, upper = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return InteractionScores(combinations, score, lower, upper, draws.std(0, ddof=1), level)


def data_genetic_interactions(
    expression: sp.csr_matrix | np.ndarray,
    labels: np.ndarray,
    combinations: list[str],
    control: str,
    *,
    method: ATEMethod = "perturbseq",
    n_bootstrap: int = 200,
    level: float = 0.9,
    delimiter: str = "+",
    seed: int | None = 0,
) -> InteractionScores:
    """Compute the observed genetic interaction of each combination, bootstrapping over cells.

    With m_a the mean of g(x) over cells labelled a, GI(A+B) = m_AB - m_A - m_B + m_0. Each of
    the ``n_bootstrap`` replicates resamples the cells of every group (control, singles,
    combinations) with replacement, independently.

    Parameters
    ----------
    expression
        Counts, (n_cells, n_genes), sparse CSR or dense.
    labels
        Perturbation label of each cell, (n_cells,).
    combinations
        Two-perturbation labels ``"A+B"``; the cells labelled ``"A"`` and ``"B"`` are the
        singles.
    control
        Label of the control cells.
    method
        ``"perturbseq"`` (default; g(x) = log2(1 + 1e4 * x / sum_j x_j), scores in log2
        units; cells with zero total counts are left out) or ``"mean"`` (identity).
    n_bootstrap
        Number of bootstrap replicates, at least 2 (default 200).
    level
        Probability mass of the central interval (default 0.9).
    delimiter
        Separator of the parts of a combination label (default ``"+"``).
    seed
        Seed of the bootstrap (default 0); None for fresh randomness.

    Returns
    -------
    InteractionScores
        ``score`` from the observed means; interval and standard error from the bootstrap
        replicates; each (n_combinations, n_genes) float64.

    Raises
    ------
    ValueError
        If a label is not a two-way combination, a group has no cells (or none with counts
        under ``"perturbseq"``), or ``n_bootstrap`` < 2.
    """
    labels = np.asarray(labels).astype(str)
    pairs = [combination_parts(c, delimiter) for c in combinations]
    groups = sorted({control, *combinations, *(p for pair in pairs for p in pair)})
    rng = np.random.default_rng(seed)
    means, replicates = {}, {}
    for group in groups:
        values = transformed_cells_of(
            expression, labels, group, method, needed_for="a genetic interaction"
        )
        n_cells = len(values)
        means[group] = values.mean(0)
        weights = rng.multinomial(n_cells, np.full(n_cells, 1 / n_cells), n_bootstrap)
        replicates[group] = weights @ values / n_cells  # (n_bootstrap, n_genes)

    def gi(table: dict[str, np.ndarray]) -> np.ndarray:
        return np.stack(
            [
                interaction_scores(
                    table[c] - table[control], table[a] - table[control], table[b] - table[control]
                )
                for c, (a, b) in zip(combinations, pairs, strict=True)
            ],
            axis=-2,
        )

    return _summarise_draws(list(combinations), gi(means), gi(replicates), level)


@torch.no_grad()
def model_genetic_interactions(
    module: SAMSVAEModule,
    combination_dosage: torch.Tensor,
    first_dosage: torch.Tensor,
    second_dosage: torch.Tensor,
    *,
    combinations: list[str],
    method: ATEMethod = "perturbseq",
    n_posterior_samples: int = 100,
    n_basal: int = 100,
    library_size: float = PERTURBSEQ_SCALE,
    level: float = 0.9,
) -> InteractionScores:
    """Compute the model's genetic interaction of each combination, with posterior uncertainty.

    For each of ``n_posterior_samples`` draws of the globals from q, the ATEs given those
    globals come from ``n_basal`` basal draws shared by the control and every row
    (:func:`~samsvae.evaluate.model_average_treatment_effect_draws`, counts integrated out),
    and GI(A+B) = ATE(A+B) - ATE(A) - ATE(B) is formed per draw.

    Parameters
    ----------
    module
        The fitted model.
    combination_dosage
        Dosage rows of the combinations A+B, (n_combinations, n_perturbations).
    first_dosage
        Dosage rows of the first singles A, (n_combinations, n_perturbations).
    second_dosage
        Dosage rows of the second singles B, (n_combinations, n_perturbations).
    combinations
        Combination labels, one per dosage row.
    method
        ``"perturbseq"`` (default; scores in log2 units) or ``"mean"``.
    n_posterior_samples
        Draws of the global variables, at least 2 (default 100).
    n_basal
        Basal draws per global draw (default 100).
    library_size
        Library size of the generated cells (default 1e4).
    level
        Probability mass of the central interval (default 0.9).

    Returns
    -------
    InteractionScores
        ``score`` is the mean over draws, the interval their quantiles and the standard
        error their standard deviation (posterior plus Monte-Carlo spread); each
        (n_combinations, n_genes) float64.

    Raises
    ------
    ValueError
        If ``n_posterior_samples`` < 2.
    """
    draws = model_average_treatment_effect_draws(
        module,
        torch.cat([first_dosage, second_dosage, combination_dosage]),
        method=method,
        n_global_samples=n_posterior_samples,
        n_samples_per_global=n_basal,
        library_size=library_size,
        share_basal=True,
    )  # (n_posterior_samples, 3 * n_combinations, n_genes)
    first, second, combination = np.split(draws.double().numpy(), 3, axis=1)
    scores = interaction_scores(combination, first, second)
    return _summarise_draws(combinations, scores.mean(0), scores, level)
