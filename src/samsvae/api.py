"""User-facing model classes: AnnData in, AnnData / DataFrame out.

The machinery they share lives in :mod:`samsvae.base`; each class here names its module and
config and documents its parameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import anndata as ad

from samsvae.base import SETUP_KEY, PerturbationModel
from samsvae.config import ConditionalVAEConfig, CPAVAEConfig, SAMSVAEConfig, SVAEPlusConfig
from samsvae.models import ConditionalVAEModule, CPAVAEModule, SAMSVAEModule, SVAEPlusModule

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["CPAVAE", "SAMSVAE", "SETUP_KEY", "ConditionalVAE", "PerturbationModel", "SVAEPlus"]


class SAMSVAE(PerturbationModel):
    r"""Sparse Additive Mechanism Shift VAE (Bereket & Karaletsos, NeurIPS 2023).

    .. math::
        z_i^b \sim N(0, I),\ e_t \sim N(0, s_e^2 I),\ m_{tk} \sim \mathrm{Bern}(a),\
        z_i = z_i^b + \textstyle\sum_t d_{it}\, e_t \odot m_t,\ x_i \sim p_\theta(x \mid z_i, l_i)

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_latent
        Latent dimensions K; ``None`` chooses them from the number of perturbations.
    n_hidden
        Width of every hidden layer; ``None`` chooses it from the number of cells.
    n_layers
        Hidden layers of the encoder, decoder and correlated guide.
    n_particles
        Monte-Carlo particles per training step.
    mask_prior
        Prior inclusion probability a of each mask entry.
    mask_prior_concentration
        ``None``: m_tk ~ Bernoulli(a). A number c: Beta-Bernoulli masks, pi_tk ~ Beta(a c,
        (1 - a) c) and m_tk | pi_tk ~ Bernoulli(pi_tk), with a Beta guide for pi.
    embedding_prior_scale
        Prior standard deviation s_e of the embeddings.
    guide
        ``"mean_field"``: independent q(e_tk); ``"correlated"``: q(e_t | m_t) from a network.
    likelihood
        ``"nb"`` negative binomial counts, ``"poisson"`` counts, ``"normal"`` real values.
    encoder_input
        ``"x_and_shift"`` feeds the encoder x and the sampled latent shift; ``"x"`` feeds x only.
    gumbel_temperature
        Temperature of the straight-through binary-concrete mask samples.
    guide_n_hidden, guide_n_layers
        Size of the correlated guide's network; ``None`` takes ``n_hidden`` / ``n_layers``.
    target_genes
        Direct effects on targeted genes: each (perturbation t, gene g) pair gets an effect
        beta_tg ~ N(0, ``target_effect_prior_scale``²) added to the decoder's output for g in the
        cells that carry t, beside the latent shift (a knock-down of the targeted gene is often
        the largest single-gene effect, and one a few latent dimensions render poorly).
        ``"auto"``: the screen's own map in ``adata.uns["target_genes"]`` where there is one,
        else every perturbation named after a measured gene (one of ``adata.var_names``, or of
        a gene-symbol column of ``adata.var`` such as ``gene_symbols``) targets it, and none
        when no name matches; a mapping ``{perturbation: gene or [genes]}`` names the pairs
        (guide groups, other gene identifiers); ``None`` turns them off.
        :meth:`get_target_gene_effects` reads them.
    target_effect_prior_scale
        Prior standard deviation of the direct effects (natural-log scale of expression).

    Notes
    -----
    ``n_latent`` and ``n_hidden`` left as ``None`` are chosen from the data
    (:mod:`samsvae.defaults`): 4 sqrt(T) latents between 10 and 100 for T perturbations, and
    128 hidden units below 50k cells, 256 below 200k, else 400. The paper's configurations are
    presets: ``SAMSVAE(adata, **samsvae.presets["replogle"])``.

    Examples
    --------
    >>> import samsvae
    >>> adata = samsvae.datasets.simulate(n_perturbations=4, n_combinations=2, n_genes=20,
    ...                                   n_cells_per_perturbation=20, n_control_cells=40,
    ...                                   n_cells_per_combination=20)
    >>> samsvae.SAMSVAE.setup_anndata(adata, perturbation_key="perturbation", control="control")
    >>> model = samsvae.SAMSVAE(adata, n_latent=4, n_hidden=16)
    >>> model.train(max_epochs=1, progress_bar=False)
    >>> model.get_mask_probabilities().shape
    (4, 4)
    """

    module_cls = SAMSVAEModule
    config_cls = SAMSVAEConfig

    def __init__(
        self,
        adata: ad.AnnData,
        *,
        n_latent: int | None = None,
        n_hidden: int | None = None,
        n_layers: int = 1,
        n_particles: int = 5,
        mask_prior: float = 0.01,
        mask_prior_concentration: float | None = None,
        embedding_prior_scale: float = 1.0,
        guide: Literal["mean_field", "correlated"] = "mean_field",
        likelihood: Literal["nb", "normal", "poisson"] = "nb",
        encoder_input: Literal["x_and_shift", "x"] = "x_and_shift",
        gumbel_temperature: float = 1.0,
        guide_n_hidden: int | None = None,
        guide_n_layers: int | None = None,
        target_genes: Literal["auto"] | Mapping[str, str | Sequence[str]] | None = "auto",
        target_effect_prior_scale: float = 1.0,
    ) -> None:
        config = SAMSVAEConfig(
            n_latent=n_latent,
            n_hidden=n_hidden,
            n_layers=n_layers,
            n_particles=n_particles,
            mask_prior=mask_prior,
            mask_prior_concentration=mask_prior_concentration,
            embedding_prior_scale=embedding_prior_scale,
            guide=guide,
            likelihood=likelihood,
            encoder_input=encoder_input,
            gumbel_temperature=gumbel_temperature,
            guide_n_hidden=guide_n_hidden,
            guide_n_layers=guide_n_layers,
            target_genes=target_genes,
            target_effect_prior_scale=target_effect_prior_scale,
        )
        super().__init__(adata, config)


class CPAVAE(PerturbationModel):
    r"""CPA-VAE: SAMS-VAE with every mask fixed to 1 (the paper's "no sparsity" ablation).

    .. math::
        z_i^b \sim N(0, I),\ e_t \sim N(0, s_e^2 I),\
        z_i = z_i^b + \textstyle\sum_t d_{it}\, e_t,\ x_i \sim p_\theta(x \mid z_i, l_i)

    Same data setup, training, evaluation and save/load as :class:`SAMSVAE`; the guide of the
    embeddings is mean-field. Parameters have the meaning they have in :class:`SAMSVAE`.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_latent
        Latent dimensions K; ``None`` chooses them from the number of perturbations.
    n_hidden
        Width of every hidden layer; ``None`` chooses it from the number of cells.
    n_layers
        Hidden layers of the encoder and decoder.
    n_particles
        Monte-Carlo particles per training step.
    embedding_prior_scale
        Prior standard deviation s_e of the embeddings.
    likelihood
        ``"nb"`` negative binomial counts, ``"poisson"`` counts, ``"normal"`` real values.
    encoder_input
        ``"x_and_shift"`` feeds the encoder x and the sampled latent shift; ``"x"`` feeds x only.
    """

    module_cls = CPAVAEModule
    config_cls = CPAVAEConfig

    def __init__(
        self,
        adata: ad.AnnData,
        *,
        n_latent: int | None = None,
        n_hidden: int | None = None,
        n_layers: int = 1,
        n_particles: int = 5,
        embedding_prior_scale: float = 1.0,
        likelihood: Literal["nb", "normal", "poisson"] = "nb",
        encoder_input: Literal["x_and_shift", "x"] = "x_and_shift",
    ) -> None:
        config = CPAVAEConfig(
            n_latent=n_latent,
            n_hidden=n_hidden,
            n_layers=n_layers,
            n_particles=n_particles,
            embedding_prior_scale=embedding_prior_scale,
            likelihood=likelihood,
            encoder_input=encoder_input,
        )
        super().__init__(adata, config)


class ConditionalVAE(PerturbationModel):
    r"""Conditional VAE: the dosage row is an input of the encoder and the decoder.

    .. math::
        z_i \sim N(0, I),\ x_i \sim p_\theta(x \mid [z_i, d_i], l_i),\ q(z_i \mid x_i, d_i)

    No global variables and no masks (``get_mask_probabilities`` raises). Same data setup,
    training, evaluation and save/load as :class:`SAMSVAE`; parameters mean what they do there.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_latent
        Latent dimensions; ``None`` chooses them from the number of perturbations.
    n_hidden
        Width of every hidden layer; ``None`` chooses it from the number of cells.
    n_layers
        Hidden layers of the encoder and decoder.
    n_particles
        Monte-Carlo particles per training step.
    likelihood
        ``"nb"`` negative binomial counts, ``"poisson"`` counts, ``"normal"`` real values.
    """

    has_masks = False
    module_cls = ConditionalVAEModule
    config_cls = ConditionalVAEConfig

    def __init__(
        self,
        adata: ad.AnnData,
        *,
        n_latent: int | None = None,
        n_hidden: int | None = None,
        n_layers: int = 1,
        n_particles: int = 5,
        likelihood: Literal["nb", "normal", "poisson"] = "nb",
    ) -> None:
        config = ConditionalVAEConfig(
            n_latent=n_latent,
            n_hidden=n_hidden,
            n_layers=n_layers,
            n_particles=n_particles,
            likelihood=likelihood,
        )
        super().__init__(adata, config)


class SVAEPlus(PerturbationModel):
    r"""SVAE+ (Lopez et al. 2022): sparse masks on learned per-perturbation shifts, the
    baseline of the SAMS-VAE paper.

    .. math::
        \pi_{tk} \sim \mathrm{Beta}(1, c),\ m_{tk} \sim \mathrm{Bern}(\pi_{tk}),\
        z_i \sim N(m_{t(i)} \odot \mu_{t(i)}, I),\ x_i \sim p_\theta(x \mid z_i, l_i)

    Guide: q(m_tk) = Bernoulli(sigmoid(phi_tk)), point estimates (MAP) of pi and mu, and
    q(z_i | x_i) from an encoder that sees x only. One perturbation per cell: every label,
    combinations included, is a perturbation of its own (the "unique" dosage encoding is used
    whatever ``setup_anndata`` says), so combinations never seen in training cannot be predicted.
    Parameters other than ``mask_prior_beta`` have the meaning they have in :class:`SAMSVAE`.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_latent
        Latent dimensions K; ``None`` chooses them from the number of perturbations.
    n_hidden
        Width of every hidden layer; ``None`` chooses it from the number of cells.
    n_layers
        Hidden layers of the encoder and decoder.
    n_particles
        Monte-Carlo particles per training step.
    mask_prior_beta
        c in the prior pi_tk ~ Beta(1, c), whose mean is 1 / (1 + c); the SAMS-VAE paper sweeps
        2, 5 and 10.
    likelihood
        ``"nb"`` negative binomial counts, ``"poisson"`` counts, ``"normal"`` real values.
    gumbel_temperature
        Temperature of the straight-through binary-concrete mask samples.
    """

    one_label_per_cell = True
    module_cls = SVAEPlusModule
    config_cls = SVAEPlusConfig

    def __init__(
        self,
        adata: ad.AnnData,
        *,
        n_latent: int | None = None,
        n_hidden: int | None = None,
        n_layers: int = 1,
        n_particles: int = 5,
        mask_prior_beta: float = 5.0,
        likelihood: Literal["nb", "normal", "poisson"] = "nb",
        gumbel_temperature: float = 1.0,
    ) -> None:
        config = SVAEPlusConfig(
            n_latent=n_latent,
            n_hidden=n_hidden,
            n_layers=n_layers,
            n_particles=n_particles,
            mask_prior_beta=mask_prior_beta,
            likelihood=likelihood,
            gumbel_temperature=gumbel_temperature,
        )
        super().__init__(adata, config)

    def _check_data(self, adata: ad.AnnData) -> None:
        super()._check_data(adata)
        if self.design.dosage_key is not None:
            self._dosage(adata)  # refuses rows with several perturbations now, not at train
