"""Networks: residual MLP trunks, the basal encoder, and likelihood heads."""

from __future__ import annotations

from samsvae.nn.encoders import BasalEncoder
from samsvae.nn.heads import (
    LIKELIHOOD_HEADS,
    LikelihoodHead,
    NegativeBinomialHead,
    NormalHead,
    PoissonHead,
)
from samsvae.nn.networks import ResidualMLP

__all__ = [
    "LIKELIHOOD_HEADS",
    "BasalEncoder",
    "LikelihoodHead",
    "NegativeBinomialHead",
    "NormalHead",
    "PoissonHead",
    "ResidualMLP",
]
