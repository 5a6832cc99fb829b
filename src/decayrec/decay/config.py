"""How half-lives are fitted: :class:`FitConfig`, the one typed set of options of :func:`~decayrec.decay.fit.fit_decay`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["FitConfig"]


class FitConfig(BaseModel):
    """How half-lives are fitted. Every field is a plain, explicit setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grid_min_days: float | None = Field(
        None,
        gt=0,
        description="Shortest half-life considered; None: from the log, the 5% quantile of the gaps between a "
        "sequence's consecutive events, kept between 1 minute and 1 hour (a session log gets minutes, a "
        "day-resolution log 1 hour).",
    )
    grid_max_days: float | None = Field(
        None, gt=0, description="Longest half-life considered; None: twice the log's span, kept between 30 and 3,650 days."
    )
    grid_points: int | None = Field(
        None,
        ge=5,
        description="Log-spaced grid points between them (each refined locally); None: the spacing of 17 "
        "points from 1 hour to 365 days (about a factor 1.76 per step).",
    )
    point_events: tuple[Literal["view", "click", "cart", "fav", "purchase"], ...] | None = Field(
        None, description="Event types that are engagement points; None: view and click if present, else all."
    )
    em_iterations: int = Field(60, ge=5, description="EM iterations per grid point (warm-started).")
    min_points: int = Field(50, ge=1, description="Points a category needs to enter the prior's spread estimate.")
    prior_log_sd: float | None = Field(None, gt=0, description="Spread of log half-lives across categories; None: estimated.")
    fit_by_event: bool = Field(True, description="Also fit one half-life per event type.")
    objective: Literal["likelihood", "next_window", "anchors"] = Field(
        "likelihood",
        description="Choose half-lives by the likelihood of the whole history; by forecasting the last "
        "validation_days from what came before (next_window); or by forecasting several windows, each "
        "from what came before it (anchors: the summed forecast likelihood, less noisy than one window).",
    )
    validation_days: float = Field(30.0, gt=0, description="The forecast window of the next_window objective.")
    anchors: int = Field(4, ge=1, description="Forecast windows of the anchors objective; they tile the end of the log.")
    anchor_window_days: float | None = Field(
        None, gt=0, description="Length of each anchors window; None: a tenth of the log's span before now."
    )
    window_end: Literal["user_last_event", "now"] = Field(
        "user_last_event", description="Where each user's windows close: their last event (default) or now."
    )
    per_user: bool = Field(
        False,
        description="Also fit one multiplier of the category half-lives per user (quick and slow "
        "forgetters; the excitation per event is kept), shrunk toward 1 by an empirical-Bayes prior on its log.",
    )
