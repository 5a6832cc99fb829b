"""Lapse risk: who is drifting away, how likely each user is to come back, and what to show them.

- :class:`LapseModel` (``"decayrec"``): LightGBM correcting a generative model's log-odds,
  for any horizon; :class:`BGNBDLapse` (``"bgnbd"``, :class:`BetaGeoModel`) and
  :class:`ParetoNBDLapse` (``"paretonbd"``, :class:`ParetoNBDModel`): the classic baselines.
- :func:`evaluate_lapse`: models on one time split, with ROC-AUC, PR-AUC, Brier, log loss,
  calibration, active-day MAE and paired bootstrap intervals.
- :func:`make_plan`: the re-engagement plan for the users at risk.
"""

from decayrec.lapse.bgnbd import BetaGeoModel
from decayrec.lapse.evaluate import evaluate_lapse
from decayrec.lapse.models import (
    LAPSE_MODELS,
    BGNBDLapse,
    LapseConfig,
    LapseModel,
    ParetoNBDLapse,
    make_lapse_model,
    risk_table,
)
from decayrec.lapse.paretonbd import ParetoNBDModel
from decayrec.lapse.plan import PlanConfig, make_plan
from decayrec.lapse.rfm import RFM, rfm_summary

__all__ = [
    "LAPSE_MODELS",
    "RFM",
    "BGNBDLapse",
    "BetaGeoModel",
    "LapseConfig",
    "LapseModel",
    "ParetoNBDLapse",
    "ParetoNBDModel",
    "PlanConfig",
    "evaluate_lapse",
    "make_lapse_model",
    "make_plan",
    "rfm_summary",
    "risk_table",
]
