"""Selection: which memory slots are each anchor's positives and negatives.

A selector looks at distances under ``torch.no_grad()`` and returns index tensors; the loss takes
those indices and never selects (the pytorch-metric-learning miner / loss split).

Shape letters: B batch, N memory slots, K positives besides the anchor's own slot, M negatives.

- :func:`select_neighbours`, SCL's rule after warm-up: sort slots by distance, leave out the
  anchor's own slot; the K nearest are positives, the next M are the selected hard negatives
  (``m=None``: every remaining slot, the "all negatives" ablation).
- :func:`select_random`, the warm-up rule: the own slot is the only positive, and the negatives are
  drawn at random.
- :func:`selection_from_order`, shared by :func:`select_neighbours` and the searchers of
  :mod:`reidlib.neighbours.searchers`: slots sorted nearest first become a Selection.

Both return a :class:`Selection` whose ``pos_idx[:, 0]`` is the anchor's own slot.

:class:`SelectionStats` measures how good the picks were with the training identities, which
never reach the loss: the precision of the positives, how many come from the anchor's camera,
and how many negatives are in fact the anchor's identity. Without identities (camera folders) the
figures that need them are None, unavailable, and the others stay.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields
from typing import NamedTuple

import torch
from torch import Tensor


class Selection(NamedTuple):
    pos_idx: Tensor  # (B, 1+K) column 0 is the anchor's own slot
    neg_idx: Tensor  # (B, M)
    # (B, 1+K) bool: which columns of pos_idx are positives (column 0 always); None: all. A rule
    # that drops candidates (reidlib.methods.scl.miners) masks them: they are then neither positive nor negative.
    pos_mask: Tensor | None = None

    def mask(self) -> Tensor:
        """``pos_mask``, or all True."""
        return torch.ones_like(self.pos_idx, dtype=torch.bool) if self.pos_mask is None else self.pos_mask


def _check(num_slots: int, k: int, m: int | None) -> None:
    if k < 0 or (m is not None and m < 0):
        raise ValueError(f"k and m must be >= 0, got k={k}, m={m}")
    if k + (m or 0) > num_slots - 1:
        raise ValueError(
            f"k + m = {k + (m or 0)} exceeds the {num_slots - 1} slots other than the anchor's own"
        )


def neighbour_count(num_slots: int, k: int, m: int | None) -> int:
    """K + M, the slots each anchor selects (every slot but its own when ``m`` is None), checked
    against the bank's N slots."""
    _check(num_slots, k, m)
    return num_slots - 1 if m is None else k + m


@torch.no_grad()
def nearest_slots(dist: Tensor, self_idx: Tensor, count: int) -> Tensor:
    """The ``count`` nearest slots of each anchor, nearest first, leaving out its own slot.

    Args:
        dist: (B, N) distances (smaller is nearer).
        self_idx: (B,) each anchor's own slot.
        count: how many slots to return (at most N - 1).

    Returns:
        (B, count) int64 slot indices sorted by distance.
    """
    dist = dist.float().scatter(1, self_idx[:, None], float("inf"))  # the own slot sorts last
    return torch.topk(dist, count, dim=1, largest=False, sorted=True).indices


@torch.no_grad()
def selection_from_order(order: Tensor, self_idx: Tensor, k: int) -> Selection:
    """Turn each anchor's slots sorted nearest first (own slot left out) into a Selection.

    The exact path (:func:`select_neighbours`) and the searchers of :mod:`reidlib.neighbours.searchers` both end
    here, so they split positives from negatives in one way.

    Args:
        order: (B, K+M) slots sorted nearest first, without the anchor's own slot.
        self_idx: (B,) each anchor's own slot, which becomes ``pos_idx[:, 0]``.
        k: K, the first K columns of ``order`` become positives, the rest negatives.

    Returns:
        Selection with ``pos_idx`` (B, 1+K) and ``neg_idx`` (B, M).
    """
    if not 0 <= k <= order.shape[1]:
        raise ValueError(f"k={k} must lie in [0, {order.shape[1]}] (the slots given per anchor)")
    pos_idx = torch.cat([self_idx[:, None], order[:, :k]], dim=1)
    return Selection(pos_idx, order[:, k:])


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
    _check(num_slots, 0, num_neg)
    scores = torch.rand(len(self_idx), num_slots, generator=generator, device=self_idx.device)
    scores.scatter_(1, self_idx[:, None], -1.0)  # the own slot is never drawn
    count = num_slots - 1 if num_neg is None else num_neg
    neg_idx = torch.topk(scores, count, dim=1, sorted=False).indices
    return Selection(self_idx[:, None], neg_idx)


