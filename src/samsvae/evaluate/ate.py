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

from samsvae._checks import check_choice, check_library_size, check_positive, check_positive_int
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
    """Number of particles to decode at once for a batch of rows of a given shape.

    Each chunk holds at most ``CHUNK_VALUES`` (2**25) (particle, row, gene) values.

    Parameters
    ----------
    n_rows
        Rows decoded per particle: the control plus every intervention.
    n_genes
        Number of genes.

    Returns
    -------
    int
        ``CHUNK_VALUES // (n_rows * n_genes)``, clipped to between 1 and
        ``MAX_CHUNK_PARTICLES`` (250).
    """
    return max(1, min(MAX_CHUNK_PARTICLES, CHUNK_VALUES // max(1, n_rows * n_genes)))


@dataclass(frozen=True)
class EffectEstimate:
    """Monte-Carlo treatment effects with their standard errors.

    Returned by :func:`estimate_average_treatment_effects`.

    Parameters
    ----------
    effects
        Average treatment effect of each intervention on each gene, (n_interventions, n_genes)
        float32 on the CPU; log2 units under ``method="perturbseq"``.
    standard_errors
        Monte-Carlo standard error of each effect, same shape and units as ``effects``.
    n_samples
        Number of particles that produced the estimates.
    """

    effects: torch.Tensor
    standard_errors: torch.Tensor
    n_samples: int


def transform(x: torch.Tensor, method: ATEMethod) -> torch.Tensor:
    """Apply the expression transform g to cells along the last axis.

    Parameters
    ----------
    x
        Cells, (..., n_genes): counts for ``"perturbseq"``.
    method
        ``"mean"``: g is the identity; ``"perturbseq"``: g(x) = log2(1 + 1e4 * x / sum_j x_j).

    Returns
    -------
    torch.Tensor
        g(x), same shape as ``x``: ``x`` itself (not a copy) for ``"mean"``; for
        ``"perturbseq"`` a new tensor in log2 units, in which cells with zero total counts map
        to 0, not NaN.
    """
    if method == "mean":
        return x
    total = x.sum(-1, keepdim=True)
    # in place on one new tensor (an ATE chunk has 2e8 entries); the same operations, in the
    # same order, as log2(1 + where(total > 0, 1e4 * x / total, 0))
    scaled = x.mul(PERTURBSEQ_SCALE).div_(total.clamp(min=1e-12)).mul_(total > 0)
    return scaled.add_(1).log2_()


def check_effect_arguments(
    method: Any, estimator: Any, library_size: Any, **particles: Any
) -> None:
    """Refuse an unknown method or estimator, a library size that is neither ``"data"`` nor a
    positive number, or particle counts below 1 (``n_samples`` may also be ``"auto"``)."""
    check_choice("method", method, ATE_METHODS)
    check_choice("estimator", estimator, ATE_ESTIMATORS)
    check_library_size(library_size)
    for name, value in particles.items():
        if not (name == "n_samples" and isinstance(value, str) and value == "auto"):
            check_positive_int(name, value)


def particle_transform(
    module: SAMSVAEModule, method: ATEMethod, estimator: ATEEstimator, library_size: LibrarySize
) -> tuple[CountOutput, Callable[[torch.Tensor, float | torch.Tensor], torch.Tensor]]:
    """Choose what each particle's decoder returns, and how to take g of it.

    Parameters
    ----------
    module
        The fitted model.
    method
        The transform g: ``"mean"`` or ``"perturbseq"`` (:func:`transform`).
    estimator
        ``"sampled"`` draws counts and applies :func:`transform`; ``"expected"`` takes the
        likelihood's mean mu and returns E[g(x) | mu].
    library_size
        A fixed library size, or ``"data"`` (library sizes drawn from the training control
        cells'); under ``"expected"`` with ``"perturbseq"`` it sets the range of the table of
        expectations.

    Returns
    -------
    output : {"counts", "mean", "log_mean"}
        What to ask the decoder for (the ``output`` argument of ``module.generate``): drawn
        counts, the likelihood's mean, or its log.
    g : callable
        ``g(values, library)`` maps the decoder's output (..., n_genes) and the library size
        (a number, or (n_particles, 1) with one per particle) to g(x), or to its expectation
        given mu, (..., n_genes).

    Raises
    ------
    ValueError
        If ``estimator`` is not ``"expected"`` or ``"sampled"``.

    Notes
    -----
    Under ``"expected"``, g of mu is mu itself for ``"mean"``. For ``"perturbseq"`` it is
    E[log2(1 + 1e4 x_g / l)], which replaces the cell total S = sum_j x_j by its expectation,
    the particle's library size l (the per-gene expectation itself is tabulated to about
    3e-4). That is the one approximation: to second order in S - l (and leaving out x_g's own
    part of S) it moves each mean by at most CV^2 / (2 ln 2), with
    CV^2 = Var(S) / l^2 = sum_j mu_j (1 + mu_j / theta_j) / l^2, and it largely cancels between
    control and intervention (measured on the effects of a simulation and two real screens:
    -0.011 to 0.000 log2 units on average; see "Treatment-effect estimators" in the
    documentation's results page).

    A likelihood without counts (``normal``) has nothing to integrate under
    ``"perturbseq"``: it is sampled whatever ``estimator`` says.
    """
    check_choice("estimator", estimator, ATE_ESTIMATORS)
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
    """Estimate the average treatment effect of each dosage row, with standard errors.

    ATE(a) = E[g(x) | do(d_a)] - E[g(x) | do(0)], estimated by Monte Carlo. Each particle
    draws the global variables from q and z_basal from the prior, and takes g of the cells it
    generates at ``library_size`` under the control and under every intervention.

    Parameters
    ----------
    module
        The fitted model.
    dosage
        Dosage rows d_a, (n_interventions, n_perturbations); the control (all zeros) is added
        internally.
    method
        The transform g: ``"perturbseq"`` (default; log2(1 + 1e4 * x / sum_j x_j), effects
        in log2 units) or ``"mean"`` (identity; effects in the units of the generated
        expression).
    estimator
        ``"expected"`` (default) integrates each gene's counts out given the particle's latent
        state: the same expectation up to replacing each cell's total count by its library
        size, with the count noise gone (:func:`particle_transform`). ``"sampled"`` takes g of
        drawn counts.
    n_samples
        Number of particles, or ``"auto"`` (default): add chunks of particles until every
        standard error is at most ``target_standard_error``, between ``AUTO_SAMPLES``
        (200 and 10,000) particles.
    target_standard_error
        Largest standard error accepted by ``n_samples="auto"``, in the units of the effects
        (default 0.02).
    library_size
        Library size of the generated cells (default 1e4), or ``"data"``: each particle draws
        its own from the training control cells' library sizes, the same for the control and
        the interventions of that particle.
    particles_per_chunk
        Particles decoded at once; by default chosen from the shape
        (:func:`default_particles_per_chunk`).
    share_basal
        True uses one z_basal per particle for the control and all interventions (common
        random numbers: the same expectation with less variance); False draws one per
        intervention. The default (None) shares it under ``"expected"`` and not under
        ``"sampled"``, which is then the paper's estimator.
    covariates
        One-hot covariate row (n_covariates,) that fixes the covariates of every particle. By
        default a model with covariates draws them per particle from the training cells'
        shares (an effect averaged over batches).
    progress
        Show a progress bar when the estimate takes more than two seconds.

    Returns
    -------
    EffectEstimate
        ``effects`` and ``standard_errors`` (n_interventions, n_genes) float32 on the CPU, and
        ``n_samples``, the number of particles used.

    Notes
    -----
    The standard error of each effect is the standard deviation over particles of (g under
    the intervention - g under the control), divided by sqrt(number of particles); it is
    infinite with fewer than two particles. With ``n_samples="auto"`` the standard errors are
    checked after each chunk once 200 particles are done, so the number used is a multiple of
    the chunk size, capped at 10,000.
    """
    check_effect_arguments(method, estimator, library_size, n_samples=n_samples)
    check_positive("target_standard_error", target_standard_error)
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
    """Estimate the average treatment effect of each dosage row, without standard errors.

    Parameters
    ----------
    module
        The fitted model.
    dosage
        Dosage rows, (n_interventions, n_perturbations).
    **options
        Keyword arguments of :func:`estimate_average_treatment_effects` (``method``,
        ``estimator``, ``n_samples``, ``library_size``, ...), with the same defaults.

    Returns
    -------
    torch.Tensor
        The effects of :func:`estimate_average_treatment_effects`, (n_interventions, n_genes)
        float32 on the CPU; log2 units under ``method="perturbseq"``.
    """
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
    """Draw the ATE from its posterior: one estimate per draw of the global variables from q.

    For each of ``n_global_samples`` draws (E, M) ~ q, the ATE given those globals is
    estimated from ``n_samples_per_global`` basal states, which keeps the Monte-Carlo part of
    the spread small. Quantiles over the draws are posterior intervals of the treatment
    effects; the spread includes the inner Monte-Carlo error, so intervals are slightly
    conservative.

    Parameters
    ----------
    module
        The fitted model.
    dosage
        Dosage rows d_a, (n_interventions, n_perturbations).
    method
        The transform g: ``"perturbseq"`` (default; log2 units) or ``"mean"``, as in
        :func:`estimate_average_treatment_effects`.
    n_global_samples
        Number of draws of the global variables, i.e. of ATE draws returned (default 100).
    n_samples_per_global
        Basal states (and counts, or their expectation) averaged per global draw
        (default 100).
    library_size
        Library size of the generated cells (default 1e4), or ``"data"`` to draw one per
        particle from the training control cells' library sizes.
    particles_per_chunk
        Particles decoded at once; by default chosen from the shape
        (:func:`default_particles_per_chunk`).
    share_basal
        True (default) uses one basal state per particle for the control and every
        intervention (common random numbers); False draws one per intervention.
    estimator
        ``"expected"`` (default) integrates the counts out (:func:`particle_transform`);
        ``"sampled"`` draws them.
    covariates
        One-hot covariate row (n_covariates,) that fixes the covariates; by default each
        particle draws them from the training cells' shares.
    progress
        Show a progress bar over the global draws when the estimate takes more than two
        seconds.

    Returns
    -------
    torch.Tensor
        ATE draws, (n_global_samples, n_interventions, n_genes) float32 on the CPU.
    """
    check_effect_arguments(
        method,
        estimator,
        library_size,
        n_global_samples=n_global_samples,
        n_samples_per_global=n_samples_per_global,
    )
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
    """Find the cells of a block whose transform g(x) is defined.

    Parameters
    ----------
    block
        Cells as rows, (n_rows, n_genes), sparse or dense.
    method
        ``"mean"``: every row is defined. ``"perturbseq"``: rows with total counts > 0 are
        (x / sum_j x_j is undefined at 0, and :func:`transform` maps such rows to zeros,
        which are not expression values).

    Returns
    -------
    numpy.ndarray
        (n_rows,) bool, True where g(x) is defined.
    """
    if method == "mean":
        return np.ones(block.shape[0], dtype=bool)
    return np.asarray(block.sum(axis=1)).ravel() > 0


def transform_cells(block: sp.spmatrix | np.ndarray, method: ATEMethod) -> np.ndarray:
    """Apply the transform g to a block of cells.

    Parameters
    ----------
    block
        Cells as rows, (n_rows, n_genes), sparse or dense.
    method
        ``"mean"`` (identity) or ``"perturbseq"`` (:func:`transform`).

    Returns
    -------
    numpy.ndarray
        g(x), (n_rows, n_genes) dense float64; under ``"perturbseq"`` rows with zero total
        counts are zeros.
    """
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
    """Transform the cells with a given label, leaving out those without a defined g(x).

    Parameters
    ----------
    expression
        Counts, (n_cells, n_genes), sparse CSR or dense.
    labels
        Label of each cell, (n_cells,).
    label
        The label to select.
    method
        ``"mean"`` or ``"perturbseq"``; under ``"perturbseq"`` cells with zero total counts
        are left out (:func:`defined_cells`).
    needed_for
        What the cells are needed for, quoted in the error message.

    Returns
    -------
    numpy.ndarray
        g(x) of the selected cells, (n_selected, n_genes) float64.

    Raises
    ------
    ValueError
        If no cell has the label, or (under ``"perturbseq"``) every such cell has zero total
        counts.
    """
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
    """Compute the observed average treatment effects from labelled cells.

    ATE(a) is the mean g(x) of the cells labelled ``a`` minus that of the control cells.

    Parameters
    ----------
    expression
        Counts, (n_cells, n_genes), sparse CSR or dense.
    labels
        Perturbation label of each cell, (n_cells,).
    interventions
        Labels whose effects to compute.
    control
        Label of the control cells.
    method
        ``"perturbseq"`` (default): g(x) = log2(1 + 1e4 * x / sum_j x_j), effects in log2
        units; cells with zero total counts are left out of both means. ``"mean"``: g is the
        identity, effects in counts.

    Returns
    -------
    numpy.ndarray
        Effects, (len(interventions), n_genes) float64, rows in the order of
        ``interventions``.

    Raises
    ------
    ValueError
        If a label (or the control) has no cells, or only cells with zero total counts under
        ``"perturbseq"``.
    """

    def group_mean(label: str) -> np.ndarray:
        values = transformed_cells_of(expression, labels, label, method, needed_for="data ATE")
        return values.mean(0)

    control_mean = group_mean(control)
    return np.stack([group_mean(a) - control_mean for a in interventions])
