"""Pure-torch models: tensors and configs in, log-probability terms out."""

from __future__ import annotations

from samsvae.models.cpa_vae import CPAVAEModule, UnmaskedGuide
from samsvae.models.cvae import ConditionalVAEModule, NoGlobals
from samsvae.models.guides import CorrelatedGuide, MeanFieldGuide
from samsvae.models.records import GlobalSample, LocalTerms
from samsvae.models.sams_vae import SAMSVAEModule
from samsvae.models.svae_plus import SparseShiftGuide, SVAEPlusModule

__all__ = [
    "CPAVAEModule",
    "ConditionalVAEModule",
    "CorrelatedGuide",
    "GlobalSample",
    "LocalTerms",
    "MeanFieldGuide",
    "NoGlobals",
    "SAMSVAEModule",
    "SVAEPlusModule",
    "SparseShiftGuide",
    "UnmaskedGuide",
]
