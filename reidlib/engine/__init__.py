"""The training engine: one loop that knows no method, its state, checkpoints and provenance.

- :mod:`reidlib.engine.trainer`: the loop (epochs, steps, evaluation, the metrics log);
- :mod:`reidlib.engine.state`: what a run carries from step to step, seeds and schedules;
- :mod:`reidlib.engine.checkpoints`: saving the training state and resuming it;
- :mod:`reidlib.engine.provenance`: the commit, packages, machine and data behind every run.
"""

from reidlib.engine.trainer import TrainingError, train

__all__ = ["TrainingError", "train"]
