"""Direct effects of perturbations on the genes they target.

In a CRISPRi/a/ko screen the targeted gene is known and often measured; its own change (a
knock-down, an activation) is usually the perturbation's largest effect on a single gene, and one a
latent shift of a few dimensions renders poorly. For each (perturbation t, target gene g) pair,

    beta_tg ~ Normal(0, s^2)                      (s = ``target_effect_prior_scale``)
    logit_ig += sum_t d_it beta_tg                (the decoder's output for gene g of cell i)

beside the latent shift. beta is global, on the perturbation plate: its log p - log q joins t's
global term. Guide: q(beta_tg) = Normal(loc, scale), loc initialised at 0 and scale at 0.1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

_INITIAL_SCALE = 0.1


def _normal_log_prob(value: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return -0.5 * ((value - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True)
class TargetSample:
    """Draws of beta for the target pairs of the perturbations in a global sample's index.

    rows (J,): each pair's position in that index; genes (J,): its gene; values (P, J): beta;
    log_q, log_p (P, len(index)): log q(beta) and log p(beta) summed per perturbation.
    """

    rows: torch.Tensor
    genes: torch.Tensor
    values: torch.Tensor
    log_q: torch.Tensor
    log_p: torch.Tensor

    def repeat_particles(self, repeats: int) -> TargetSample:
        """Each draw repeated ``repeats`` times along the particle axis (draw-major order)."""
        return TargetSample(
            self.rows,
            self.genes,
            self.values.repeat_interleave(repeats, dim=0),
            self.log_q.repeat_interleave(repeats, dim=0),
            self.log_p.repeat_interleave(repeats, dim=0),
        )

    def select(self, positions: torch.Tensor, n_rows: int) -> TargetSample:
        """The pairs of the index rows ``positions`` (of ``n_rows``), renumbered to match."""
        new_row = torch.full((n_rows,), -1, dtype=torch.long, device=self.rows.device)
        new_row[positions] = torch.arange(len(positions), device=self.rows.device)
        kept = new_row[self.rows] >= 0
        return TargetSample(
            new_row[self.rows[kept]],
            self.genes[kept],
            self.values[:, kept],
            self.log_q[:, positions],
            self.log_p[:, positions],
        )

    def offset(self, dosage: torch.Tensor, n_genes: int) -> torch.Tensor:
        """sum_t d_it beta_tg for dosage rows (n_rows, len(index)) -> (P, n_rows, n_genes)."""
        coefficient = dosage[:, self.rows].to(self.values)  # (R, J)
        contribution = coefficient.unsqueeze(0) * self.values.unsqueeze(1)  # (P, R, J)
        shape = (*contribution.shape[:2], n_genes)
        return contribution.new_zeros(shape).index_add_(2, self.genes, contribution)


class TargetGeneEffects(nn.Module):
    """q(beta) for the (perturbation, gene) ``pairs``; samples :class:`TargetSample`."""

    def __init__(
        self, pairs: tuple[tuple[int, int], ...], n_perturbations: int, prior_scale: float
    ) -> None:
        super().__init__()
        perturbations, genes = zip(*pairs, strict=True)
        self.register_buffer("perturbation", torch.tensor(perturbations, dtype=torch.long))
        self.register_buffer("gene", torch.tensor(genes, dtype=torch.long))
        self.n_perturbations = n_perturbations
        self.prior_scale = prior_scale
        self.loc = nn.Parameter(torch.zeros(len(pairs)))
        inverse_softplus = _INITIAL_SCALE + math.log(-math.expm1(-_INITIAL_SCALE))
        self.scale_raw = nn.Parameter(torch.full((len(pairs),), inverse_softplus))

    def posterior(self) -> tuple[torch.Tensor, torch.Tensor]:
        """loc and scale of q(beta), one per pair."""
        return self.loc, F.softplus(self.scale_raw)

    def sample(
        self, index: torch.Tensor, n_particles: int, generator: torch.Generator | None = None
    ) -> TargetSample:
        """beta for the pairs whose perturbation is in ``index``, ``n_particles`` draws."""
        row_of = torch.full((self.n_perturbations,), -1, dtype=torch.long, device=index.device)
        row_of[index] = torch.arange(len(index), device=index.device)
        rows = row_of[self.perturbation]
        kept = rows >= 0
        loc, scale = (value[kept] for value in self.posterior())
        shape = (n_particles, len(loc))
        noise = torch.randn(shape, generator=generator, dtype=loc.dtype, device=loc.device)
        values = loc + scale * noise
        prior_scale = torch.tensor(self.prior_scale, dtype=loc.dtype, device=loc.device)
        per_pair_q = _normal_log_prob(values, loc, scale)
        per_pair_p = _normal_log_prob(values, torch.zeros_like(prior_scale), prior_scale)

        def per_perturbation(per_pair: torch.Tensor) -> torch.Tensor:
            total = per_pair.new_zeros((n_particles, len(index)))
            return total.index_add_(1, rows[kept], per_pair)

        return TargetSample(
            rows[kept],
            self.gene[kept],
            values,
            per_perturbation(per_pair_q),
            per_perturbation(per_pair_p),
        )


#: ``adata.uns`` key of a screen's own map of perturbations to their target genes.
TARGET_MAP_KEY = "target_genes"
#: ``adata.var`` columns read as gene symbols where ``var_names`` are other identifiers
#: (Ensembl IDs): the names scanpy's readers, CELLxGENE and 10x files give them.
SYMBOL_COLUMNS = ("gene_symbols", "gene_symbol", "gene_name", "gene_names", "feature_name")


def auto_target_map(
    uns: Mapping[str, Any], var: pd.DataFrame, perturbations: Sequence[str]
) -> dict[str, list[str]]:
    """What ``target_genes="auto"`` pairs in this data, as ``{perturbation: [gene, ...]}``.

    The screen's own map in ``uns["target_genes"]`` (``{perturbation: gene or [genes]}``, e.g.
    guide groups to the genes they target) where there is one; otherwise every perturbation
    named after a measured gene: one of ``var_names`` or, where those are other identifiers, a
    gene symbol of the first :data:`SYMBOL_COLUMNS` column ``var`` has. Perturbations absent from
    the data and genes that are not modelled (e.g. dropped by gene selection) are left out.
    """
    measured = set(map(str, var.index))
    declared = uns.get(TARGET_MAP_KEY)
    if declared is not None:
        return _declared_targets(declared, set(perturbations), measured)
    by_name = {name: name for name in measured}
    column = next((c for c in SYMBOL_COLUMNS if c in var.columns), None)
    if column is not None:
        symbols = var[column].astype(str)
        by_name = dict(zip(symbols, map(str, var.index), strict=True)) | by_name
    return {t: [by_name[t]] for t in perturbations if t in by_name}


def _declared_targets(
    declared: object, perturbations: set[str], measured: set[str]
) -> dict[str, list[str]]:
    """``uns["target_genes"]`` as ``{perturbation: [gene, ...]}``, restricted to the data's
    perturbations and measured genes."""
    if not hasattr(declared, "items"):
        msg = (
            f"adata.uns[{TARGET_MAP_KEY!r}] must map each perturbation to its target gene(s), "
            f"not a {type(declared).__name__}; fix it or pass target_genes= explicitly."
        )
        raise TypeError(msg)
    targets = {}
    for perturbation, genes in declared.items():  # type: ignore[attr-defined]
        named = [genes] if isinstance(genes, str) else list(genes)
        kept = [str(g) for g in named if str(g) in measured]
        if str(perturbation) in perturbations and kept:
            targets[str(perturbation)] = kept
    return targets


def target_pairs(
    requested: object, perturbations: tuple[str, ...], genes: tuple[str, ...]
) -> tuple[tuple[int, int], ...]:
    """(perturbation index, gene index) pairs from a model's ``target_genes`` option.

    ``None``: no pairs; a mapping ``{perturbation: gene or [genes]}`` names them (every name
    must exist); ``"auto"`` (resolved from the data by :func:`auto_target_map` where the model
    has it): every perturbation whose name is a measured gene targets that gene.
    """
    if requested is None:
        return ()
    gene_index = {gene: g for g, gene in enumerate(genes)}
    if requested == "auto":
        return tuple(
            (t, gene_index[name]) for t, name in enumerate(perturbations) if name in gene_index
        )
    if isinstance(requested, (tuple, list)):  # already resolved (a saved model's pairs)
        return tuple((int(t), int(g)) for t, g in requested)
    if not hasattr(requested, "items"):
        msg = (
            f"target_genes={requested!r} is not supported; pass 'auto', None or a mapping "
            "{perturbation: gene or [genes]}."
        )
        raise TypeError(msg)
    perturbation_index = {name: t for t, name in enumerate(perturbations)}
    pairs = []
    for perturbation, targets in requested.items():  # type: ignore[attr-defined]
        if perturbation not in perturbation_index:
            msg = f"target_genes names {perturbation!r}, which is not a perturbation of the data."
            raise ValueError(msg)
        for gene in [targets] if isinstance(targets, str) else targets:
            if gene not in gene_index:
                msg = (
                    f"target_genes gives {perturbation!r} the gene {gene!r}, which is not among "
                    "the model's genes (adata.var_names)."
                )
                raise ValueError(msg)
            pairs.append((perturbation_index[perturbation], gene_index[gene]))
    return tuple(pairs)
