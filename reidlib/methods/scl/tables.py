"""SCL's per-epoch positive tables: each slot's positives, computed once at the start of an epoch
from the slots' rankings by the selection distance (:class:`~reidlib.neighbours.slot_search.SlotSearch`:
exact, or through a faiss index for large banks), and read by :class:`~reidlib.methods.scl.miners.TableMiner`
at every step.

- :func:`positive_table`: the table of ``scl.positive_rule``, one of the two below (with
  ``scl.group_fill``, the groups' table filled from the CA-Jaccard one, :func:`fill_table`);
- :func:`jaccard_positives`: the k-reciprocal Jaccard rules (``jaccard``, ``ca_jaccard``);
- :func:`camera_group_positives`: ``camera_groups``, within cameras first, then across them;
- :func:`cross_camera_pairs`: mutual neighbours across cameras (``scl.cross_camera_positives``);
- :func:`stripe_lists`: each slot's nearest by each stripe alone, for the part agreement check
  when the bank is searched through faiss (``scl.part_agreement``).

Each returns ``(idx, valid)``, (N, K): nearest first, invalid entries holding the slot itself.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor

from reidlib.config import SCLConfig
from reidlib.methods.scl.diagnostics import IdentityTable
from reidlib.methods.scl.selection import member
from reidlib.neighbours import graph
from reidlib.neighbours.selection_distance import SelectionDistance
from reidlib.neighbours.slot_search import SlotSearch


def positive_table(distance: SelectionDistance, search: SlotSearch, scl_cfg: SCLConfig) -> tuple[Tensor, Tensor]:
    """The per-epoch positives of ``scl.positive_rule`` (jaccard, ca_jaccard or camera_groups, the
    latter filled up to ``scl.k`` from ca_jaccard with ``scl.group_fill: ca_jaccard``)."""
    if scl_cfg.positive_rule != "camera_groups":
        return jaccard_positives(search, scl_cfg)
    groups = camera_group_positives(distance, search, scl_cfg)
    if scl_cfg.group_fill == "none":
        return groups
    return fill_table(groups, jaccard_positives(search, replace(scl_cfg, positive_rule="ca_jaccard")), scl_cfg.k)


def fill_table(first: tuple[Tensor, Tensor], then: tuple[Tensor, Tensor], k: int) -> tuple[Tensor, Tensor]:
    """Each row's valid entries of ``first``, in order, then those of ``then`` that ``first`` does
    not hold, in order: at most ``k``. Both are ``(idx, valid)``, (N, K1) and (N, K2), their rows
    free of repeats; invalid entries hold the slot itself, as in the result (N, k)."""
    (a, a_ok), (b, b_ok) = first, then
    b_ok = b_ok & ~member(b, a, a_ok)  # (N, K2) not yet held
    return first_valid(torch.cat([a, b], dim=1), torch.cat([a_ok, b_ok], dim=1), k)


def first_valid(cand: Tensor, ok: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Each row's first ``k`` valid candidates, in their order, as ``(idx, valid)`` (N, k): the
    rest, and the columns beyond ``cand``'s (N, C) when C < k, hold the row's own slot, invalid."""
    order = torch.argsort((~ok).to(torch.int8), dim=1, stable=True)[:, :k]  # valid ones first, in order
    ok = ok.gather(1, order)
    own = torch.arange(len(cand), device=cand.device)[:, None]
    idx = torch.where(ok, cand.gather(1, order), own)
    if idx.shape[1] < k:
        pad = k - idx.shape[1]
        idx = torch.cat([idx, own.expand(-1, pad)], dim=1)
        ok = torch.cat([ok, torch.zeros(len(cand), pad, dtype=torch.bool, device=ok.device)], dim=1)
    return idx, ok


def jaccard_positives(search: SlotSearch, scl_cfg: SCLConfig) -> tuple[Tensor, Tensor]:
    """The per-epoch table of :class:`TableMiner` for ``scl.positive_rule`` jaccard / ca_jaccard:
    each slot's ``scl.k`` nearest by (camera-aware) k-reciprocal Jaccard distance below ``jaccard_eps``.

    Args:
        search: the slots' rankings and set distances (:mod:`reidlib.neighbours.slot_search`).
    """
    s, num_slots = scl_cfg, search.num_slots
    ranking, _ = search.ranking(max(s.jaccard_k1, s.jaccard_k2))
    if s.positive_rule == "jaccard":
        sets = graph.reciprocal_sets(ranking, s.jaccard_k1)
    else:
        intra, _ = search.ranking(s.ca_k_intra, cameras="same")
        inter, _ = search.ranking(s.ca_k_inter, cameras="other")
        sets = graph.camera_aware_sets(intra, inter, s.ca_k_intra, s.ca_k_inter)
    pairs = graph.jaccard_distance(sets, search.pair_distances(sets[0]), ranking, s.jaccard_k2)
    return graph.nearest_by_jaccard(pairs, num_slots, s.k, s.jaccard_eps)


