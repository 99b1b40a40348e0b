"""Objectives (plated ELBO, IWELBO) and Lightning training."""

from __future__ import annotations

from samsvae.inference.objectives import (
    LossTerms,
    global_shares,
    iwelbo,
    minibatch_elbo,
    plated_elbo_sum,
)

__all__ = ["LossTerms", "global_shares", "iwelbo", "minibatch_elbo", "plated_elbo_sum"]
