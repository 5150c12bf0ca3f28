"""Selective contrastive learning (Pang, Zhai, Jiang, Liu, ACM TOMM 2022), the method in five steps.

One training step, as the loop (:mod:`reidlib.engine.trainer`) runs it, and where each step lives:

1. **Features.** The model gives each crop a global feature g (B, D) and P stripe features
   p (B, P, d), all unit length (:mod:`reidlib.model`).
2. **Selection**, under ``no_grad``. The epoch's miner (:mod:`reidlib.methods.scl.miners`) picks, for
   each anchor, its own slot and K positives, and M hard negatives, from the global and part banks
   by the selection distance (:mod:`reidlib.neighbours.selection_distance`; warm-up: the own slot
   and random negatives). It returns indices (:class:`Selection`), never a loss.
3. **Loss.** A softmax over [positives; negatives] against the mixture bank, the own slot weighted
   lambda_t and each neighbour alpha (1 - lambda_t) / K; lambda_p of it on the concatenated
   stripes, the rest on g (:func:`reidlib.methods.losses.scl_total_loss`).
4. ``backward()`` and the optimiser step (the loop).
5. **Memory**, only then: the batch's own slots of the global and part banks, and the mixture
   bank at the own slot and the kept positives, g and the stripes writing into it
   (:mod:`reidlib.methods.memory`).

:class:`SCL` (:mod:`reidlib.methods.scl.learner`) is the method object that answers the loop's hooks
with these steps; :mod:`reidlib.methods.scl.diagnostics` measures how good each epoch's picks were.
A student reads the method in four files: ``model.py``, ``methods/memory.py``,
``methods/scl/miners.py`` and ``methods/losses.py``.
"""

from reidlib.methods.scl.diagnostics import SelectionStats
from reidlib.methods.scl.learner import SCL
from reidlib.methods.scl.miners import (
    CandidateMiner,
    NearestMiner,
    PositiveChecks,
    TableMiner,
    WarmupMiner,
    lambda_c_at,
    make_miner,
)
from reidlib.methods.scl.selection import (
    Selection,
    check_counts,
    select_neighbours,
    select_random,
    selection_from_order,
)

__all__ = [
    "SCL",
    "Selection",
    "SelectionStats",
    "CandidateMiner",
    "TableMiner",
    "NearestMiner",
    "PositiveChecks",
    "WarmupMiner",
    "check_counts",
    "lambda_c_at",
    "make_miner",
    "select_neighbours",
    "select_random",
    "selection_from_order",
]
