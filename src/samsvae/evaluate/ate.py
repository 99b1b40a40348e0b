"""Average treatment effects, from a model and from data.

ATE(a) = E[g(x) | do(d_a)] - E[g(x) | do(0)], with g the identity (``"mean"``) or
g(x) = log2(1 + 1e4 * x / sum_j x_j) (``"perturbseq"``, the paper's choice). Under
``"perturbseq"`` a cell with zero total counts has no g(x): observed ones are left out of every
mean over data cells (:func:`defined_cells`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from samsvae.models import SAMSVAEModule
from samsvae.settings import settings

if TYPE_CHECKING:
    from collections.abc import Iterator

ATEMethod = Literal["mean", "perturbseq"]
ATE_METHODS = ("mean", "perturbseq")
#: A fixed library size, or ``"data"``: each particle draws its own from the training control
#: cells' library sizes, so that effects are those of cells sequenced as deep as the data.
LibrarySize = float | Literal["data"]
PERTURBSEQ_SCALE = 1e4


def transform(x: torch.Tensor, method: ATEMethod) -> torch.Tensor:
    """g(x) along the last axis; cells with zero total counts map to 0, not NaN."""
    if method == "mean":
        return x
    total = x.sum(-1, keepdim=True)
    # in place on one new tensor (an ATE chunk has 2e8 entries); the same operations, in the
    # same order, as log2(1 + where(total > 0, 1e4 * x / total, 0))
    scaled = x.mul(PERTURBSEQ_SCALE).div_(total.clamp(min=1e-12)).mul_(total > 0)
    return scaled.add_(1).log2_()


def _per_draw_means(
    module: SAMSVAEModule,
    dosage: torch.Tensor,
    *,
    method: ATEMethod,
    n_global_samples: int,
    n_samples_per_global: int,
    library_size: LibrarySize,
    particles_per_chunk: int,
    share_basal: bool,
    covariates: torch.Tensor | None = None,
    progress: bool = False,
) -> Iterator[torch.Tensor]:
    """Yield, chunk by chunk of global draws, mean g(x) per draw: (n_draws, 1 + A, G).

    Row 0 is the control. Each global draw (E, M) ~ q is paired with ``n_samples_per_global``
    draws of z_basal ~ p and counts; all interventions and the particles of a chunk go through
    the decoder as one batch. ``covariates`` (n_covariates,) fixes the covariates of every
    particle; by default each particle draws them from the training shares. ``progress`` shows a
    bar over the global draws when the estimate takes more than two seconds.
    """
    index = torch.nonzero(dosage.abs().sum(0) > 0).ravel()
    rows = torch.cat([torch.zeros(1, len(index), dtype=dosage.dtype), dosage[:, index]])
    rows = rows.to(next(module.parameters()).device)
    if covariates is not None:
        covariates = covariates.to(rows)
    draws_per_chunk = max(1, particles_per_chunk // n_samples_per_global)
    bar = tqdm(
        total=n_global_samples,
        desc="ATE",
        unit="draw",
        disable=not settings.show_progress(progress),
        delay=2,
    )
    with bar:
        for start in range(0, n_global_samples, draws_per_chunk):
            n = min(draws_per_chunk, n_global_samples - start)
            sample = module.sample_globals(index.to(rows.device), n)
            sample = sample.repeat_particles(n_samples_per_global)
            library = (
                module.draw_library_sizes(n * n_samples_per_global)
                if library_size == "data"
                else library_size
            )
            x = module.generate(
                rows, sample, library, share_basal=share_basal, covariates=covariates
            )
            values = transform(x, method)  # (n * inner, 1 + A, G)
            if n_samples_per_global == 1:  # the plain ATE: no copy of every sample
                yield values
            else:
                yield values.reshape(n, n_samples_per_global, *values.shape[1:]).mean(1)
            bar.update(n)


@torch.no_grad()
def model_average_treatment_effects(
    module: SAMSVAEModule,
    dosage: torch.Tensor,
    *,
    method: ATEMethod = "perturbseq",
    n_samples: int = 2500,
    library_size: LibrarySize = PERTURBSEQ_SCALE,
    particles_per_chunk: int = 250,
    share_basal: bool = False,
    covariates: torch.Tensor | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Monte-Carlo ATE of each dosage row (n_interventions, T) -> (n_interventions, n_genes).

    Each particle draws the globals from q, z_basal from the prior (independently for the control
    and every intervention: the paper's estimator), samples counts at ``library_size`` and
    applies g. ``share_basal=True`` uses one z_basal per particle for the control and all
    interventions (common random numbers): the same expectation with less variance. All
    interventions and the particles of a chunk go through the decoder as one batch.
    ``library_size="data"`` draws each particle's library size from the training control cells'
    (:meth:`~samsvae.models.SAMSVAEModule.draw_library_sizes`), the same for the control and the
    interventions of that particle. A model with covariates draws them per particle from the
    training shares (an effect averaged over batches), unless ``covariates`` (n_covariates,)
    fixes one row. ``progress`` shows a bar when the estimate takes more than two seconds.
    """
    totals = torch.zeros(dosage.shape[0] + 1, module.n_genes, dtype=torch.float64)
    chunks = _per_draw_means(
        module,
        dosage,
        method=method,
        n_global_samples=n_samples,
        n_samples_per_global=1,
        library_size=library_size,
        particles_per_chunk=particles_per_chunk,
        share_basal=share_basal,
        covariates=covariates,
        progress=progress,
    )
    for chunk in chunks:
        totals += chunk.sum(0).double().cpu()
    means = totals / n_samples
    return (means[1:] - means[:1]).float()


