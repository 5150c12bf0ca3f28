"""The neighbourhood graph of the memory slots, computed on the banks once per epoch.

Shape letters: N slots, D feature dim, P stripes, d = D / P, C cameras, k neighbours, W the
widest set of a row.

What the selection rules beyond plain kNN need (:mod:`reidlib.methods.scl.miners`), and Cluster Contrast's
pseudo-labels (:mod:`reidlib.methods.cluster_contrast.clustering`) too:

- :func:`slot_ranking`: each slot's k nearest slots, itself first, by any slot-to-slot distance
  (SCL's: :meth:`reidlib.neighbours.selection_distance.SelectionDistance.slot_rows`), optionally
  within the slot's camera or across cameras only;
- :func:`reciprocal_mask`: which of those neighbours hold the slot in their own list
  (k-reciprocal nearest neighbours, Zhong et al., CVPR 2017);
- :func:`reciprocal_sets`: the k-reciprocal sets with Zhong's expansion by the half-size sets,
  and :func:`camera_aware_sets`: the union of the reciprocal neighbours found within cameras and
  across cameras (CA-Jaccard, Chen et al., CVPR 2024);
- :func:`jaccard_distance`: the k-reciprocal Jaccard distance of those sets (Gaussian weights
  of :func:`set_distances`, local query expansion), sparse: only pairs whose sets overlap are
  stored, every other pair is at distance 1;
- :func:`nearest_by_jaccard`: each slot's nearest by that distance, under a threshold;
- :func:`mutual_groups`: the connected groups of a mutual k-nearest-neighbour graph (within a
  camera: slots that are each other's nearest).

Memory: rankings are computed ``block`` rows at a time (the largest dense tensor is block x N
distances: 512 x 100,000 float32 = 205 MB); the Jaccard step holds the sets (N x W), the vectors
after query expansion (N x R entries, R up to k2 W) and the overlapping pairs it returns, and joins
``JACCARD_BLOCK`` rows at a time (block x R^2 index pairs: about 6 M for 256 rows of R = 150),
never an N x N matrix.
A naive loop over slots, written in ``tests/neighbours/test_graph.py``, is the oracle for every function.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

DistanceRows = Callable[[Tensor], Tensor]  # slot indices (b,) -> (b, N) distances to every slot
RANK_BLOCK = 512
JACCARD_BLOCK = 256  # rows joined at a time by jaccard_distance


@torch.no_grad()
def slot_ranking(
    distance_rows: DistanceRows,
    num_slots: int,
    k: int,
    *,
    camids: Tensor | None = None,
    cameras: str = "all",
    block: int = RANK_BLOCK,
) -> tuple[Tensor, Tensor]:
    """Each slot's k nearest slots, the slot itself in column 0.

    Args:
        distance_rows: slot indices (b,) -> (b, N) distances from those slots to every slot.
        num_slots: N.
        k: neighbours besides the slot itself (capped at what the camera rule leaves).
        camids: (N,) the slots' cameras (needed unless ``cameras == "all"``).
        cameras: ``all``; ``same`` ranks only slots of the slot's own camera; ``other`` only
            slots of other cameras (the slot itself stays in column 0 in every case).
        block: rows per block.

    Returns:
        ``(idx, dist)``, each (N, 1 + k): neighbours nearest first, and their distances
        (0 for the slot itself). Where a camera holds fewer than k candidates, the row is
        padded with index -1 at distance inf.
    """
    idx_rows, dist_rows = [], []
    for start in range(0, num_slots, block):
        rows = torch.arange(start, min(start + block, num_slots))
        dist = distance_rows(rows).float().clone()  # (b, N)
        rows = rows.to(dist.device)
        if cameras != "all":
            same = camids[rows][:, None] == camids[None, :]
            dist.masked_fill_(~same if cameras == "same" else same, float("inf"))
        dist[torch.arange(len(rows), device=dist.device), rows] = -1.0  # the slot itself sorts first
        values, order = torch.topk(dist, min(k + 1, num_slots), dim=1, largest=False, sorted=True)
        order = order.masked_fill(torch.isinf(values), -1)
        idx_rows.append(order)
        dist_rows.append(values.clamp_min(0.0))
    idx, dist = torch.cat(idx_rows), torch.cat(dist_rows)
    dist[:, 0] = 0.0
    return idx, dist


@torch.no_grad()
def reciprocal_mask(ranking: Tensor, k: int | None = None) -> Tensor:
    """Which of each slot's first ``k`` + 1 neighbours list the slot among their own first k + 1.

    Args:
        ranking: (N, 1 + K) slot rankings from :func:`slot_ranking` (self first, -1 padding).
        k: use the first k + 1 columns (None: all).

    Returns:
        (N, 1 + k) bool, True in column 0 (every slot is its own reciprocal neighbour).
    """
    ranking = ranking if k is None else ranking[:, : k + 1]
    forward = ranking.clamp_min(0)  # (N, 1+k), padding points at slot 0 and is masked below
    backward = ranking[forward]  # (N, 1+k, 1+k) the neighbours' own lists
    me = torch.arange(len(ranking), device=ranking.device)[:, None, None]
    return (backward == me).any(-1) & (ranking >= 0)


def _dedupe(idx: Tensor, valid: Tensor, num_slots: int) -> tuple[Tensor, Tensor]:
    """Rows of slot indices with validity -> sorted, duplicates and invalid entries dropped,
    trimmed to the widest row (W). Returns ``(idx, valid)``, each (N, W)."""
    key = idx.masked_fill(~valid, num_slots).sort(dim=1).values
    dup = torch.zeros_like(key, dtype=torch.bool)
    dup[:, 1:] = key[:, 1:] == key[:, :-1]
    key = key.masked_fill(dup, num_slots).sort(dim=1).values
    keep = key < num_slots
    width = max(int(keep.sum(1).max()), 1)
    return key[:, :width].clamp_max(num_slots - 1), keep[:, :width]


@torch.no_grad()
def reciprocal_sets(ranking: Tensor, k1: int) -> tuple[Tensor, Tensor]:
    """Zhong et al.'s expanded k-reciprocal sets R*(i, k1).

    R(i, k1) are the k1-reciprocal neighbours; each j in it adds its own R(j, round(k1 / 2)) when
    more than two thirds of that smaller set lies in R(i, k1).

    Args:
        ranking: (N, 1 + K) rankings (self first), K >= k1.
        k1: the reciprocal k.

    Returns:
        ``(idx, valid)``, each (N, W): the members of R*(i, k1), each slot included.
    """
    num_slots = len(ranking)
    half = int(round(k1 / 2))
    forward = ranking[:, : k1 + 1]  # (N, 1+k1)
    in_r = reciprocal_mask(ranking, k1)  # (N, 1+k1) membership of R(i, k1)
    half_idx = ranking[:, : half + 1]  # (N, 1+h)
    half_in = reciprocal_mask(ranking, half)  # (N, 1+h) R(j, h) for every j
    cand = half_idx[forward.clamp_min(0)]  # (N, 1+k1, 1+h) R(j, h) for each neighbour j of i
    cand_in = half_in[forward.clamp_min(0)] & in_r[:, :, None]  # only j in R(i, k1) count
    # how much of R(j, h) lies in R(i, k1)
    member = (cand[..., None] == forward[:, None, None, :]) & in_r[:, None, None, :]  # (N, 1+k1, 1+h, 1+k1)
    overlap = (member.any(-1) & cand_in).sum(-1)  # (N, 1+k1)
    size = cand_in.sum(-1)
    accept = (overlap > 2.0 / 3.0 * size) & (size > 0)  # (N, 1+k1)
    added = cand_in & accept[:, :, None]  # (N, 1+k1, 1+h)
    idx = torch.cat([forward, cand.flatten(1)], dim=1)
    valid = torch.cat([in_r, added.flatten(1)], dim=1)
    return _dedupe(idx, valid, num_slots)


@torch.no_grad()
def camera_aware_sets(
    ranking_intra: Tensor, ranking_inter: Tensor, k_intra: int, k_inter: int
) -> tuple[Tensor, Tensor]:
    """CA-Jaccard's camera-aware k-reciprocal neighbours: the k_intra-reciprocal neighbours on
    the within-camera rankings united with the k_inter-reciprocal ones on the cross-camera
    rankings, so that a set always holds the other cameras' reciprocal matches.

    Args:
        ranking_intra: (N, 1 + K) within-camera rankings (:func:`slot_ranking`, ``cameras="same"``).
        ranking_inter: (N, 1 + K') cross-camera rankings (``cameras="other"``).

    Returns:
        ``(idx, valid)``, each (N, W), each slot included.
    """
    intra = ranking_intra[:, : k_intra + 1]
    inter = ranking_inter[:, : k_inter + 1]
    idx = torch.cat([intra, inter], dim=1)
    valid = torch.cat([reciprocal_mask(ranking_intra, k_intra), reciprocal_mask(ranking_inter, k_inter)], dim=1)
    return _dedupe(idx.clamp_min(0), valid, len(idx))


@torch.no_grad()
def set_distances(distance_rows: DistanceRows, idx: Tensor, block: int = RANK_BLOCK) -> Tensor:
    """The distance from each slot to each member of its set (the weights of :func:`jaccard_distance`).

    Shape:
        idx: (N, W) set members (:func:`reciprocal_sets`) -> (N, W) float32; ``block`` rows of
        (block, N) distances at a time.
    """
    out = torch.empty(idx.shape, dtype=torch.float32, device=idx.device)
    for start in range(0, len(idx), block):
        rows = torch.arange(start, min(start + block, len(idx)), device=idx.device)
        out[rows] = distance_rows(rows).gather(1, idx[rows])
    return out


@torch.no_grad()
def jaccard_distance(
    sets: tuple[Tensor, Tensor], set_dist: Tensor, ranking: Tensor, k2: int, *, block: int = JACCARD_BLOCK
) -> tuple[Tensor, Tensor, Tensor]:
    """The k-reciprocal Jaccard distance between slots, sparse.

    Each slot i gets a vector V_i over slots: ``softmax(-dist(i, j))`` over the members j of its
    set, 0 elsewhere; local query expansion replaces V_i by the mean of V over its k2 nearest
    (itself included); then ``d_J(i, l) = 1 - S / (2 - S)`` with ``S = sum_j min(V_ij, V_lj)``
    (the weighted Jaccard distance of two vectors that each sum to 1).

    Args:
        sets: ``(idx, valid)`` (N, W) from :func:`reciprocal_sets` or :func:`camera_aware_sets`.
        set_dist: (N, W) the distance from each slot to each member of its set.
        ranking: (N, 1 + K) rankings (self first) for the query expansion, K + 1 >= k2.
        k2: query expansion width (1: none).
        block: rows i joined at a time (the result does not depend on it, bit for bit).

    Returns:
        ``(rows, cols, dist)``: the pairs whose vectors overlap (each slot with itself
        included), sorted by row and then by distance; every other pair is at distance 1.
    """
    idx, valid = sets
    num_slots = len(idx)
    weights = torch.softmax(set_dist.float().masked_fill(~valid, float("inf")).neg(), dim=1)  # (N, W)
    rows = torch.arange(num_slots, device=idx.device)[:, None].expand_as(idx)
    r, c, w = rows[valid], idx[valid], weights[valid]  # V as (row, column, value), rows ascending
    if k2 > 1:  # V_i <- mean of V_j over the k2 nearest j (self first)
        r, c, w = _expand_rows((r, c, w), ranking[:, :k2], num_slots)
    # S(i, l) = sum over shared columns j of min(V_ij, V_lj): join the entries on their column,
    # the rows i of one block at a time (the join of all rows at once holds N R^2 pairs of
    # indices, for rows of R entries; a block holds block R^2)
    row_ends = torch.cumsum(torch.bincount(r, minlength=num_slots), 0)  # r ascends: each row's entries
    order = torch.argsort(c, stable=True)
    r, c, w = r[order], c[order], w[order]
    moved = torch.empty_like(order)
    moved[order] = torch.arange(len(order), device=order.device)  # where each row's entries went
    counts = torch.bincount(c, minlength=num_slots)  # entries per column
    starts = torch.cumsum(counts, 0) - counts
    blocks = []
    for start in range(0, num_slots, block):
        end = min(start + block, num_slots)
        first = int(row_ends[start - 1]) if start else 0
        mine = moved[first : int(row_ends[end - 1])].sort().values  # the block's entries, by column
        blocks.append(_join_rows((r, c, w), starts, counts, mine))
    pair_rows, pair_cols, dist = (torch.cat(parts) for parts in zip(*blocks))
    return pair_rows, pair_cols, dist


def _join_rows(
    entries: tuple[Tensor, Tensor, Tensor], starts: Tensor, counts: Tensor, mine: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`jaccard_distance`'s pairs (i, l) for the rows i of the entries ``mine`` (positions in
    ``entries``, ascending), sorted by row, then distance; ``entries`` sorted by column, each
    column's entries from ``starts``, ``counts``. Work O(block R^2), whatever N."""
    r, c, w = entries
    num_slots = len(counts)
    group = counts[c[mine]]  # the partners of each: every entry of its column
    left = torch.repeat_interleave(mine, group)
    first = torch.repeat_interleave(torch.cumsum(group, 0) - group, group)
    right = starts[c[left]] + (torch.arange(len(left), device=c.device) - first)
    pair_key = r[left] * num_slots + r[right]
    keys, inverse = torch.unique(pair_key, return_inverse=True)
    # each pair's terms are added in column order, whatever the block
    shared = torch.zeros(len(keys), dtype=w.dtype, device=w.device).index_add_(
        0, inverse, torch.minimum(w[left], w[right])
    )
    dist = 1.0 - shared / (2.0 - shared)
    pair_rows, pair_cols = keys // num_slots, keys % num_slots
    order = torch.argsort(pair_rows.double() * 4.0 + dist.double().clamp(0, 1), stable=True)  # row, then distance
    return pair_rows[order], pair_cols[order], dist[order].clamp_min(0.0)


def _expand_rows(
    entries: tuple[Tensor, Tensor, Tensor], neighbours: Tensor, num_slots: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Sparse rows (row, column, value) -> row i becomes the mean of the rows ``neighbours[i]``
    (-1 entries ignored): local query expansion, without a dense N x N matrix."""
    r, c, w = entries
    counts = torch.bincount(r, minlength=num_slots)  # entries per row
    starts = torch.cumsum(counts, 0) - counts
    valid = neighbours >= 0
    share = 1.0 / valid.sum(1).clamp_min(1).to(w.dtype)  # (N,)
    anchor = torch.arange(num_slots, device=r.device)[:, None].expand_as(neighbours)[
        valid
    ]  # one (i, j) pair per neighbour
    source = neighbours[valid]
    size = counts[source]
    entry = torch.repeat_interleave(starts[source], size) + (
        torch.arange(int(size.sum()), device=r.device) - torch.repeat_interleave(torch.cumsum(size, 0) - size, size)
    )
    new_rows = torch.repeat_interleave(anchor, size)
    v = torch.sparse_coo_tensor(
        torch.stack([new_rows, c[entry]]), w[entry] * share[new_rows], (num_slots, num_slots), check_invariants=True
    ).coalesce()
    out_r, out_c = v.indices()
    return out_r, out_c, v.values()


@torch.no_grad()
def nearest_by_jaccard(
    pairs: tuple[Tensor, Tensor, Tensor], num_slots: int, k: int, eps: float
) -> tuple[Tensor, Tensor]:
    """Each slot's k nearest other slots by Jaccard distance, kept where the distance is below eps.

    Args:
        pairs: ``(rows, cols, dist)`` from :func:`jaccard_distance` (sorted by row, then distance).
        num_slots: N.
        k: at most this many per slot.
        eps: the distance a neighbour must lie below.

    Returns:
        ``(idx, valid)``, each (N, k): nearest first; invalid entries hold the slot itself.
    """
    rows, cols, dist = pairs
    keep = (rows != cols) & (dist < eps)
    rows, cols = rows[keep], cols[keep]
    counts = torch.bincount(rows, minlength=num_slots)
    position = (
        torch.arange(len(rows), device=rows.device) - (torch.cumsum(counts, 0) - counts)[rows]
    )  # rank within the row
    take = position < k
    idx = torch.arange(num_slots, device=rows.device)[:, None].repeat(1, k)
    idx[rows[take], position[take]] = cols[take]
    valid = torch.zeros(num_slots, k, dtype=torch.bool, device=rows.device)
    valid[rows[take], position[take]] = True
    return idx, valid


@torch.no_grad()
def group_members(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Each group's slots, from one sort (no (N, N) tensor).

    Args:
        labels: (N,) any labels (identities, groups).

    Returns:
        ``(members, group_of)``: (G, S) the slots of each of the G distinct labels in ascending label
        order (-1 pads to the largest group), and (N,) each slot's row of ``members``.
    """
    order = torch.argsort(labels, stable=True)
    _, inverse, counts = torch.unique_consecutive(labels[order], return_inverse=True, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    members = torch.full((len(counts), int(counts.max())), -1, dtype=torch.int64, device=labels.device)
    members[inverse, torch.arange(len(labels), device=labels.device) - starts[inverse]] = order
    group_of = torch.empty_like(inverse)
    group_of[order] = inverse
    return members, group_of


@torch.no_grad()
def mutual_groups(ranking: Tensor, k: int) -> Tensor:
    """The groups of slots that are mutual neighbours: the connected components of the graph whose
    edges join each slot to those of its first ``k`` neighbours that hold it among theirs.

    Args:
        ranking: (N, 1 + K) rankings (self first, -1 padding), K >= k.

    Returns:
        (N,) int64 group labels, 0..G-1, in the order of each group's first slot.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    num_slots = len(ranking)
    mutual = reciprocal_mask(ranking, k)[:, 1:]  # (N, k)
    rows = torch.arange(num_slots, device=ranking.device)[:, None].expand_as(mutual)[mutual]
    cols = ranking[:, 1 : k + 1][mutual]
    graph = coo_matrix(
        (torch.ones(len(rows)).numpy(), (rows.cpu().numpy(), cols.cpu().numpy())), shape=(num_slots, num_slots)
    )
    _, labels = connected_components(graph, directed=False)
    labels = torch.as_tensor(labels, dtype=torch.int64, device=ranking.device)
    _, first = torch.unique(labels, return_inverse=True)  # scipy's labels already run in that order
    return first
