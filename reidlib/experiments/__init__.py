"""Experiments: grids of runs (the ablations, beyond the paper, the methods side by side)."""
