"""What a fitted model says about cells: latent states, generated cells, treatment effects
and held-out likelihood."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import anndata as ad
import numpy as np
import pandas as pd
import torch

from samsvae._checks import (
    check_choice,
    check_fraction,
    check_library_size,
    check_positive_int,
    check_seed,
)
from samsvae.base._common import seeded
from samsvae.data import make_loader
from samsvae.evaluate.ate import (
    DEFAULT_TARGET_STANDARD_ERROR,
    ATEEstimator,
    ATEMethod,
    LibrarySize,
    estimate_average_treatment_effects,
    model_average_treatment_effect_draws,
)
from samsvae.evaluate.likelihood import predictive_iwelbo

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


class EffectsMixin:
    """Latent representation, ``predict``, treatment effects with errors and intervals, IWELBO."""

    @torch.no_grad()
    def get_latent_representation(
        self,
        adata: ad.AnnData | None = None,
        *,
        latent: Literal["basal", "full"] = "basal",
        n_samples: int = 20,
        batch_size: int = 1024,
        seed: int | None = 0,
    ) -> np.ndarray:
        """Posterior mean latent state of each cell.

        Averages the encoder's mean over ``n_samples`` draws of the global variables from the
        guide.

        Parameters
        ----------
        adata
            Cells to embed, with the model's genes in the model's order; ``None`` (default) uses
            the model's AnnData (the training data, or the one given to :meth:`load`).
        latent
            ``"basal"`` (default): z_basal, the cell state without the latent shift of its
            perturbations; ``"full"``: z = z_basal + shift.
        n_samples
            Draws of the global variables to average over.
        batch_size
            Cells encoded at a time.
        seed
            Seed of torch's random number generator for the draws; ``None`` draws from its
            current state. The caller's random state is left unchanged either way.

        Returns
        -------
        numpy.ndarray
            (n_cells, n_latent), rows in the order of the cells of ``adata``.

        Raises
        ------
        ValueError
            If ``latent`` is neither ``"basal"`` nor ``"full"``, or if ``adata`` is ``None`` for
            a model loaded without data.

        Notes
        -----
        :class:`~samsvae.ConditionalVAE` has no latent shift: both choices return the mean of
        q(z | x, d).
        """
        check_choice("latent", latent, ("basal", "full"))
        check_positive_int("n_samples", n_samples)
        check_positive_int("batch_size", batch_size)
        check_seed(seed)
        adata, dataset = self._dataset(adata)
        rows = np.arange(adata.n_obs)
        out = []
        with seeded(seed):
            for batch in make_loader(dataset, rows, batch_size=batch_size, shuffle=False):
                batch = batch.to(self._device())
                sample = self.module.sample_globals(batch.perturbation_index, n_samples)
                z = self.module.posterior_latent_mean(
                    batch.counts,
                    batch.dosage,
                    sample,
                    full=latent == "full",
                    covariates=batch.covariates,
                )
                out.append(z.mean(0).cpu().numpy())
        return np.concatenate(out)

    @torch.no_grad()
    def predict(
        self,
        perturbations: Sequence[str],
        *,
        n_samples: int = 100,
        library_size: LibrarySize | None = None,
        covariates: Mapping[str, str] | None = None,
        seed: int | None = 0,
    ) -> ad.AnnData:
        """Generate ``n_samples`` cells for each requested perturbation or '+' combination.

        Parameters
        ----------
        perturbations
            Labels to generate cells for: the control, trained perturbations, or combinations
            of trained perturbations joined by the combination delimiter (``"A+B"``; with
            ``dosage_encoding="unique"``, and for :class:`~samsvae.SVAEPlus`, only labels seen
            in training). A single string is one label.
        n_samples
            Cells generated per label.
        library_size
            Library size (total count) of the generated cells. ``None`` (default): the median
            training library size; a number fixes it; ``"data"``: each sample draws one from
            the training control cells' library sizes, the same for every requested label of
            that sample.
        covariates
            For a model with covariates, one category per covariate key (``{"batch": "b1"}``)
            fixes them; ``None`` (default): each sample draws them from the training cells'
            shares.
        seed
            Seed of torch's random number generator for the draws; ``None`` draws from its
            current state. The caller's random state is left unchanged either way.

        Returns
        -------
        anndata.AnnData
            (len(perturbations) * n_samples) x genes: the generated counts (values for the
            ``normal`` likelihood) in ``X``, the ``n_samples`` cells of each label together in
            request order, labelled in ``obs["perturbation"]``.

        Notes
        -----
        Each sample draws the global variables from the guide, shared by all requested labels,
        and each generated cell draws its z_basal from the prior.
        """
        check_positive_int("n_samples", n_samples)
        if library_size is not None:
            check_library_size(library_size)
        check_seed(seed)
        dosage = self._dosage_rows(perturbations)
        covariate_row = self._covariate_row(covariates)
        labels = [
            str(p) for p in ([perturbations] if isinstance(perturbations, str) else perturbations)
        ]
        library = (
            float(self.module.reference_library_size) if library_size is None else library_size
        )
        index = torch.nonzero(dosage.abs().sum(0) > 0).ravel()
        with seeded(seed):
            if library == "data":
                library = self.module.draw_library_sizes(n_samples)
            sample = self.module.sample_globals(index.to(self._device()), n_samples)
            rows = dosage[:, index].to(self._device())
            x = self.module.generate(rows, sample, library, covariates=covariate_row)  # (S, R, G)
        x = x.transpose(0, 1).reshape(-1, self.design.n_genes).cpu().numpy()
        obs = pd.DataFrame(
            {"perturbation": pd.Categorical(np.repeat(labels, n_samples))},
            index=[f"generated{i}" for i in range(x.shape[0])],
        )
        return ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=list(self.design.genes)))

    def average_treatment_effects(
        self,
        perturbations: Sequence[str] | None = None,
        *,
        method: ATEMethod = "perturbseq",
        estimator: ATEEstimator = "expected",
        n_samples: int | Literal["auto"] = "auto",
        target_standard_error: float = DEFAULT_TARGET_STANDARD_ERROR,
        library_size: LibrarySize = "data",
        share_basal: bool | None = None,
        covariates: Mapping[str, str] | None = None,
        seed: int | None = 0,
        progress_bar: bool = True,
    ) -> ad.AnnData:
        """Model average treatment effect (ATE) of each perturbation against the control.

        Parameters
        ----------
        perturbations
            Interventions to score, labels as in :meth:`predict`. ``None`` (default): every
            label seen in the training data except the control.
        method
            Scale of the effect. ``"perturbseq"`` (default): difference of the means of
            log2(1 + 1e4 x / total count), per gene, in log2 units; ``"mean"``: difference of
            the mean counts.
        estimator
            ``"expected"`` (default) integrates each gene's counts out given the cell's expected
            expression (exact up to replacing the cell's total count by its library size, and a
            tabulation error below 1e-3); ``"sampled"`` draws the counts, the paper's estimator,
            with more Monte-Carlo noise for the same number of particles.
        n_samples
            Number of particles. ``"auto"`` (default) adds particles until every effect's
            standard error is at most ``target_standard_error`` (at least 200, at most 10,000).
        target_standard_error
            Target standard error of ``n_samples="auto"`` (log2 units under
            ``method="perturbseq"``).
        library_size
            ``"data"`` (default): each particle's cells are sampled at a library size drawn from
            the training control cells' library sizes, the effect a screen of this depth would
            measure and the one to compare with effects observed in the data. A number fixes
            it; the paper's estimator uses ``1e4`` (deep cells: with ``method="perturbseq"``
            larger, less noise-damped log-fold changes than shallow data show).
        share_basal
            ``True`` reuses each particle's basal state for the control and every intervention
            (common random numbers: same expectation, lower variance); ``False`` draws one per
            intervention. ``None`` (default) shares it under ``estimator="expected"`` only, so
            that ``estimator="sampled"`` is the paper's estimator.
        covariates
            For a model with covariates, one category per covariate key at which to take the
            effect; ``None`` (default) averages it over the training cells' categories.
        seed
            Seed of torch's random number generator for the draws; ``None`` draws from its
            current state. The caller's random state is left unchanged either way.
        progress_bar
            Show progress when the estimate takes more than two seconds.

        Returns
        -------
        anndata.AnnData
            Interventions x genes: the effects in ``X``, their standard errors in
            ``layers["standard_error"]``, and ``uns["ate_method"]``, ``uns["library_size"]``,
            ``uns["estimator"]`` and ``uns["n_samples"]`` (particles used).

        Raises
        ------
        ValueError
            If ``method`` is not supported or a label is unknown.

        Notes
        -----
        Each particle draws the global variables from the guide and a basal state from the
        prior, and decodes a cell under the control and under each intervention. The effect is
        the mean over particles of the difference between intervention and control, and its
        standard error the standard deviation of that difference over the square root of the
        number of particles.
        """
        check_seed(seed)  # the estimator checks the rest of its arguments
        if perturbations is None:
            perturbations = self._observed_interventions()
        dosage = self._dosage_rows(perturbations)
        with seeded(seed):
            estimate = estimate_average_treatment_effects(
                self.module,
                dosage,
                method=method,
                estimator=estimator,
                n_samples=n_samples,
                target_standard_error=target_standard_error,
                library_size=library_size,
                share_basal=share_basal,
                covariates=self._covariate_row(covariates),
                progress=progress_bar,
            )
        result = self._effects_anndata(
            estimate.effects.numpy(), perturbations, method, library_size
        )
        result.layers["standard_error"] = estimate.standard_errors.numpy()
        result.uns["estimator"] = estimator
        result.uns["n_samples"] = estimate.n_samples
        return result

    def treatment_effect_intervals(
        self,
        perturbations: Sequence[str] | None = None,
        *,
        level: float = 0.9,
        method: ATEMethod = "perturbseq",
        n_global_samples: int = 100,
        n_samples_per_global: int = 100,
        library_size: LibrarySize = "data",
        estimator: ATEEstimator = "expected",
        covariates: Mapping[str, str] | None = None,
        seed: int | None = 0,
        progress_bar: bool = True,
    ) -> ad.AnnData:
        """Posterior intervals of the treatment effects from draws of the global variables.

        Parameters
        ----------
        perturbations
            Interventions to score, as in :meth:`average_treatment_effects`.
        level
            Probability of the central interval, strictly between 0 and 1.
        method
            Scale of the effect, as in :meth:`average_treatment_effects`.
        n_global_samples
            Draws of the global variables (E, M) from the guide.
        n_samples_per_global
            Cells per draw for its ATE estimate.
        library_size
            As in :meth:`average_treatment_effects`.
        estimator
            As in :meth:`average_treatment_effects`.
        covariates
            As in :meth:`average_treatment_effects`.
        seed
            Seed of torch's random number generator for the draws; ``None`` draws from its
            current state. The caller's random state is left unchanged either way.
        progress_bar
            As in :meth:`average_treatment_effects`.

        Returns
        -------
        anndata.AnnData
            Interventions x genes: ``X`` the mean of the draws, ``layers["lower"]`` and
            ``layers["upper"]`` the interval, ``uns["level"]``, ``uns["ate_method"]`` and
            ``uns["library_size"]``.

        Raises
        ------
        ValueError
            If ``level`` is not strictly between 0 and 1 or ``method`` is not supported.

        Notes
        -----
        Each of ``n_global_samples`` draws of (E, M) gives an ATE estimate from
        ``n_samples_per_global`` cells (common random numbers for control and intervention);
        the central ``level`` interval of those estimates bounds each effect. The spread
        includes the Monte-Carlo error of the inner estimate (intervals are a little
        conservative; raise ``n_samples_per_global`` to shrink it). A model without global
        variables (:class:`~samsvae.ConditionalVAE`) has only that Monte-Carlo spread.
        """
        check_fraction("level", level)
        check_seed(seed)  # the draws check the rest of their arguments
        perturbations = self._observed_interventions() if perturbations is None else perturbations
        with seeded(seed):
            draws = model_average_treatment_effect_draws(
                self.module,
                self._dosage_rows(perturbations),
                method=method,
                n_global_samples=n_global_samples,
                n_samples_per_global=n_samples_per_global,
                library_size=library_size,
                estimator=estimator,
                covariates=self._covariate_row(covariates),
                progress=progress_bar,
            ).numpy()
        tail = (1 - level) / 2
        result = self._effects_anndata(draws.mean(0), perturbations, method, library_size)
        result.layers["lower"] = np.quantile(draws, tail, axis=0).astype(np.float32)
        result.layers["upper"] = np.quantile(draws, 1 - tail, axis=0).astype(np.float32)
        result.uns["level"] = level
        return result

    def _effects_anndata(
        self,
        effects: np.ndarray,
        perturbations: Sequence[str],
        method: str,
        library_size: LibrarySize,
    ) -> ad.AnnData:
        result = ad.AnnData(
            X=np.asarray(effects, dtype=np.float32),
            obs=pd.DataFrame(
                index=[perturbations]
                if isinstance(perturbations, str)
                else [str(p) for p in perturbations]
            ),
            var=pd.DataFrame(index=list(self.design.genes)),
        )
        result.uns["ate_method"] = method
        result.uns["library_size"] = library_size
        return result

    def iwelbo(
        self,
        adata: ad.AnnData | None = None,
        *,
        n_particles: int = 100,
        batch_size: int = 256,
        seed: int | None = 0,
        progress_bar: bool = True,
    ) -> float:
        """Mean predictive importance-weighted ELBO (IWELBO) per cell.

        Parameters
        ----------
        adata
            Cells to score, with the model's genes in the model's order; ``None`` (default)
            uses the model's AnnData (the training data, or the one given to :meth:`load`).
        n_particles
            Importance samples per cell.
        batch_size
            Cells scored at a time.
        seed
            Seed of torch's random number generator for the draws; ``None`` draws from its
            current state. The caller's random state is left unchanged either way.
        progress_bar
            Show progress when the computation takes more than two seconds.

        Returns
        -------
        float
            The IWELBO averaged over the cells (natural log; higher is better).

        Notes
        -----
        The ``n_particles`` draws of the global variables are made once and shared by all
        cells; particle p of each cell's z_basal is paired with global draw p. The global
        variables are not scored against their priors.
        """
        check_positive_int("n_particles", n_particles)
        check_positive_int("batch_size", batch_size)
        check_seed(seed)
        adata, dataset = self._dataset(adata)
        loader = make_loader(dataset, np.arange(adata.n_obs), batch_size=batch_size, shuffle=False)
        with seeded(seed):
            values = predictive_iwelbo(
                self.module, loader, n_particles=n_particles, progress=progress_bar
            )
        return float(values.mean())
