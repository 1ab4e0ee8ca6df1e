"""Plots and HTML reports of runs and sweeps."""
