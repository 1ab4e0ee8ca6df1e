"""Experiment grids: run many ``ead train`` cells with one budget (:mod:`.sweep`), aggregate them (:mod:`.report`)."""

from ead.experiments.grid import Cell, SweepConfig, load_sweep_config

__all__ = ["Cell", "SweepConfig", "load_sweep_config"]
