"""Probability maths: negative binomial and straight-through Bernoulli."""

from __future__ import annotations

from samsvae.distributions.negative_binomial import (
    nb_data_terms,
    nb_log_prob,
    nb_mean_terms,
    nb_mean_terms_from_logits,
    nb_sample,
)
from samsvae.distributions.straight_through import (
    bernoulli_log_prob,
    sample_straight_through_bernoulli,
)

__all__ = [
    "bernoulli_log_prob",
    "nb_data_terms",
    "nb_log_prob",
    "nb_mean_terms",
    "nb_mean_terms_from_logits",
    "nb_sample",
    "sample_straight_through_bernoulli",
]