@dataclass
class SelectionStats:
    """Running sums over an epoch of how good the selected positives and negatives are.

    Measured with the training identities, which never reach the loss. Positives are the
    neighbours that :attr:`Selection.pos_mask` keeps (the own slot excluded). Positives per anchor
    and the same-camera share need no identities; the other figures do.
    """

    anchors: int = 0
    pos_true: float = 0.0  # neighbours sharing the anchor's identity
    pos_same_cam: float = 0.0  # neighbours from the anchor's camera
    pos_count: int = 0  # neighbours selected
    neg_false: float = 0.0  # negatives that are in fact the anchor's identity
    neg_count: int = 0
    pos_cross_true: float = 0.0  # neighbours from another camera that share the identity
    pos_cross_count: int = 0  # neighbours from another camera
    true_total: int = 0  # the anchors' same-identity slots (own excluded): recall's denominator
    candidates: int = 0  # neighbour columns offered (kept or not); 0 in warm-up

    @torch.no_grad()
    def add(self, sel: Selection, idx: Tensor, pids: Tensor | None, camids: Tensor) -> None:
        """Add a step's selection; ``pids`` (N,) None when the identities are unknown, which leaves
        the sums that need them at 0 (:meth:`summary` then reports them as None)."""
        anchor_cam = camids[idx][:, None]  # (B, 1)
        neighbours, kept = sel.pos_idx[:, 1:], sel.mask()[:, 1:]  # (B, K)
        same_cam = camids[neighbours] == anchor_cam
        self.anchors += len(idx)
        self.pos_same_cam += (same_cam & kept).sum().item()
        self.pos_count += int(kept.sum())
        self.candidates += neighbours.numel()
        self.pos_cross_count += int((kept & ~same_cam).sum())
        self.neg_count += sel.neg_idx.numel()
        if pids is None:
            return
        anchor_pid = pids[idx][:, None]  # (B, 1)
        true = (pids[neighbours] == anchor_pid) & kept
        self.pos_true += true.sum().item()
        self.pos_cross_true += (true & ~same_cam).sum().item()
        per_pid = torch.bincount(pids - pids.min())  # slots per identity: O(N), not a (B, N) comparison
        self.true_total += int(per_pid[pids[idx] - pids.min()].sum()) - len(idx)
        self.neg_false += (pids[sel.neg_idx] == anchor_pid).sum().item()

    def as_tensor(self) -> Tensor:
        """The sums as one float64 tensor (to add them up over processes)."""
        return torch.tensor(astuple(self), dtype=torch.float64)

    @classmethod
    def from_tensor(cls, values: Tensor) -> "SelectionStats":
        kinds = [f.type for f in fields(cls)]
        return cls(*(int(v) if kind in (int, "int") else v for v, kind in zip(values.tolist(), kinds)))

    def summary(self, identities: bool = True) -> dict[str, float | None]:
        """The epoch's figures; None where there is nothing to measure, and, with ``identities``
        False (unknown), for every figure that needs them, rather than a figure of fake labels."""
        share = lambda a, b: a / b if b else None  # noqa: E731
        selecting = self.candidates > 0  # warm-up offers no neighbours: nothing to measure
        known = lambda value: value if identities else None  # noqa: E731
        return {
            "pos_precision": known(share(self.pos_true, self.pos_count)),
            "pos_recall": known(share(self.pos_true, self.true_total) if selecting else None),
            "pos_cross_camera_precision": known(share(self.pos_cross_true, self.pos_cross_count)),
            "pos_per_anchor": share(self.pos_count, self.anchors) if selecting else None,
            "pos_same_camera": share(self.pos_same_cam, self.pos_count),
            "neg_false_rate": known(share(self.neg_false, self.neg_count)),
            "neg_false_per_anchor": known(share(self.neg_false, self.anchors)),
        }