@torch.no_grad()
def model_average_treatment_effect_draws(
    module: SAMSVAEModule,
    dosage: torch.Tensor,
    *,
    method: ATEMethod = "perturbseq",
    n_global_samples: int = 100,
    n_samples_per_global: int = 100,
    library_size: LibrarySize = PERTURBSEQ_SCALE,
    particles_per_chunk: int = 250,
    share_basal: bool = True,
    covariates: torch.Tensor | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Posterior draws of the ATE: one per draw of the global variables from q.

    For each of ``n_global_samples`` draws (E, M) ~ q, the ATE given those globals is estimated
    with ``n_samples_per_global`` basal states and count samples (common random numbers between
    control and interventions by default, which keeps the Monte-Carlo part of the spread small).
    Quantiles over the draws are posterior intervals of the treatment effects; the spread
    includes the inner Monte-Carlo error, so intervals are slightly conservative. ``progress``
    as in :func:`model_average_treatment_effects`.
    Returns (n_global_samples, n_interventions, n_genes).
    """
    chunks = _per_draw_means(
        module,
        dosage,
        method=method,
        n_global_samples=n_global_samples,
        n_samples_per_global=n_samples_per_global,
        library_size=library_size,
        particles_per_chunk=particles_per_chunk,
        share_basal=share_basal,
        covariates=covariates,
        progress=progress,
    )
    return torch.cat([(chunk[:, 1:] - chunk[:, :1]).float().cpu() for chunk in chunks])


def defined_cells(block: sp.spmatrix | np.ndarray, method: ATEMethod) -> np.ndarray:
    """Which rows of a block of cells have a defined g(x), (n_rows,) bool: every row for
    ``"mean"``; for ``"perturbseq"`` the rows with total counts > 0 (x / sum_j x_j is undefined
    at 0, and :func:`transform` maps such rows to zeros, which are not expression values)."""
    if method == "mean":
        return np.ones(block.shape[0], dtype=bool)
    return np.asarray(block.sum(axis=1)).ravel() > 0


def transform_cells(block: sp.spmatrix | np.ndarray, method: ATEMethod) -> np.ndarray:
    """g(x) of a block of cells (rows, sparse or dense) as a dense float64 array."""
    dense = block.toarray() if sp.issparse(block) else np.asarray(block)
    return transform(torch.from_numpy(dense.astype(np.float64)), method).numpy()


def transformed_cells_of(
    expression: sp.csr_matrix | np.ndarray,
    labels: np.ndarray,
    label: str,
    method: ATEMethod,
    *,
    needed_for: str,
) -> np.ndarray:
    """g(x) of the cells labelled ``label`` whose g(x) is defined (:func:`defined_cells`),
    (n_cells, G); refuses a label with no such cells."""
    rows = np.flatnonzero(labels == label)
    if len(rows) == 0:
        msg = f"No cells are labelled {label!r}; {needed_for} needs observed cells for it."
        raise ValueError(msg)
    block = expression[rows]
    block = block[defined_cells(block, method)]
    if block.shape[0] == 0:
        msg = (
            f"Every cell labelled {label!r} has zero total counts, where g(x) = log2(1 + 1e4 x "
            f"/ sum_j x_j) is undefined; {needed_for} needs cells with counts for it, or "
            "method='mean'."
        )
        raise ValueError(msg)
    return transform_cells(block, method)


def data_average_treatment_effects(
    expression: sp.csr_matrix | np.ndarray,
    labels: np.ndarray,
    interventions: list[str],
    control: str,
    *,
    method: ATEMethod = "perturbseq",
) -> np.ndarray:
    """Mean g(x) of cells labelled ``a`` minus that of control cells; (len(interventions), G).

    With ``method="perturbseq"``, cells with zero total counts are left out of both means.
    """

    def group_mean(label: str) -> np.ndarray:
        values = transformed_cells_of(expression, labels, label, method, needed_for="data ATE")
        return values.mean(0)

    control_mean = group_mean(control)
    return np.stack([group_mean(a) - control_mean for a in interventions])
