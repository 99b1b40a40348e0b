"""Reading a fitted model: masks, posterior summaries, perturbation similarity and clusters,
latent programs and the genes they move, gene-set enrichment and genetic interactions."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
import pandas as pd
import torch

from samsvae._checks import (
    check_choice,
    check_fraction,
    check_positive,
    check_positive_int,
    check_seed,
)
from samsvae.base._common import seeded
from samsvae.evaluate import interpret
from samsvae.evaluate.ate import ATE_METHODS, ATEMethod

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


class InterpretationMixin:
    """Getters of the global posterior and the interpretation built on them."""

    has_masks: ClassVar[bool] = True

    def get_target_gene_effects(self) -> pd.DataFrame:
        """Posterior of the direct effects on targeted genes (``target_genes``).

        Returns
        -------
        pandas.DataFrame
            One row per (perturbation, gene) pair, with columns ``perturbation``, ``gene``,
            ``mean`` and ``sd`` (posterior mean and standard deviation of beta, the natural-log
            change of the gene's expected share) and ``log2_fold_change`` (the mean over
            log 2). Empty, with these columns, for a model without such pairs.
        """
        columns = ["perturbation", "gene", "mean", "sd", "log2_fold_change"]
        effects = getattr(self.module, "target_effects", None)
        if effects is None:
            return pd.DataFrame(columns=columns)
        with torch.no_grad():
            loc, scale = (value.cpu().numpy() for value in effects.posterior())
        return pd.DataFrame(
            {
                "perturbation": [
                    self.design.perturbations[t] for t in effects.perturbation.tolist()
                ],
                "gene": [self.design.genes[g] for g in effects.gene.tolist()],
                "mean": loc,
                "sd": scale,
                "log2_fold_change": loc / np.log(2),
            },
            columns=columns,
        )

    def get_mask_probabilities(self) -> pd.DataFrame:
        """Posterior mask probabilities q(m_tk = 1).

        Returns
        -------
        pandas.DataFrame
            Perturbations x latent dimensions (``latent0``, ``latent1``, ...). Every entry is 1
            for :class:`~samsvae.CPAVAE`.

        Raises
        ------
        TypeError
            For :class:`~samsvae.ConditionalVAE`, which has no masks.
        """
        with torch.no_grad():
            probabilities = self.module.mask_probabilities().cpu().numpy()
        return pd.DataFrame(
            probabilities,
            index=list(self.design.perturbations),
            columns=[f"latent{k}" for k in range(probabilities.shape[1])],
        )

    def _require_globals(self, what: str) -> None:
        if not self.has_masks:
            msg = (
                f"{type(self).__name__} has no per-perturbation latent shifts; {what} needs some."
            )
            raise ValueError(msg)

    def _latent_names(self) -> list[str]:
        return [f"latent{k}" for k in range(self.config.n_latent)]

    def get_global_posterior(
        self, *, level: float = 0.9, n_samples: int = 1000, seed: int | None = 0
    ) -> pd.DataFrame:
        """Posterior summaries of the global variables, one row per (perturbation, latent).

        Parameters
        ----------
        level
            Probability of the central credible interval of e_tk, strictly between 0 and 1.
        n_samples
            Draws from the guide for the summaries that are not exact (see Notes).
        seed
            Seed of torch's random number generator for the draws; ``None`` draws from its
            current state. The caller's random state is left unchanged either way.

        Returns
        -------
        pandas.DataFrame
            Indexed by (``perturbation``, ``latent``), with columns ``mask_probability``
            q(m_tk = 1); ``embedding_mean``, ``embedding_lower``, ``embedding_upper`` (mean and
            central ``level`` credible interval of e_tk); ``shift_mean`` E_q[e_tk m_tk].

        Raises
        ------
        ValueError
            For a model without per-perturbation latent shifts
            (:class:`~samsvae.ConditionalVAE`), or a ``level`` outside (0, 1).

        Notes
        -----
        Exact for mean-field guides, from ``n_samples`` draws otherwise.
        """
        check_fraction("level", level)
        check_positive_int("n_samples", n_samples)
        check_seed(seed)
        self._require_globals("get_global_posterior")
        with seeded(seed):
            summary = interpret.summarise_globals(
                self.module.guide, self.design.n_perturbations, level=level, n_samples=n_samples
            )
        return interpret.global_summary_table(
            summary, self.design.perturbations, self._latent_names()
        )

    def get_perturbation_similarity(
        self,
        *,
        metric: interpret.SimilarityMetric = "cosine",
        n_samples: int = 1000,
        seed: int | None = 0,
    ) -> pd.DataFrame:
        """Perturbations x perturbations similarity in the sparse latent space.

        Parameters
        ----------
        metric
            ``"cosine"`` (default): cosine of the rows of E_q[e_t * m_t]; ``"jaccard"``: Jaccard
            index of the masks m_t = 1[q(m_tk = 1) > 0.5].
        n_samples
            Draws for the posterior summaries, as in :meth:`get_global_posterior`.
        seed
            Seed of torch's random number generator for the draws; ``None`` draws from its
            current state. The caller's random state is left unchanged either way.

        Returns
        -------
        pandas.DataFrame
            Square, indexed and columned by perturbation, with 1 on the diagonal. A perturbation
            with no shift (cosine) or no active mask entry (Jaccard) has similarity 0 to every
            other.

        Raises
        ------
        ValueError
            If ``metric`` is not supported, or for a model without per-perturbation latent
            shifts.
        """
        check_choice("metric", metric, interpret.SIMILARITY_METRICS)
        check_positive_int("n_samples", n_samples)
        check_seed(seed)
        posterior = self.get_global_posterior(n_samples=n_samples, seed=seed)
        column = "shift_mean" if metric == "cosine" else "mask_probability"
        values = posterior[column].to_numpy().reshape(self.design.n_perturbations, -1)
        similarity = (
            interpret.cosine_similarity(values)
            if metric == "cosine"
            else interpret.jaccard_similarity(values > 0.5)
        )
        names = list(self.design.perturbations)
        return pd.DataFrame(similarity, index=names, columns=names)

    def get_perturbation_clusters(
        self,
        *,
        n_clusters: int | None = None,
        distance_threshold: float | None = None,
        metric: interpret.SimilarityMetric = "cosine",
        seed: int | None = 0,
    ) -> pd.DataFrame:
        """Perturbation programs: average-linkage clustering of the perturbations.

        The distance between two perturbations is 1 - similarity
        (:meth:`get_perturbation_similarity`). Pass exactly one of ``n_clusters`` or
        ``distance_threshold``.

        Parameters
        ----------
        n_clusters
            Cut the dendrogram into at most this many clusters.
        distance_threshold
            Cut the dendrogram where the merge distance exceeds this value.
        metric
            Similarity, as in :meth:`get_perturbation_similarity`.
        seed
            Seed of torch's random number generator for the draws; ``None`` draws from its
            current state. The caller's random state is left unchanged either way.

        Returns
        -------
        pandas.DataFrame
            Indexed by perturbation, in dendrogram leaf order (a row order for heatmaps), with
            columns ``cluster`` (1, 2, ...) and ``leaf_order``.

        Raises
        ------
        ValueError
            Unless exactly one of ``n_clusters`` and ``distance_threshold`` is given.
        """
        if n_clusters is not None:
            check_positive_int("n_clusters", n_clusters)
        if distance_threshold is not None:
            check_positive("distance_threshold", distance_threshold)
        similarity = self.get_perturbation_similarity(metric=metric, seed=seed)
        clustering = interpret.cluster_by_similarity(
            similarity.to_numpy(), n_clusters=n_clusters, distance_threshold=distance_threshold
        )
        table = pd.DataFrame({"cluster": clustering.labels}, index=similarity.index)
        table["leaf_order"] = np.argsort(clustering.order)
        return table.iloc[clustering.order]

    def get_latent_programs(
        self,
        *,
        rotation: interpret.ProgramRotation = "varimax",
        n_samples: int = 1000,
        seed: int | None = 0,
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Latent programs: an orthonormal basis in which the perturbation shifts are sparse.

        The shifts are the perturbations' expected shifts E_q[e_t * m_t]. Use the programs when
        the masks are dense: the latent axes are then mixtures of mechanisms, while the rotated
        axes can point at them (:mod:`samsvae.evaluate.interpret`).

        Parameters
        ----------
        rotation
            ``"varimax"`` (default): the varimax rotation of the shifts; ``"lp"``: their Lp
            rotation (p = 1.5), which also finds a perturbation's weaker mechanisms where
            varimax lets its strongest decide the axes; ``"none"``: the latent axes themselves.
        n_samples
            Draws for the posterior summaries, as in :meth:`get_global_posterior`.
        seed
            Seed of torch's random number generator for the draws; ``None`` draws from its
            current state. The caller's random state is left unchanged either way.

        Returns
        -------
        loadings : pandas.DataFrame
            Perturbations x programs: how far each perturbation shifts the cell along each
            program.
        directions : pandas.DataFrame
            Programs x latent dimensions: the unit vectors of the programs.

        Raises
        ------
        ValueError
            For a model without per-perturbation latent shifts.

        Notes
        -----
        Programs are ordered by their sum of squared loadings, largest first, and named
        ``program0``, ``program1``, ... (``latent0``, ... with ``rotation="none"``).
        """
        check_choice("rotation", rotation, interpret.PROGRAM_ROTATIONS)
        check_positive_int("n_samples", n_samples)
        check_seed(seed)
        self._require_globals("get_latent_programs")
        posterior = self.get_global_posterior(n_samples=n_samples, seed=seed)
        shifts = posterior["shift_mean"].to_numpy().reshape(self.design.n_perturbations, -1)
        programs = interpret.latent_programs(shifts, rotation=rotation)
        names = self._program_names(rotation)
        loadings = pd.DataFrame(programs.loadings, index=self.design.perturbations, columns=names)
        directions = pd.DataFrame(programs.directions, index=names, columns=self._latent_names())
        return loadings, directions

    def _program_names(self, rotation: str) -> list[str]:
        # Rotated programs are not latent dimensions: name them apart.
        prefix = "latent" if rotation == "none" else "program"
        return [f"{prefix}{k}" for k in range(self.config.n_latent)]

    def get_latent_gene_effects(
        self,
        *,
        step: float = 1.0,
        n_top: int | None = None,
        rotation: interpret.ProgramRotation = "none",
    ) -> pd.DataFrame:
        """Genes each latent program moves, ranked by the size of the change.

        The change of gene g along direction d is f_g(step d) - f_g(0), at the basal mean
        z = 0, with d a latent axis (``rotation="none"``) or a program direction of
        :meth:`get_latent_programs` (``"varimax"`` or ``"lp"``).

        Parameters
        ----------
        step
            Length of the step along each direction, in latent units.
        n_top
            Keep the first ``n_top`` genes of each program; ``None`` keeps every gene.
        rotation
            ``"none"`` (default): the latent axes; ``"varimax"`` or ``"lp"``: the programs of
            :meth:`get_latent_programs` with that rotation.

        Returns
        -------
        pandas.DataFrame
            Long table with columns ``latent`` (the axis or program), ``rank`` (1 moves most),
            ``gene`` and ``effect``, genes ranked by ``|effect|`` within each program.

        Raises
        ------
        ValueError
            For a model without per-perturbation latent shifts.

        Notes
        -----
        f is the decoder's log expected normalised expression (natural log; for the ``normal``
        likelihood, the expected value), with any covariates at the training cells' shares.
        """
        check_positive("step", step)
        if n_top is not None:
            check_positive_int("n_top", n_top)
        check_choice("rotation", rotation, interpret.PROGRAM_ROTATIONS)
        self._require_globals("get_latent_gene_effects")
        if rotation == "none":  # the axes themselves: no posterior summary needed
            directions = pd.DataFrame(np.eye(self.config.n_latent), index=self._latent_names())
        else:
            _, directions = self.get_latent_programs(rotation=rotation)
        decode = interpret.decoder_expression_scale(self.module)
        response = interpret.latent_gene_response(
            decode, self.config.n_latent, step=float(step), directions=directions.to_numpy()
        )
        return interpret.rank_genes(
            response.numpy(), self.design.genes, latent_names=directions.index, n_top=n_top
        )

    def gene_set_enrichment(
        self,
        gene_sets: Mapping[str, Sequence[str]] | str | Path,
        *,
        of: Literal["perturbation_clusters", "latent_programs"] = "latent_programs",
        n_clusters: int = 10,
        n_top: int = 20,
    ) -> pd.DataFrame:
        """Enrichment of ``gene_sets`` in each program.

        Parameters
        ----------
        gene_sets
            Gene sets: a mapping ``{name: genes}``, or the path of a GMT file.
        of
            ``"latent_programs"`` (default): test the ``n_top`` genes of each latent dimension
            (:meth:`get_latent_gene_effects`; universe: the model's genes).
            ``"perturbation_clusters"``: test the perturbations of each of ``n_clusters``
            clusters (:meth:`get_perturbation_clusters`; universe: the perturbation names, read
            as target genes).
        n_clusters
            Number of perturbation clusters (``of="perturbation_clusters"`` only).
        n_top
            Genes per latent dimension (``of="latent_programs"`` only).

        Returns
        -------
        pandas.DataFrame
            One row per (query, gene set), sorted by p-value, with columns ``query``
            (``latent0``, ... or ``cluster1``, ...), ``gene_set``, ``overlap``, ``query_size``,
            ``set_size``, ``universe_size``, ``p_value``, ``q_value`` and ``genes`` (the
            overlapping genes, comma-separated).

        Raises
        ------
        ValueError
            If ``of`` is not supported.

        Notes
        -----
        Queries and gene sets are restricted to the universe; gene sets with no gene in it are
        dropped. One-sided Fisher exact (hypergeometric) test, Benjamini-Hochberg adjusted over
        the table (:mod:`samsvae.evaluate.interpret`).
        """
        check_choice("of", of, ("perturbation_clusters", "latent_programs"))
        check_positive_int("n_clusters", n_clusters)
        check_positive_int("n_top", n_top)
        if of == "latent_programs":
            ranked = self.get_latent_gene_effects(n_top=n_top)
            queries = ranked.groupby("latent", sort=False)["gene"].agg(list).to_dict()
            universe = self.design.genes
        elif of == "perturbation_clusters":
            clusters = self.get_perturbation_clusters(n_clusters=n_clusters)
            queries = {f"cluster{c}": list(g.index) for c, g in clusters.groupby("cluster")}
            universe = self.design.perturbations
        else:
            choices = ["perturbation_clusters", "latent_programs"]
            msg = f"of={of!r} is not supported; choose one of {choices}."
            raise ValueError(msg)
        return interpret.gene_set_enrichment(queries, gene_sets, universe)

    def genetic_interactions(
        self,
        combinations: Sequence[str] | None = None,
        *,
        source: Literal["model", "data"] = "model",
        method: ATEMethod = "perturbseq",
        n_samples: int = 100,
        level: float = 0.9,
        seed: int | None = 0,
    ) -> pd.DataFrame:
        """Genetic interactions GI(A+B) = ATE(A+B) - ATE(A) - ATE(B) per combination and gene.

        Parameters
        ----------
        combinations
            Two-way combination labels (``"A+B"``); ``None`` (default): the two-way combinations
            observed in the training data.
        source
            ``"model"`` (default): from the model, with ``n_samples`` posterior draws of the
            global variables (100 basal draws each); ``"data"``: from the cells of the training
            AnnData, with ``n_samples`` bootstrap replicates over cells.
        method
            Scale of the effects, as in :meth:`average_treatment_effects`.
        n_samples
            Posterior draws (``source="model"``) or bootstrap replicates (``"data"``); at least
            2.
        level
            Probability of the central interval.
        seed
            Random seed of the posterior draws or of the bootstrap; ``None`` leaves them
            unseeded.

        Returns
        -------
        pandas.DataFrame
            Long table, one row per (combination, gene), with columns ``combination``,
            ``gene``, ``score``, ``lower`` and ``upper`` (central ``level`` interval) and
            ``standard_error`` (standard deviation of the draws or replicates).

        Raises
        ------
        ValueError
            If there is no combination to score, a label is not a two-way combination,
            ``source`` or ``method`` is not supported, or ``source="data"`` for a model set up
            without ``perturbation_key``.

        Notes
        -----
        ``source="model"``: for each posterior draw, the effects come from the basal draws
        shared by the control and every label, at library size 1e4; ``score`` is the mean over
        draws. ``source="data"``: with m_a the mean over cells labelled a, GI(A+B) =
        m_AB - m_A - m_B + m_control; each replicate resamples the cells of every group with
        replacement, independently.
        """
        check_choice("source", source, ("model", "data"))
        check_choice("method", method, ATE_METHODS)
        check_positive_int("n_samples", n_samples)
        check_fraction("level", level)
        check_seed(seed)
        delimiter = self.design.combination_delimiter
        if combinations is None:
            combinations = [c for c in self._observed_interventions() if delimiter in c]
        combinations = [str(c) for c in combinations]
        if not combinations:
            msg = "No two-way combinations to score; pass combinations=['A+B', ...]."
            raise ValueError(msg)
        pairs = [interpret.combination_parts(c, delimiter) for c in combinations]
        if source == "data":
            if self.design.perturbation_key is None:
                msg = "source='data' needs cell labels: call setup_anndata with perturbation_key."
                raise ValueError(msg)
            adata, _ = self._dataset(None)
            labels = adata.obs[self.design.perturbation_key].astype(str).to_numpy()
            scores = interpret.data_genetic_interactions(
                self._expression(adata),
                labels,
                combinations,
                self.design.control,
                method=method,
                n_bootstrap=n_samples,
                level=level,
                delimiter=delimiter,
                seed=seed,
            )
        elif source == "model":
            requests = (combinations, *zip(*pairs, strict=True))
            dosage = [self._dosage_rows(rows) for rows in requests]
            with seeded(seed):
                scores = interpret.model_genetic_interactions(
                    self.module,
                    *dosage,
                    combinations=combinations,
                    method=method,
                    n_posterior_samples=n_samples,
                    level=level,
                )
        else:
            msg = f"source={source!r} is not supported; choose 'model' or 'data'."
            raise ValueError(msg)
        return interpret.interaction_table(scores, self.design.genes)
