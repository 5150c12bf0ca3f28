"""Evaluation: the standard protocol, features of a model, the evaluator, untrained baselines.

- :mod:`reidlib.evaluation.protocol`: CMC, mAP and mINP of a distmat (Market-1501 protocol), and
  the one table of figures;
- :mod:`reidlib.evaluation.topk`: the same from each query's top-R, for galleries too large for a
  distmat;
- :mod:`reidlib.evaluation.features`: a model's features over records (tracklets, flip test);
- :mod:`reidlib.evaluation.evaluator`: a model's or a run's figures, and ``metrics.json``;
- :mod:`reidlib.evaluation.baselines`: how far untrained features get.
"""

from reidlib.evaluation.evaluator import evaluate_features, evaluate_model, evaluate_run, format_metrics
from reidlib.evaluation.features import extract_features
from reidlib.evaluation.protocol import RankResult, evaluate, evaluate_rank, format_table
from reidlib.evaluation.topk import evaluate_topk

__all__ = [
    "RankResult",
    "evaluate",
    "evaluate_features",
    "evaluate_model",
    "evaluate_rank",
    "evaluate_run",
    "evaluate_topk",
    "extract_features",
    "format_metrics",
    "format_table",
]
