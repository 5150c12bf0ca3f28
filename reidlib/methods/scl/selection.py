"""Selection: which memory slots are each anchor's positives and negatives.

A miner (:mod:`reidlib.methods.scl.miners`) looks at distances under ``torch.no_grad()`` and returns
index tensors; the loss takes those indices and never selects (the pytorch-metric-learning miner /
loss split).

Shape letters: B batch, N memory slots, K positives besides the anchor's own slot, M negatives.

- :func:`select_neighbours`, SCL's rule after warm-up: sort slots by distance, leave out the
  anchor's own slot; the K nearest are positives, the next M are the selected hard negatives
  (``m=None``: every remaining slot, the "all negatives" ablation).
- :func:`select_random`, the warm-up rule: the own slot is the only positive, and the negatives are
  drawn at random.
- :func:`selection_from_order`, shared by :func:`select_neighbours` and the miners that search
  (:mod:`reidlib.neighbours.searchers`): slots sorted nearest first become a Selection.
- :func:`member`: which of each row's slots are among another set of that row's slots (a
  positive among the searched slots, a table's entry already held, a true match kept).

Both return a :class:`Selection` whose ``pos_idx[:, 0]`` is the anchor's own slot.
:func:`check_counts` is the one check that K + M fit the bank (the method calls it before
training starts, with the training set's size).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from reidlib.errors import ConfigError
from reidlib.neighbours.exact import nearest_slots


class Selection(NamedTuple):
    pos_idx: Tensor  # (B, 1+K) column 0 is the anchor's own slot
    neg_idx: Tensor  # (B, M)
    # (B, 1+K) bool: which columns of pos_idx are positives (column 0 always); None: all. A rule
    # that drops candidates (reidlib.methods.scl.miners) masks them: they are then neither positive nor negative.
    pos_mask: Tensor | None = None
    # (B, W) slots left out of the loss on purpose, neither positive nor negative (the band of nearest
    # non-positives, scl.negative_band); None: none. Read only by the diagnostics.
    ignored: Tensor | None = None

    def mask(self) -> Tensor:
        """``pos_mask``, or all True."""
        return torch.ones_like(self.pos_idx, dtype=torch.bool) if self.pos_mask is None else self.pos_mask


def member(table: Tensor, columns: Tensor | None, keep: Tensor | None = None) -> Tensor:
    """(B, S) bool: which entries of ``table`` (B, S) are among ``columns`` (B, C) (where ``keep``)."""
    if columns is None or columns.shape[1] == 0:
        return torch.zeros_like(table, dtype=torch.bool)
    if keep is not None:
        columns = columns.masked_fill(~keep, -2)  # never equal to a slot or to the -1 padding
    return (table[:, :, None] == columns[:, None, :]).any(-1)


def check_counts(num_slots: int, k: int, m: int | None, band: int = 0) -> None:
    """Raise :class:`~reidlib.errors.ConfigError` unless ``scl.k`` positives, ``scl.negative_band``
    slots left alone and ``scl.m`` negatives fit a bank of ``num_slots`` slots (each anchor has
    N - 1 slots besides its own); the message names the keys and a value that works."""
    if k < 0 or band < 0 or (m is not None and m < 0):
        raise ConfigError(f"scl.k, scl.negative_band and scl.m must be >= 0, got k={k}, negative_band={band}, m={m}")
    others, taken = num_slots - 1, k + band
    if taken + (m or 0) > others:
        keys = "scl.k + scl.negative_band + scl.m" if band else "scl.k + scl.m"
        fix = f"--set m={others - taken}" if taken <= others else f"--set k={others // 2} m={others - others // 2}"
        if taken > others and band:
            fix += " negative_band=0"
        raise ConfigError(
            f"{keys} = {taken + (m or 0)} must be at most {others}, the slots besides an anchor's own in a "
            f"bank of {num_slots} training images; e.g. {fix}"
        )


def neighbour_count(num_slots: int, k: int, m: int | None, band: int = 0) -> int:
    """K + band + M, the slots each anchor ranks (every slot but its own when ``m`` is None), checked
    against the bank's N slots."""
    check_counts(num_slots, k, m, band)
    return num_slots - 1 if m is None else k + band + m


@torch.no_grad()
def selection_from_order(order: Tensor, self_idx: Tensor, k: int, band: int = 0) -> Selection:
    """Turn each anchor's slots sorted nearest first (own slot left out) into a Selection.

    The exact path (:func:`select_neighbours`) and the miners that search both end here, so they
    split positives from negatives in one way.

    Args:
        order: (B, K+band+M) slots sorted nearest first, without the anchor's own slot.
        self_idx: (B,) each anchor's own slot, which becomes ``pos_idx[:, 0]``.
        k: K, the first K columns of ``order`` become positives.
        band: the next ``band`` columns are left alone (``ignored``), the rest become negatives.

    Returns:
        Selection with ``pos_idx`` (B, 1+K), ``neg_idx`` (B, M) and, with a band, ``ignored`` (B, band).
    """
    if not 0 <= k + band <= order.shape[1]:
        raise ValueError(f"k + band = {k + band} must lie in [0, {order.shape[1]}] (the slots given per anchor)")
    pos_idx = torch.cat([self_idx[:, None], order[:, :k]], dim=1)
    return Selection(pos_idx, order[:, k + band :], ignored=order[:, k : k + band] if band else None)


@torch.no_grad()
def select_neighbours(dist: Tensor, self_idx: Tensor, k: int, m: int | None) -> Selection:
    """Pick the K nearest slots as positives and the next M as negatives.

    Args:
        dist: (B, N) distance from each anchor to every slot (smaller is nearer), e.g.
            :func:`reidlib.distances.combined_distance` with the camera penalty.
        self_idx: (B,) each anchor's own slot; it leads the positives and is never a negative.
        k: K, positives besides the own slot (0: a single positive).
        m: M, negatives after the positives; None takes every remaining slot.

    Returns:
        Selection with ``pos_idx`` (B, 1+K) and ``neg_idx`` (B, M) (M = N-1-K when m is None).
    """
    count = neighbour_count(dist.shape[1], k, m)
    return selection_from_order(nearest_slots(dist, self_idx, count), self_idx, k)  # (B, K+M)


@torch.no_grad()
def select_random(
    self_idx: Tensor, num_slots: int, num_neg: int | None, generator: torch.Generator | None = None
) -> Selection:
    """Warm-up selection: the own slot is the only positive; negatives are random other slots.

    Args:
        self_idx: (B,) each anchor's own slot.
        num_slots: N.
        num_neg: how many negatives (the public code draws K + M); None takes every other slot.
        generator: a seeded generator, so the draw is reproducible.

    Returns:
        Selection with ``pos_idx`` (B, 1) and ``neg_idx`` (B, num_neg), drawn without replacement.
    """
    check_counts(num_slots, 0, num_neg)
    scores = torch.rand(len(self_idx), num_slots, generator=generator, device=self_idx.device)
    scores.scatter_(1, self_idx[:, None], -1.0)  # the own slot is never drawn
    count = num_slots - 1 if num_neg is None else num_neg
    neg_idx = torch.topk(scores, count, dim=1, sorted=False).indices
    return Selection(self_idx[:, None], neg_idx)
