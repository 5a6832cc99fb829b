"""A synthetic shop with known truth (:mod:`~decayrec.simulate.shop`) and presets that differ
the way real shops do (:mod:`~decayrec.simulate.presets`): for the demo, tests and benchmarks."""

from decayrec.simulate.presets import PRESETS, preset, simulate_preset
from decayrec.simulate.shop import SimConfig, Simulation, season_by_day, simulate

__all__ = ["PRESETS", "SimConfig", "Simulation", "preset", "season_by_day", "simulate", "simulate_preset"]
