"""The machinery the user-facing models share, one concern a module: data plumbing
(:mod:`~samsvae.base.data`), training (:mod:`~samsvae.base.training`), effects and
predictions (:mod:`~samsvae.base.effects`), interpretation
(:mod:`~samsvae.base.interpretation`) and persistence (:mod:`~samsvae.base.persistence`)."""

from __future__ import annotations

from samsvae.base._common import SETUP_KEY
from samsvae.base.model import PerturbationModel

__all__ = ["SETUP_KEY", "PerturbationModel"]
