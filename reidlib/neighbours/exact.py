"""Exact nearest neighbours: one blocked "queries x items, then top-k" loop for every caller.

Shape letters: Q queries (anchors), N items (memory slots or gallery images), k neighbours kept.

Evaluation (:func:`reidlib.evaluation.topk.evaluate_topk`), the test distmat
(:func:`reidlib.distances.query_gallery_distance`), the ranked page of ``query``
(:func:`reidlib.retrieval.ranking.rank_gallery`) and SCL's exact searcher
(:class:`reidlib.neighbours.searchers.TorchSearcher`) all compute a distance a block at a time and
keep the nearest; they differ only in the distance and the block sizes, so they share this loop:

- :func:`distance_matrix`: the whole (Q, N) distance, ``query_block`` x ``item_block`` at a time;
- :func:`nearest`: for each block of queries, its k nearest items, the items scanned ``item_block``
  at a time with a running top-k, so memory stays at one block whatever N is;
- :func:`nearest_slots`: the top-k of a distance already in memory, the anchor's own slot left out.

A :data:`BlockDistance` is the caller's distance restricted to a block: ``(query rows, item rows)
-> (q, i)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch
from torch import Tensor

BlockDistance = Callable[[slice, slice], Tensor]  # (query rows, item rows) -> (q, i) distances


class Nearest(NamedTuple):
    """One block of queries' nearest items, nearest first."""

    rows: slice  # the block's queries
    dist: Tensor  # (q, k) distances, ascending
    idx: Tensor  # (q, k) int64 item indices


def _blocks(total: int, size: int | None) -> Iterator[slice]:
    size = size or max(total, 1)
    return (slice(start, min(start + size, total)) for start in range(0, total, size))


def distance_matrix(
    distance: BlockDistance,
    num_queries: int,
    num_items: int,
    *,
    query_block: int | None = None,
    item_block: int | None = None,
    out: Tensor | None = None,
) -> Tensor:
    """The (Q, N) distances, computed ``query_block`` x ``item_block`` at a time (None: all at once).

    ``out`` (Q, N), if given, receives them (its dtype and device); else a float32 tensor on the
    first block's device.
    """
    for rows in _blocks(num_queries, query_block):
        for items in _blocks(num_items, item_block):
            block = distance(rows, items)
            if out is None:
                out = torch.empty(num_queries, num_items, dtype=torch.float32, device=block.device)
            out[rows, items] = block
    return out if out is not None else torch.empty(num_queries, num_items)


def nearest(
    distance: BlockDistance,
    num_queries: int,
    num_items: int,
    k: int,
    *,
    query_block: int | None = None,
    item_block: int | None = None,
    exclude: Tensor | None = None,
) -> Iterator[Nearest]:
    """For each block of queries, its ``k`` nearest items (k is cut to N).

    Args:
        distance: the caller's distance on a block.
        num_queries, num_items: Q and N.
        k: neighbours per query.
        query_block, item_block: the block's shape (None: all queries, all items). With one item
            block the top-k is taken once; with several, each block's top-k is merged into the
            queries' running top-k.
        exclude: (Q,) one item per query never returned (an anchor's own slot), or None.

    Yields:
        :class:`Nearest` per block of queries, in order.
    """
    k = min(k, num_items)
    for rows in _blocks(num_queries, query_block):
        best = idx = None
        for items in _blocks(num_items, item_block):
            block = distance(rows, items).float()  # (q, i)
            if exclude is not None:
                own = exclude[rows].to(block.device) - items.start
                inside = (own >= 0) & (own < block.shape[1])
                block = block.clone()
                block[torch.nonzero(inside).flatten(), own[inside]] = float("inf")
            if k >= block.shape[1]:  # every item of the block, sorted (ties in item order)
                near = torch.sort(block, dim=1, stable=True)
            else:
                near = torch.topk(block, k, dim=1, largest=False, sorted=True)
            if best is None:
                best, idx = near.values, near.indices + items.start
                continue
            best = torch.cat([best, near.values], dim=1)
            idx = torch.cat([idx, near.indices + items.start], dim=1)
            best, pos = torch.topk(best, min(k, best.shape[1]), dim=1, largest=False, sorted=True)
            idx = idx.gather(1, pos)
        yield Nearest(rows, best, idx)


@torch.no_grad()
def nearest_slots(dist: Tensor, self_idx: Tensor, count: int) -> Tensor:
    """The ``count`` nearest slots of each anchor in a distance already computed, nearest first,
    leaving out its own slot.

    Shape:
        dist: (B, N), self_idx: (B,) -> (B, count) int64
    """
    dist = dist.float().scatter(1, self_idx[:, None], float("inf"))  # the own slot sorts last
    return torch.topk(dist, count, dim=1, largest=False, sorted=True).indices
