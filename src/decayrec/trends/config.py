"""The knobs of shop-wide trends, one typed config shared by library, CLI and service."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from decayrec.weights import weight_table

__all__ = ["Level", "TrendConfig"]

Level = Literal["category", "item"]


class TrendConfig(BaseModel):
    """How interest, momentum, trend labels and the forecast are computed.

    Rates are decayed sums ``S_h`` (DESIGN.md) turned into weighted events per day,
    ``S_h * ln 2 / h`` divided by ``1 - 2 ** (-T / h)`` where ``T`` is how long the log
    has been observed: a steady Poisson stream of rate ``r`` then has expected rate ``r``
    at every scale, however short the log, so its momentum is 1.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    short_half_life_days: float = Field(3.0, gt=0, description="Scale of `interest`: what is happening now.")
    long_half_life_days: float = Field(28.0, gt=0, description="Scale momentum is measured against.")
    rising_momentum: float = Field(1.25, gt=1, description="Momentum at or above which a key is rising.")
    fading_momentum: float = Field(0.8, gt=0, lt=1, description="Momentum at or below which a key is fading.")
    min_events: int = Field(5, ge=1, description="Events a key needs (at or before now) to be other than steady.")
    min_z: float = Field(
        2.0, ge=0, description="|z| of short minus long rate (Poisson noise) a key needs to be other than steady."
    )
    relative_to_shop: bool = Field(
        False, description="Label momentum relative to the whole level's momentum (rising faster than the shop)."
    )
    event_weights: dict[str, float] | None = Field(
        None, description="Weight per event type; None = the recommenders' defaults; weight 0 drops a type."
    )
    window_days: float = Field(7.0, gt=0, description="Window of `events_window`, `users_window` and the forecast.")
    forecast_anchors: int = Field(8, ge=1, description="Past windows the forecast model is fitted on.")
    forecast_volume: Literal["last_window", "fitted"] = Field(
        "last_window",
        description="Forecast volume: the last window's total shared out by the model, or the model's own level.",
    )
    forecast_ridge: float = Field(
        1e-3, ge=0, description="L2 penalty of the Poisson forecast's coefficients (standardised features)."
    )

    @field_validator("event_weights")
    @classmethod
    def _weights(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None:
            weight_table(value)  # raises with the list of valid types
        return value

    @model_validator(mode="after")
    def _scales(self) -> TrendConfig:
        if not self.short_half_life_days < self.long_half_life_days:
            raise ValueError("short_half_life_days must be below long_half_life_days")
        return self
