"""The checks a candidate positive must pass to be kept (``scl.pos_max_distance``,
``scl.part_agreement``), for :class:`~reidlib.methods.scl.miners.CandidateMiner` and
:class:`~reidlib.methods.scl.miners.TableMiner`.

Shape letters: B anchors, N memory slots, P stripes, K candidates, k a stripe's nearest.

The part agreement (after PPLR, CVPR 2022) keeps a candidate when enough stripes rank it among
their ``part_agreement_k`` nearest slots: the anchor's stripes against the whole part bank at
every step (:func:`part_votes`, (B, P, N) distances), or on a bank searched through faiss, each
slot's per-epoch stripe lists (:func:`listed_votes`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from reidlib.neighbours.selection_distance import SelectionDistance


@torch.no_grad()
def part_votes(stripe_dist: Tensor, self_idx: Tensor, cand: Tensor, k: int) -> Tensor:
    """How many stripes rank each candidate among their k nearest slots (own slot left out).

    Shape:
        stripe_dist: (B, P, N), self_idx: (B,), cand: (B, K) -> (B, K) int64 in [0, P]
    """
    num_parts = stripe_dist.shape[1]
    own = self_idx[:, None, None].expand(-1, num_parts, 1)
    stripe_dist = stripe_dist.scatter(2, own, float("inf"))
    kth = torch.topk(stripe_dist, k, dim=2, largest=False, sorted=True).values[..., -1:]  # (B, P, 1)
    cand_dist = stripe_dist.gather(2, cand[:, None, :].expand(-1, num_parts, -1))  # (B, P, K)
    return (cand_dist <= kth).sum(1)


@torch.no_grad()
def listed_votes(lists: Tensor, cand: Tensor) -> Tensor:
    """How many stripes list each candidate among the anchor's nearest (:func:`part_votes` through
    per-epoch lists, :func:`~reidlib.methods.scl.tables.stripe_lists`).

    Shape:
        lists: (B, P, k) the anchors' rows, cand: (B, K) -> (B, K) int64 in [0, P]
    """
    return (lists[:, :, :, None] == cand[:, None, None, :]).any(2).sum(1)


class PositiveChecks:
    """The checks a candidate positive must pass to be kept (``pos_max_distance``,
    ``part_agreement``); a candidate that fails one is dropped, neither positive nor negative.

    Args:
        distance: the epoch's selection distance.
        max_distance: drop candidates farther than this; None keeps all.
        part_agreement, part_k: drop candidates fewer than ``part_agreement`` stripes rank among
            their ``part_k`` nearest; 0 skips the check.
        stripe_lists: (N, P, part_k) each slot's nearest by each stripe at the epoch's start
            (:func:`~reidlib.methods.scl.tables.stripe_lists`), looked up for the anchor's own
            slot; None ranks the anchor's stripes against the whole part bank at every step
            ((B, P, N) distances, the exact check).
    """

    def __init__(
        self,
        distance: SelectionDistance,
        max_distance: float | None = None,
        part_agreement: int = 0,
        part_k: int = 20,
        stripe_lists: Tensor | None = None,
    ) -> None:
        self.distance, self.max_distance = distance, max_distance
        self.part_agreement, self.part_k, self.stripe_lists = part_agreement, part_k, stripe_lists

    def __call__(self, cand_dist: Tensor, p: Tensor, cams: Tensor, idx: Tensor, cand: Tensor, keep: Tensor) -> Tensor:
        """``keep`` (B, K) narrowed by the checks, for candidates ``cand`` (B, K) at distances ``cand_dist`` (B, K)."""
        if self.max_distance is not None:
            keep = keep & (cand_dist <= self.max_distance)
        if self.part_agreement:
            if self.stripe_lists is None:
                votes = part_votes(self.distance.stripe_distances(p, cams), idx, cand, self.part_k)
            else:
                votes = listed_votes(self.stripe_lists[idx], cand)
            keep = keep & (votes >= self.part_agreement)
        return keep
