"""Pictures of interest profiles (optional extra ``plot``: matplotlib).

matplotlib is imported only when a picture is drawn, and only its object API is used
(``Figure`` rendered by Agg): no pyplot, so no global backend or figure state changes
in the caller's process.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa

from decayrec.decay.model import DecayModel
from decayrec.decay.profile import CurveData, Profile, curve_data
from decayrec.errors import InputError, require
from decayrec.timeparse import iso

__all__ = ["plot_profile"]


def plot_profile(
    profile: Profile,
    events: pa.Table,
    decay: DecayModel,
    path: str | Path,
    *,
    level: str = "category",
    top: int = 5,
    log_y: bool = True,
    n_points: int = 400,
    days_back: float | None = None,
) -> Path:
    """Write a PNG of the user's interest ``S(t)`` for their top keys.

    One line per key (live keys by strength first, then faded ones), dots at the key's
    events, a dashed line at the fade level (where strength crosses the threshold) and
    a dotted line at the profile's time.

    Parameters
    ----------
    profile
        From :func:`decayrec.decay.profile.build_profile`.
    events, decay
        The events and decay model the profile was built from.
    path
        Where to write the PNG.
    level
        ``"category"`` or ``"item"``.
    top
        How many keys to draw.
    log_y
        A log scale for ``S`` (it decays exponentially, so straight lines on a log axis).

    Raises
    ------
    MissingExtraError
        When matplotlib is not installed (``pip install 'decayrec[plot]'``).
    """
    require("matplotlib", "plot")
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    if level not in ("category", "item"):
        raise InputError(f"level {level!r} is not 'category' or 'item'", "use level='category' or level='item'")
    interests = profile.categories if level == "category" else profile.items
    chosen = (interests.live + interests.faded)[:top]
    if not chosen:
        raise InputError(f"user {profile.user_id} has no {level} interests to draw", "draw the other level")
    data = curve_data(events, profile.user_id, decay, profile.at, [i.key for i in chosen], n_points, days_back, level)
    now = np.datetime64(profile.at.replace(tzinfo=None), "us")

    fig = Figure(figsize=(11.5, 5.6), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    positive = data.values[data.values > 0]
    floor = _y_floor(positive, interests.fade_level) if log_y else 0.0
    for i, it in enumerate(chosen):
        t, y = _with_jumps(data, i)
        y = np.where(y > floor, y, np.nan) if log_y else y
        state = "faded" if it.faded else f"strength {it.strength:.2f}"
        where = f" in {it.category}" if level == "item" and it.category else ""
        (line,) = ax.plot(t, y, lw=1.6, label=f"{it.key}{where}: h = {it.half_life_days:.3g} d, {state}")
        shown = data.event_values[i] > floor
        ax.plot(data.event_times[i][shown], data.event_values[i][shown], "o", ms=3.5, color=line.get_color())
    fade = interests.fade_level
    fade_label = (
        f"fade level S = {fade:.3g}\n(strength {interests.faded_threshold:g}: P(engage within {interests.horizon_days:g} d))"
    )
    if 0 < fade < math.inf and (not log_y or fade >= floor):
        ax.axhline(fade, ls="--", lw=1.2, color="0.35", label=fade_label)
    elif 0 < fade < math.inf:  # far below every curve: say so rather than squash the axis
        ax.plot([], [], ls="--", lw=1.2, color="0.35", label=fade_label.replace("\n", ", below the axis\n"))
    # matplotlib's stubs type x as float, but its date converter places a datetime64 (as for the curves).
    ax.axvline(now, ls=":", lw=1.2, color="black", label=f"now: {iso(profile.at)}")  # type: ignore[arg-type]

    if log_y:
        ax.set_yscale("log")
        ax.set_ylim(bottom=floor)
    else:
        ax.set_ylim(bottom=0.0)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_xlabel("time (UTC); dots are the user's events")
    ax.set_ylabel("interest S (decayed event weight)")
    drift = "n/a" if profile.drift is None else f"{profile.drift:.2f}"
    ax.set_title(
        f"User {profile.user_id}, {level} interest as of {profile.at:%Y-%m-%d %H:%M} UTC: "
        f"{interests.n_live} live, {interests.n_faded} faded, drift over {profile.drift_days:g} d {drift}"
    )
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _with_jumps(data: CurveData, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Key i's grid curve with the exact state just before and after each event merged in.

    Ties sort before-then-after, so each event draws as a vertical jump, not a ramp
    across a grid cell.
    """
    ev_t = data.event_times[i]
    t = np.concatenate([data.times, ev_t, ev_t])
    y = np.concatenate([data.values[i], data.event_before[i], data.event_values[i]])
    rank = np.concatenate([np.ones(data.times.size), np.zeros(ev_t.size), np.ones(ev_t.size)])
    order = np.lexsort((rank, t))
    return t[order], y[order]


def _y_floor(positive: np.ndarray, fade_level: float) -> float:
    """The bottom of a log axis: the lowest curve point, lowered to show a nearby fade level.

    Curves of long-quiet keys decay to tiny values, so the axis stops 4 decades below the
    top; a fade level further down is named in the legend instead of squashing the plot.
    """
    if positive.size == 0:
        return 1e-3
    floor = max(positive.min(), positive.max() * 1e-4)
    if positive.max() * 1e-4 <= fade_level < floor:
        floor = fade_level / 2
    return floor