def camera_group_positives(
    distance: SelectionDistance, search: SlotSearch, scl_cfg: SCLConfig
) -> tuple[Tensor, Tensor]:
    """The per-epoch table of ``scl.positive_rule: camera_groups`` (after IICS, CVPR 2021, and CAP,
    AAAI 2021: associate within cameras first, then across them).

    Within each camera, slots that are mutual ``group_intra_k`` nearest form groups (the connected
    components, :func:`reidlib.neighbours.graph.mutual_groups`); each group's mean global feature
    and mean stripes (as the selection distance sees them, renormalised) stand for it; groups of
    other cameras that are mutual ``group_inter_k`` nearest by the selection distance of those
    means are linked. A slot's positives are the other members of its group, then the members of
    its linked groups, nearest group first: at most ``scl.k``.

    Returns:
        ``(idx, valid)``, each (N, K); invalid entries hold the slot itself.
    """
    s, camids = scl_cfg, distance.camids
    within, _ = search.ranking(s.group_intra_k, cameras="same")
    labels = graph.mutual_groups(within, s.group_intra_k)  # (N,)
    mean_g, mean_p = group_means(distance, labels)
    group_cams = torch.zeros(len(mean_g), dtype=camids.dtype, device=camids.device).index_copy_(0, labels, camids)
    between = search.over(SelectionDistance(mean_g, mean_p, group_cams, lambda_g=distance.lambda_g, lambda_c=0.0))
    del mean_g, mean_p  # the search holds what it needs: G x 2D floats fewer while it ranks
    ranking, _ = between.ranking(s.group_inter_k, cameras="other")
    linked = graph.reciprocal_mask(ranking, s.group_inter_k)[:, 1:]  # (G, k) mutual across cameras
    own = IdentityTable.build(labels)  # each slot's other group members, (N, S)
    members, _ = graph.group_members(labels)  # (G, S) each group's slots (labels are 0..G-1)
    partners = ranking[:, 1:].clamp_min(0)[labels]  # (N, k) the slot's group's linked groups
    from_partners = members[partners].masked_fill(~linked[labels][:, :, None], -1).flatten(1)  # (N, k S)
    cand = torch.cat([own.slots.masked_fill(~own.valid, -1), from_partners], dim=1)
    return first_valid(cand, cand >= 0, s.k)  # own group first, in order


@torch.no_grad()
def group_means(distance: SelectionDistance, labels: Tensor, block: int = 65_536) -> tuple[Tensor, Tensor]:
    """Each group's mean global feature and mean stripes as the distance sees them (debiased),
    renormalised: (G, D), (G, P, d) for ``labels`` (N,) in 0..G-1. The slots are read ``block`` at
    a time, so the debiasing's float32 copies stay one block's."""
    num_groups = int(labels.max()) + 1
    sum_g = sum_p = None
    for start in range(0, len(labels), block):
        g, p, _ = distance.slots(slice(start, start + block))  # (b, D), (b, P, d)
        if sum_g is None:
            sum_g = torch.zeros(num_groups, *g.shape[1:], device=g.device)
            sum_p = torch.zeros(num_groups, *p.shape[1:], device=p.device)
        rows = labels[start : start + block]
        sum_g.index_add_(0, rows, g)
        sum_p.index_add_(0, rows, p)
    return F.normalize(sum_g, dim=-1), F.normalize(sum_p, dim=-1)


@torch.no_grad()
def stripe_lists(distance: SelectionDistance, search: SlotSearch, k: int) -> Tensor:
    """Each slot's ``k`` nearest slots by each stripe alone (own slot left out), on the banks at
    the epoch's start, through the same kind of search as the graph's (:meth:`SlotSearch.over`
    with ``stripe``): part of the pool within which the part agreement check ranks the anchor's
    stripes at every step when the bank is too large for the stripes' (B, P, N) distances
    (:func:`~reidlib.methods.scl.checks.pooled_votes`; ``k`` is ``LIST_DEPTH`` times the check's).

    Returns:
        (N, P, k) int32; -1 where a stripe found fewer than k.
    """
    lists = torch.empty(len(distance), distance.num_parts, k, dtype=torch.int32)
    for stripe in range(distance.num_parts):
        ranking, _ = search.over(distance, stripe=stripe).ranking(k)  # (N, 1+k), the slot first
        lists[:, stripe] = ranking[:, 1:].cpu().to(torch.int32)
    return lists.to(distance.device)


def cross_camera_pairs(search: SlotSearch, k: int, quota: int) -> tuple[Tensor, Tensor]:
    """Each slot's mutual neighbours across cameras: slots j of another camera among its ``k``
    nearest there, that hold it among their own ``k`` nearest in other cameras; the nearest
    ``quota`` of them.

    Returns:
        ``(idx, valid)``, each (N, min(quota, k)): nearest first; invalid entries hold the slot itself.
    """
    num_slots = search.num_slots
    ranking, _ = search.ranking(k, cameras="other")  # (N, 1+k)
    mutual = graph.reciprocal_mask(ranking, k)[:, 1:]  # (N, k)
    first = torch.argsort((~mutual).to(torch.int8), dim=1, stable=True)[:, :quota]  # mutual ones, nearest first
    valid = mutual.gather(1, first)
    own = torch.arange(num_slots, device=ranking.device)[:, None]
    return torch.where(valid, ranking[:, 1:].gather(1, first), own), valid
