"""Lapse risk: who is drifting away, how likely each user is to come back, and what to show them.

- :class:`LapseModel` (``"decayrec"``): LightGBM over decay features, calibrated;
  :class:`BGNBDLapse` (``"bgnbd"``): the BG/NBD baseline (:class:`BetaGeoModel`).
- :func:`evaluate_lapse`: both on one time split, with ROC-AUC, PR-AUC, Brier, calibration.
- :func:`make_plan`: the re-engagement plan for the users at risk.
"""

from decayrec.lapse.bgnbd import BetaGeoModel
from decayrec.lapse.evaluate import evaluate_lapse
from decayrec.lapse.models import (
    LAPSE_MODELS,
    BGNBDLapse,
    LapseConfig,
    LapseModel,
    make_lapse_model,
    risk_table,
)
from decayrec.lapse.plan import PlanConfig, make_plan
from decayrec.lapse.rfm import RFM, rfm_summary

__all__ = [
    "LAPSE_MODELS",
    "RFM",
    "BGNBDLapse",
    "BetaGeoModel",
    "LapseConfig",
    "LapseModel",
    "PlanConfig",
    "evaluate_lapse",
    "make_lapse_model",
    "make_plan",
    "rfm_summary",
    "risk_table",
]
