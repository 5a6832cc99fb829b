"""Shop-wide trends: what is rising and what is fading, per category or item.

Built on the one quantity of DESIGN.md, the decayed sum ``S_h`` of a key's event weights,
at a short and a long half-life: ``interest`` is the short-scale rate (weighted events per
day), ``momentum`` the short-scale rate over the long-scale one (1 for a steady stream),
and ``trend`` labels it rising, steady or fading when the evidence is clear. ``forecast``
is the expected number of events in the next window from a Poisson GLM fitted on the
log's own past windows, scored against naive baselines by :func:`forecast_backtest`.

    table = trends(events, now, level="category")
    report = forecast_backtest(events, now, level="category")
    plot_trends(events, now, "trends.png")
"""

from decayrec.trends.config import Level, TrendConfig
from decayrec.trends.forecast import forecast_backtest
from decayrec.trends.series import TrendSeries, plot_trends, trend_series
from decayrec.trends.table import TRENDS_SCHEMA, trends

__all__ = [
    "TRENDS_SCHEMA",
    "Level",
    "TrendConfig",
    "TrendSeries",
    "forecast_backtest",
    "plot_trends",
    "trend_series",
    "trends",
]
