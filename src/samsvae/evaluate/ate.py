"""Average treatment effects, from a model and from data.

ATE(a) = E[g(x) | do(d_a)] - E[g(x) | do(0)], with g the identity (``"mean"``) or
g(x) = log2(1 + 1e4 * x / sum_j x_j) (``"perturbseq"``, the paper's choice). Under
``"perturbseq"`` a cell with zero total counts has no g(x): observed ones are left out of every
mean over data cells (:func:`defined_cells`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import scipy.sparse as sp
import torch
from tqdm.auto import tqdm

from samsvae.distributions.expected_transform import ExpectedLog2Table
from samsvae.models import SAMSVAEModule
from samsvae.models.sams_vae import CountOutput
from samsvae.settings import settings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

ATEMethod = Literal["mean", "perturbseq"]
ATE_METHODS = ("mean", "perturbseq")
#: A fixed library size, or ``"data"``: each particle draws its own from the training control
#: cells' library sizes, so that effects are those of cells sequenced as deep as the data.
LibrarySize = float | Literal["data"]
PERTURBSEQ_SCALE = 1e4
#: ``"expected"`` integrates the counts out given each particle's latent state (a table look-up
#: per gene, :class:`~samsvae.distributions.expected_transform.ExpectedLog2Table`);
#: ``"sampled"`` draws them (the paper's estimator).
ATEEstimator = Literal["expected", "sampled"]
ATE_ESTIMATORS = ("expected", "sampled")
#: ``n_samples="auto"`` adds particles until every effect's standard error is at most the target,
#: between these bounds.
AUTO_SAMPLES = (200, 10_000)
DEFAULT_TARGET_STANDARD_ERROR = 0.02
#: A chunk of particles holds at most this many (particle, row, gene) values (128 MiB of
#: float32; the decoder's temporaries are a few times that), and at most MAX_CHUNK_PARTICLES
#: particles so that ``n_samples="auto"`` checks its standard errors often enough.
CHUNK_VALUES = 2**25
MAX_CHUNK_PARTICLES = 250


def default_particles_per_chunk(n_rows: int, n_genes: int) -> int:
    """Particles per chunk for ``n_rows`` decoded rows (control + interventions) of
    ``n_genes``: by shape, between 1 and MAX_CHUNK_PARTICLES."""
    return max(1, min(MAX_CHUNK_PARTICLES, CHUNK_VALUES // max(1, n_rows * n_genes)))


@dataclass(frozen=True)
class EffectEstimate:
    """Monte-Carlo treatment effects with their standard errors, (n_interventions, n_genes)
    each, and the number of particles that produced them."""

    effects: torch.Tensor
    standard_errors: torch.Tensor
    n_samples: int


def transform(x: torch.Tensor, method: ATEMethod) -> torch.Tensor:
    """g(x) along the last axis; cells with zero total counts map to 0, not NaN."""
    if method == "mean":
        return x
    total = x.sum(-1, keepdim=True)
    # in place on one new tensor (an ATE chunk has 2e8 entries); the same operations, in the
    # same order, as log2(1 + where(total > 0, 1e4 * x / total, 0))
    scaled = x.mul(PERTURBSEQ_SCALE).div_(total.clamp(min=1e-12)).mul_(total > 0)
    return scaled.add_(1).log2_()


def particle_transform(
    module: SAMSVAEModule, method: ATEMethod, estimator: ATEEstimator, library_size: LibrarySize
) -> tuple[CountOutput, Callable[[torch.Tensor, float | torch.Tensor], torch.Tensor]]:
    """What each particle's decoder returns, and g of it given the library size.

    ``"sampled"`` draws counts and applies :func:`transform`. ``"expected"`` takes the
    likelihood's mean mu and returns E[g(x) | mu]: mu itself for ``"mean"``, and for
    ``"perturbseq"`` E[log2(1 + 1e4 x_g / l)], which replaces the cell total S = sum_j x_j by
    its expectation, the particle's library size l (the per-gene expectation itself is
    tabulated to about 3e-4). That is the one approximation: to second order in S - l (and
    leaving out x_g's own part of S) it moves each mean by at most CV^2 / (2 ln 2), with
    CV^2 = Var(S) / l^2 = sum_j mu_j (1 + mu_j / theta_j) / l^2, and it largely cancels
    between control and intervention (measured on effects: -0.011 to 0.000 log2 units on
    average, ``benchmarks/science/ate_estimator.py``). A likelihood without counts
    (``normal``) has nothing to integrate under ``"perturbseq"`` and is sampled.
    """
    if estimator not in ATE_ESTIMATORS:
        msg = f"estimator={estimator!r} is not one of {ATE_ESTIMATORS}."
        raise ValueError(msg)
    head = module.likelihood
    if estimator == "sampled" or (method == "perturbseq" and not head.uses_counts):
        return "counts", lambda x, _library: transform(x, method)
    if method == "mean":
        return "mean", lambda mu, _library: mu
    sizes = (
        module.library_size_quantiles.cpu()
        if library_size == "data"
        else torch.tensor([float(library_size)])
    )
    # a library size of 0 (a control cell without counts) gives mu = 0 and E = 0 at any scale
    low, high = max(float(sizes.min()), 1.0), max(float(sizes.max()), 1.0)
    table = ExpectedLog2Table(
        getattr(head, "log_theta", None),  # None: Poisson counts
        n_genes=module.n_genes,
        scales=(PERTURBSEQ_SCALE / high, PERTURBSEQ_SCALE / low),
        max_mean=high,
        device=module.library_size_quantiles.device,
    )

    def expected(log_mu: torch.Tensor, library: float | torch.Tensor) -> torch.Tensor:
        library = torch.as_tensor(library, dtype=log_mu.dtype, device=log_mu.device)
        log_scale = math.log(PERTURBSEQ_SCALE) - library.clamp(min=1.0).log()
        if log_scale.dim() == 2:  # (P, 1): one library size per particle
            log_scale = log_scale.unsqueeze(1)
        return table(log_mu.clamp(min=-80.0), log_scale)  # mu = 0 (log -inf) gives E = 0

    return "log_mean", expected


def _per_draw_means(
    module: SAMSVAEModule,
    dosage: torch.Tensor,
    *,
    method: ATEMethod,
    n_global_samples: int,
    n_samples_per_global: int,
    library_size: LibrarySize,
    particles_per_chunk: int | None,
    share_basal: bool,
    estimator: ATEEstimator = "sampled",
    covariates: torch.Tensor | None = None,
    progress: bool = False,
) -> Iterator[torch.Tensor]:
    """Yield, chunk by chunk of global draws, mean g(x) per draw: (n_draws, 1 + A, G).

    Row 0 is the control. Each global draw (E, M) ~ q is paired with ``n_samples_per_global``
    draws of z_basal ~ p and of the counts, or (``estimator="expected"``) the counts integrated out
    (:func:`particle_transform`); all interventions and the particles of a chunk go through the
    decoder as one batch. ``covariates`` (n_covariates,) fixes the covariates of every
    particle; by default each particle draws them from the training shares. ``progress`` shows a
    bar over the global draws when the estimate takes more than two seconds.
    """
    index = torch.nonzero(dosage.abs().sum(0) > 0).ravel()
    rows = torch.cat([torch.zeros(1, len(index), dtype=dosage.dtype), dosage[:, index]])
    rows = rows.to(next(module.parameters()).device)
    if covariates is not None:
        covariates = covariates.to(rows)
    if particles_per_chunk is None:
        particles_per_chunk = default_particles_per_chunk(rows.shape[0], module.n_genes)
    draws_per_chunk = max(1, particles_per_chunk // n_samples_per_global)
    output, g = particle_transform(module, method, estimator, library_size)
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
                rows,
                sample,
                library,
                share_basal=share_basal,
                covariates=covariates,
                output=output,
            )
            values = g(x, library)  # (n * inner, 1 + A, G)
            if n_samples_per_global == 1:  # the plain ATE: no copy of every sample
                yield values
            else:
                yield values.reshape(n, n_samples_per_global, *values.shape[1:]).mean(1)
            bar.update(n)


@torch.no_grad()
def estimate_average_treatment_effects(
    module: SAMSVAEModule,
    dosage: torch.Tensor,
    *,
    method: ATEMethod = "perturbseq",
    estimator: ATEEstimator = "expected",
    n_samples: int | Literal["auto"] = "auto",
    target_standard_error: float = DEFAULT_TARGET_STANDARD_ERROR,
    library_size: LibrarySize = PERTURBSEQ_SCALE,
    particles_per_chunk: int | None = None,
    share_basal: bool | None = None,
    covariates: torch.Tensor | None = None,
    progress: bool = False,
) -> EffectEstimate:
    """Monte-Carlo ATE of each dosage row (n_interventions, T), with standard errors.

    Each particle draws the globals from q and z_basal from the prior and takes g of the cells
    it generates at ``library_size``, under the control and every intervention: of drawn counts
    (``estimator="sampled"``) or integrated over the counts (``"expected"``: the same
    expectation up to replacing each cell's total count by its library size, with the count
    noise gone; :func:`particle_transform`). ``share_basal=True`` uses one z_basal per particle
    for the control and all interventions (common random numbers: the same expectation with
    less variance); ``False`` draws one per intervention. The default (None) shares it under
    ``"expected"`` and not under ``"sampled"``, which is then the paper's estimator.
    ``library_size="data"`` draws each particle's library size from the training control
    cells' (the same for the control and the interventions of that particle). A model with
    covariates draws them per particle from the training shares (an effect averaged over
    batches), unless ``covariates`` (n_covariates,) fixes one row.

    The standard error of each effect is the standard deviation over particles of (g under the
    intervention - g under the control), over sqrt(particles). ``n_samples="auto"`` adds chunks
    of particles until every standard error is at most ``target_standard_error`` (between
    ``AUTO_SAMPLES`` particles). ``progress`` shows a bar when the estimate takes more than two
    seconds.
    """
    if share_basal is None:
        share_basal = estimator == "expected"
    auto = n_samples == "auto"
    low, high = AUTO_SAMPLES if auto else (int(n_samples), int(n_samples))
    shape = (dosage.shape[0], module.n_genes)
    sums = torch.zeros(shape, dtype=torch.float64)
    squares = torch.zeros(shape, dtype=torch.float64)
    done = 0
    chunks = _per_draw_means(
        module,
        dosage,
        method=method,
        n_global_samples=high,
        n_samples_per_global=1,
        library_size=library_size,
        particles_per_chunk=particles_per_chunk,
        share_basal=share_basal,
        estimator=estimator,
        covariates=covariates,
        progress=progress,
    )
    for chunk in chunks:
        difference = chunk[:, 1:].sub_(chunk[:, :1])  # in place: the chunk is ours
        sums += difference.sum(0).double().cpu()
        squares += difference.square_().sum(0).double().cpu()
        done += chunk.shape[0]
        if auto and done >= low:  # standard errors only where they can end the loop
            largest = float(_standard_errors(sums, squares, done).max())
            if largest <= target_standard_error:
                break
    errors = _standard_errors(sums, squares, done)
    return EffectEstimate((sums / done).float(), errors.float(), done)


def _standard_errors(sums: torch.Tensor, squares: torch.Tensor, n: int) -> torch.Tensor:
    if n < 2:
        return torch.full_like(sums, float("inf"))
    variance = (squares - sums.square() / n).clamp(min=0) / (n - 1)
    return (variance / n).sqrt()


def model_average_treatment_effects(
    module: SAMSVAEModule, dosage: torch.Tensor, **options: Any
) -> torch.Tensor:
    """The effects of :func:`estimate_average_treatment_effects` (same arguments) alone,
    (n_interventions, n_genes)."""
    return estimate_average_treatment_effects(module, dosage, **options).effects


@torch.no_grad()
def model_average_treatment_effect_draws(
    module: SAMSVAEModule,
    dosage: torch.Tensor,
    *,
    method: ATEMethod = "perturbseq",
    n_global_samples: int = 100,
    n_samples_per_global: int = 100,
    library_size: LibrarySize = PERTURBSEQ_SCALE,
    particles_per_chunk: int | None = None,
    share_basal: bool = True,
    estimator: ATEEstimator = "expected",
    covariates: torch.Tensor | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Posterior draws of the ATE: one per draw of the global variables from q.

    For each of ``n_global_samples`` draws (E, M) ~ q, the ATE given those globals is estimated
    with ``n_samples_per_global`` basal states (common random numbers between control and
    interventions by default) and the counts integrated out (``estimator="expected"``, see
    :func:`particle_transform`) or drawn (``"sampled"``), which keeps the Monte-Carlo part of
    the spread small.
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
        estimator=estimator,
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
