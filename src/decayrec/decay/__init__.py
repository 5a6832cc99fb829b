"""Decay core: the exact, vectorised kernels for ``S(u, k, t)``, the online state, id maps.

``S(k, t) = sum over events e on k with t_e <= t of w_e * 2 ** (-(t - t_e) / h)``,
for several half-lives ``h`` at once; times and half-lives in days (:func:`to_days`).
"""

from decayrec.decay.config import FitConfig
from decayrec.decay.fit import fit_decay
from decayrec.decay.heldout import heldout_loglik, heldout_terms
from decayrec.decay.ids import IdMap, PairMap, pair_codes
from decayrec.decay.kernels import (
    counts,
    decayed_sums,
    event_weights,
    from_days,
    last_event_time,
    peak_time,
    peak_times,
    states_after_events,
    states_before_events,
    time_to_fade,
    to_days,
)
from decayrec.decay.model import DecayModel, HalfLife
from decayrec.decay.profile import Profile, build_profile, build_profiles, interest_table
from decayrec.decay.state import DecayState
from decayrec.decay.strength import StrengthModel

__all__ = [
    "DecayModel",
    "DecayState",
    "FitConfig",
    "HalfLife",
    "IdMap",
    "PairMap",
    "Profile",
    "StrengthModel",
    "build_profile",
    "build_profiles",
    "counts",
    "decayed_sums",
    "event_weights",
    "fit_decay",
    "from_days",
    "heldout_loglik",
    "heldout_terms",
    "interest_table",
    "last_event_time",
    "pair_codes",
    "peak_time",
    "peak_times",
    "states_after_events",
    "states_before_events",
    "time_to_fade",
    "to_days",
]
