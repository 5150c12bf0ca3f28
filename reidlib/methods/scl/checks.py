"""The checks a candidate positive must pass to be kept (``scl.pos_max_distance``,
``scl.part_agreement``), for :class:`~reidlib.methods.scl.miners.CandidateMiner` and
:class:`~reidlib.methods.scl.miners.TableMiner`.

Shape letters: B anchors, N memory slots, P stripes, K candidates, k a stripe's nearest.

The part agreement (after PPLR, CVPR 2022) keeps a candidate when enough stripes rank it among
their ``part_agreement_k`` nearest slots: the anchor's stripes against the whole part bank at
every step (:func:`part_votes`, (B, P, N) distances), or, on a bank searched through faiss, the
same vote over a pool of slots that holds the nearest (:func:`pooled_votes`), whose per-epoch
stripe lists are ``LIST_DEPTH`` times ``part_agreement_k`` long.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reidlib.neighbours.selection_distance import SelectionDistance

# How much deeper than the check's k the per-epoch stripe lists go: an anchor is an augmented crop
# through the current weights, not its slot, and its stripes' k nearest spill past the slot's k.
# In the first three epochs with positives of a cuhk01 run through IVF (the step's search at 61%
# of the exact negatives; benchmarks/check_pool.py), the pooled keep / drop calls agreed with the
# dense check's 93.4-93.7% of the time with every stripe's k-list in the pool, 95.6-96.9% at 3k,
# 96.4-97.4% at 4k, 98.9-99.5% with an exact search's pool (docs/scaling.md).
LIST_DEPTH = 3


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
def pooled_votes(
    distance: SelectionDistance,
    p: Tensor,
    cams: Tensor,
    self_idx: Tensor,
    cand: Tensor,
    lists: Tensor,
    pool: Tensor,
    k: int,
    pool_dist: Tensor | None = None,
) -> Tensor:
    """:func:`part_votes` without a (B, P, N) row: the anchors' stripes now, against a pool of slots
    that holds their nearest: the slot's stripe lists of the epoch's start, every stripe's for
    every stripe (:func:`~reidlib.methods.scl.tables.stripe_lists`; slots near in one stripe are
    often near in the others, and an anchor that moved needs more than its stripe's own list),
    the slots the step's search found nearest by the whole distance (``pool``), and the
    candidates. Each stripe's k-th nearest within the pool is the threshold: the exact one
    wherever the pool holds the stripe's k nearest slots (with the anchor as its slot and the
    banks unchanged, exactly :func:`part_votes`), else a little farther (a few more votes).

    ``pool_dist`` (B, P, R), the pool's stripe distances if known (the searcher's re-ranking
    gathered those slots already: :meth:`~reidlib.neighbours.searchers.FaissSearcher.neighbours_with_stripes`);
    computed here otherwise.

    Shape:
        p: (B, P, d), cams, self_idx: (B,), cand: (B, K), lists: (B, P, L), pool: (B, R)
        -> (B, K) int64 in [0, P]
    """
    num_parts = p.shape[1]
    spread = lambda rows: rows[:, None, :].expand(-1, num_parts, -1)  # noqa: E731  (B, X) -> (B, P, X)
    if pool_dist is None:
        pool_dist = distance.stripe_distances_to(p, cams, spread(pool.clamp_min(0)))
    ours = torch.cat([cand, lists.flatten(1).long()], dim=1)  # (B, K + P L) one pool for every stripe
    ours_dist = distance.stripe_distances_to(p, cams, spread(ours.clamp_min(0)))  # (B, P, K + P L)
    cand_dist = ours_dist[..., : cand.shape[1]].masked_fill(spread(cand == self_idx[:, None]), float("inf"))
    slots, order = torch.cat([ours, pool], dim=1).sort(dim=1)  # (B, T)
    dist = torch.cat([ours_dist, pool_dist], dim=2).gather(2, spread(order))  # (B, P, T)
    left_out = (slots < 0) | (slots == self_idx[:, None])  # no list entry, the own slot: no vote
    left_out[:, 1:] |= slots[:, 1:] == slots[:, :-1]  # each slot counted once
    dist.masked_fill_(spread(left_out), float("inf"))
    kth = torch.topk(dist, min(k, dist.shape[2]), dim=2, largest=False, sorted=True).values[..., -1:]  # (B, P, 1)
    return (cand_dist <= kth).sum(1)


class PositiveChecks:
    """The checks a candidate positive must pass to be kept (``pos_max_distance``,
    ``part_agreement``); a candidate that fails one is dropped, neither positive nor negative.

    Args:
        distance: the epoch's selection distance.
        max_distance: drop candidates farther than this; None keeps all.
        part_agreement, part_k: drop candidates fewer than ``part_agreement`` stripes rank among
            their ``part_k`` nearest; 0 skips the check.
        stripe_lists: (N, P, L) each slot's nearest by each stripe at the epoch's start, L =
            ``LIST_DEPTH * part_k``
            (:func:`~reidlib.methods.scl.tables.stripe_lists`): the anchor's stripes are ranked
            within the pool of :func:`pooled_votes`; None ranks them against the whole part bank
            at every step ((B, P, N) distances, the exact check).
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

    @property
    def pooled(self) -> bool:
        """Whether the part agreement ranks within a pool (and wants the searched slots' stripe
        distances) rather than against the whole part bank."""
        return bool(self.part_agreement) and self.stripe_lists is not None

    def __call__(
        self,
        cand_dist: Tensor,
        p: Tensor,
        cams: Tensor,
        idx: Tensor,
        cand: Tensor,
        keep: Tensor,
        pool: Tensor | None = None,
        pool_dist: Tensor | None = None,
    ) -> Tensor:
        """``keep`` (B, K) narrowed by the checks, for candidates ``cand`` (B, K) at distances
        ``cand_dist`` (B, K); ``pool`` (B, R), the slots the step's search found nearest, and
        ``pool_dist`` (B, P, R) their stripe distances if known (with ``stripe_lists``)."""
        if self.max_distance is not None:
            keep = keep & (cand_dist <= self.max_distance)
        if self.part_agreement:
            if self.stripe_lists is None:
                votes = part_votes(self.distance.stripe_distances(p, cams), idx, cand, self.part_k)
            else:
                nearest = cand[:, :0] if pool is None else pool
                lists = self.stripe_lists[idx]
                votes = pooled_votes(self.distance, p, cams, idx, cand, lists, nearest, self.part_k, pool_dist)
            keep = keep & (votes >= self.part_agreement)
        return keep
