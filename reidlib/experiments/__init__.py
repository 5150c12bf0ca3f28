"""Experiments: grids of runs, each arm one named change to a base config.

- :mod:`reidlib.experiments.grid`: the one grid runner (arms x datasets x seeds), its summaries
  and verdicts;
- :mod:`reidlib.experiments.ablations`: the paper's ablations and its claims;
- :mod:`reidlib.experiments.beyond`: the selection rules beyond the paper, around the CPU recipe;
- :mod:`reidlib.experiments.side_by_side`: the untrained start, SCL and Cluster Contrast.
"""

from reidlib.experiments.grid import Arm, run_grid, summarize, verdict

__all__ = ["Arm", "run_grid", "summarize", "verdict"]
