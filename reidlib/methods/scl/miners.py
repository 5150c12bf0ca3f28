"""SCL's miners: who is each anchor's positive, who its negative, for one epoch.

Shape letters: B anchors, N memory slots, D feature dim, P stripes, d = D / P, K positives
(candidates) besides the own slot, M negatives.

A miner is built at the start of every epoch (:meth:`reidlib.methods.scl.SCL.start_epoch`) over the
epoch's :class:`~reidlib.neighbours.selection_distance.SelectionDistance`, and called once per step
under ``no_grad``; it returns indices, never a loss (the pytorch-metric-learning miner / loss
split)::

    sel = miner(g, p, cams, idx)     # Selection(pos_idx (B, 1+K), neg_idx (B, M), pos_mask (B, 1+K))
    ... loss, backward, optimiser step, bank updates ...
    miner.refresh(idx)               # an index follows the slots just written

The rules (config ``scl.positive_rule`` and its modifiers; docs/method.md, "Beyond the paper"):

- :class:`WarmupMiner`: the own slot only, K + M random negatives (the first epochs).
- :class:`NearestMiner`: the paper's rule, the K nearest by the selection distance, the next M
  negatives, through a searcher (:mod:`reidlib.neighbours.searchers`: exact, or faiss for large
  banks).
- :class:`CandidateMiner`: the same K nearest as *candidates*, each kept or dropped by checks:
  ``reciprocal`` (the candidate's own ``reciprocal_k`` nearest at the start of the epoch hold the
  anchor), ``cycle`` (that check, nearest first, up to the first candidate that fails: an adaptive
  K, after MPLP in MMCL, CVPR 2020), ``pos_max_distance`` and ``part_agreement`` (enough stripes
  rank the candidate among their ``part_agreement_k`` nearest, after PPLR, CVPR 2022). Dropped
  candidates are neither positives nor negatives; the negatives are the M slots after the K.
- :class:`TableMiner`: positives from the k-reciprocal Jaccard distance of the slots,
  computed once per epoch (``jaccard`` or camera-aware ``ca_jaccard``, :mod:`reidlib.neighbours.graph`):
  up to K nearest below ``jaccard_eps``, then the same ``pos_max_distance`` and ``part_agreement``
  checks; with ``cross_camera_positives``, also mutual neighbours across cameras, by their own
  rule (:mod:`reidlib.methods.scl.tables`); negatives are the M nearest slots by the selection distance
  that are not positives.
- ``negative_band`` (every rule): the nearest non-positives left out of the negatives, neither
  pulled nor pushed: where the true matches that no rule admitted sit (``Selection.ignored``).
- :class:`OracleMiner` (``scl.oracle``): the supervised ceiling and its halves, a diagnostic that
  lets the training identities choose; never a recipe.

``camera_debias`` and the ``lambda_c`` schedule (:func:`lambda_c_at`) are the distance's, not a
miner's. Every rule but the paper's ranks a dense (B, N) distance per step (64 x 100,000 float32
is 26 MB), except :class:`TableMiner` when the search section asks for faiss (``search.backend``
faiss, or auto from ``AUTO_FAISS_MIN_SLOTS`` slots on, as for the paper's rule): then its
negatives come from the index's candidates, and its part agreement check ranks the anchor's
stripes within a pool (the slot's per-epoch stripe lists, the slots the search re-ranked, with
their stripe distances from the re-ranking's rows, the candidates:
:func:`~reidlib.methods.scl.checks.pooled_votes`), with no (B, N) or (B, P, N) tensor a step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reidlib.config import SCLConfig, SearchConfig
from reidlib.errors import ConfigError
from reidlib.methods.scl.checks import LIST_DEPTH, PositiveChecks
from reidlib.methods.scl.diagnostics import IdentityTable
from reidlib.methods.scl.selection import Selection, member, neighbour_count, select_random, selection_from_order
from reidlib.methods.scl.tables import cross_camera_pairs, positive_table, stripe_lists
from reidlib.neighbours.exact import nearest_slots
from reidlib.neighbours.searchers import FaissSearcher, Searcher, choose_backend, make_searcher
from reidlib.neighbours.selection_distance import SelectionDistance
from reidlib.neighbours.slot_search import make_slot_search


def lambda_c_at(scl_cfg: SCLConfig, epoch: int, epochs: int) -> float:
    """The camera penalty of ``epoch``: ``lambda_c``, or with ``lambda_c_start`` a linear ramp
    from it at the first selecting epoch (after warm-up) to ``lambda_c`` at the last one."""
    s = scl_cfg
    if s.lambda_c_start is None:
        return s.lambda_c
    first, last = s.warmup_epochs, max(epochs - 1, s.warmup_epochs)
    if last == first:
        return s.lambda_c
    t = min(max((epoch - first) / (last - first), 0.0), 1.0)
    return s.lambda_c_start + t * (s.lambda_c - s.lambda_c_start)


class WarmupMiner:
    """The warm-up rule: the own slot is the only positive, negatives are drawn at random."""

    def __init__(self, num_slots: int, num_neg: int | None, generator: torch.Generator) -> None:
        self.num_slots, self.num_neg, self.generator = num_slots, num_neg, generator

    def __call__(self, g: Tensor, p: Tensor, cams: Tensor, idx: Tensor) -> Selection:
        return select_random(idx, self.num_slots, self.num_neg, generator=self.generator)

    def refresh(self, idx: Tensor) -> None:
        """Nothing to follow."""


class NearestMiner:
    """The paper's rule through a searcher: K nearest positives, the next M negatives (after a band
    of ``band`` slots left alone, ``scl.negative_band``)."""

    def __init__(self, searcher: Searcher, num_slots: int, k: int, m: int | None, band: int = 0) -> None:
        self.searcher, self.k, self.band = searcher, k, band
        self.count = neighbour_count(num_slots, k, m, band)

    def __call__(self, g: Tensor, p: Tensor, cams: Tensor, idx: Tensor) -> Selection:
        order = self.searcher.neighbours(g, p, cams, idx, self.count)  # (B, K+band+M), nearest first
        return selection_from_order(order, idx, self.k, self.band)

    def refresh(self, idx: Tensor) -> None:
        self.searcher.refresh(idx)


class CandidateMiner:
    """The K nearest as candidates, kept by the checks named in the module docstring.

    Args:
        distance: the epoch's selection distance.
        k, m: candidates and negatives.
        checks: the distance and stripe checks (:class:`PositiveChecks`).
        ranking: (N, 1 + reciprocal_k) each slot's nearest at the start of the epoch (self
            first) for the reciprocal check; None skips it.
        prefix: keep candidates nearest first only up to the first that fails (``cycle``).
    """

    def __init__(
        self,
        distance: SelectionDistance,
        k: int,
        m: int | None,
        checks: PositiveChecks,
        *,
        ranking: Tensor | None = None,
        prefix: bool = False,
        band: int = 0,
    ) -> None:
        self.distance, self.k, self.checks, self.ranking, self.prefix = distance, k, checks, ranking, prefix
        self.band = band
        self.count = neighbour_count(len(distance), k, m, band)

    def __call__(self, g: Tensor, p: Tensor, cams: Tensor, idx: Tensor) -> Selection:
        dist = self.distance.to_slots(g, p, cams)  # (B, N)
        order = nearest_slots(dist, idx, self.count)  # (B, K+band+M)
        cand = order[:, : self.k]  # (B, K)
        keep = torch.ones_like(cand, dtype=torch.bool)
        if self.ranking is not None:  # the candidate's own list holds the anchor
            keep &= (self.ranking[cand] == idx[:, None, None]).any(-1)
        keep = self.checks(dist.gather(1, cand), p, cams, idx, cand, keep)
        if self.prefix:  # nearest first, up to the first failure
            keep = keep.cumprod(dim=1).bool()
        sel = selection_from_order(order, idx, self.k, self.band)
        pos_mask = torch.cat([torch.ones_like(idx[:, None], dtype=torch.bool), keep], dim=1)
        return sel._replace(pos_mask=pos_mask)

    def refresh(self, idx: Tensor) -> None:
        """Nothing to follow: every call reads the banks as they are."""


class TableMiner:
    """Positives from per-epoch tables: each slot's nearest by Jaccard distance
    (:func:`~reidlib.methods.scl.tables.jaccard_positives`) or its camera groups
    (:func:`~reidlib.methods.scl.tables.camera_group_positives`), and,
    optionally, its mutual neighbours across cameras.

    The negatives, the nearest slots that are neither the anchor nor its positives, come from a
    dense (B, N) distance, or with a ``searcher`` (a faiss index: ``search.backend`` faiss, or auto
    on a large bank) from its ``band + M + width`` nearest, the positives among them taken out
    (at most ``width`` are): no (B, N) row at all, and the negatives are as good as the index's
    recall (hard negatives need no perfect one; ``benchmarks/bench_step.py --search`` measures it).

    Args:
        distance: the epoch's selection distance (negatives, and the checks).
        positives: ``(idx, valid)`` (N, K), each slot's positives for the epoch.
        m: negatives per anchor.
        checks: the same checks as :class:`CandidateMiner`'s, on the Jaccard positives.
        cross: ``(idx, valid)`` (N, Q) from :func:`~reidlib.methods.scl.tables.cross_camera_pairs`,
            admitted by their own rule (no stripe check; one already a kept Jaccard positive is not
            counted twice); None: none.
        band: the nearest non-positives left alone before the M negatives.
        searcher: the epoch's searcher over ``distance``; None: the exact dense row.
    """

    def __init__(
        self,
        distance: SelectionDistance,
        positives: tuple[Tensor, Tensor],
        m: int,
        checks: PositiveChecks,
        cross: tuple[Tensor, Tensor] | None = None,
        band: int = 0,
        searcher: Searcher | None = None,
    ) -> None:
        self.distance, (self.table, self.valid), self.m, self.checks = distance, positives, m, checks
        self.cross, self.band, self.searcher = cross, band, searcher
        self.width = self.table.shape[1] + (0 if cross is None else cross[0].shape[1])  # K + Q
        neighbour_count(len(distance), self.width, m, band)

    def __call__(self, g: Tensor, p: Tensor, cams: Tensor, idx: Tensor) -> Selection:
        pos, keep = self.table[idx], self.valid[idx]  # (B, K)
        if self.searcher is None:
            dist = self.distance.to_slots(g, p, cams)  # (B, N)
            pos_dist, pool, pool_dist = dist.gather(1, pos), None, None
        else:
            pos_dist = self.distance.to_candidates(g, p, cams, pos)  # (B, K)
            count = self.band + self.m + self.width
            if self.checks.pooled:
                order, pool, pool_dist = self.searcher.neighbours_with_stripes(g, p, cams, idx, count)
            else:
                order, pool, pool_dist = self.searcher.neighbours(g, p, cams, idx, count), None, None
        keep = self.checks(pos_dist, p, cams, idx, pos, keep, pool=pool, pool_dist=pool_dist)
        if self.cross is not None:
            cross, cross_keep = self.cross[0][idx], self.cross[1][idx]  # (B, Q)
            twice = member(cross, pos, keep)  # (B, Q) already a kept positive
            pos, keep = torch.cat([pos, cross], dim=1), torch.cat([keep, cross_keep & ~twice], dim=1)
        # positives, kept or dropped, are never negatives; the band is the nearest of the rest
        if self.searcher is None:
            near = nearest_slots(dist.scatter(1, pos, float("inf")), idx, self.band + self.m)  # (B, band+M)
        else:
            listed = member(order, pos)  # (B, band+M+K+Q) a positive
            rest = torch.argsort(listed.to(torch.int8), dim=1, stable=True)[:, : self.band + self.m]
            near = order.gather(1, rest)  # (B, band+M) the non-positives, nearest first
        pos_mask = torch.cat([torch.ones_like(idx[:, None], dtype=torch.bool), keep], dim=1)
        ignored = near[:, : self.band] if self.band else None
        return Selection(torch.cat([idx[:, None], pos], dim=1), near[:, self.band :], pos_mask, ignored)

    def refresh(self, idx: Tensor) -> None:
        """The searcher's index follows the slots just written (the tables are fixed for the epoch;
        the dense distance reads the banks as they are)."""
        if self.searcher is not None:
            self.searcher.refresh(idx)


class OracleMiner:
    """The supervised ceiling and its two halves (``scl.oracle``): the training identities choose,
    as no unsupervised rule can. A diagnostic of how much selection could give with this backbone,
    loss and budget, labelled as such everywhere; never a recipe.

    - ``ceiling``: every true match a positive; the M nearest slots that are not true matches the
      negatives (no true match is ever pushed away);
    - ``positives``: every true match a positive; the rule's own negatives (a true match that the
      rule made a negative stays one, and is also a positive);
    - ``negatives``: the rule's positives; its negatives with every true match taken out (the next
      nearest take their place).

    Args:
        base: the rule's miner (unused by ``ceiling``).
        distance: the epoch's selection distance (the negatives of ``ceiling`` and ``negatives``).
        identities: each slot's true matches (:class:`~reidlib.methods.scl.diagnostics.IdentityTable`).
        m: negatives per anchor.
        mode: ``ceiling``, ``positives`` or ``negatives``.
    """

    def __init__(self, base, distance: SelectionDistance, identities: IdentityTable, m: int, mode: str) -> None:
        self.base, self.distance, self.identities, self.m, self.mode = base, distance, identities, m, mode
        neighbour_count(len(distance), identities.slots.shape[1], m)

    def __call__(self, g: Tensor, p: Tensor, cams: Tensor, idx: Tensor) -> Selection:
        rule = None if self.mode == "ceiling" else self.base(g, p, cams, idx)
        matches, valid = self.identities.slots[idx], self.identities.valid[idx]  # (B, S)
        matches = torch.where(valid, matches, idx[:, None])  # padding points at the own slot
        own = torch.ones_like(idx[:, None], dtype=torch.bool)
        if rule is None or self.mode == "positives":
            pos, pos_mask = torch.cat([idx[:, None], matches], dim=1), torch.cat([own, valid], dim=1)
        else:
            pos, pos_mask = rule.pos_idx, rule.mask()
        if self.mode == "positives":
            return Selection(pos, rule.neg_idx, pos_mask, rule.ignored)
        blocked = self.distance.to_slots(g, p, cams).scatter(1, pos, float("inf")).scatter(1, matches, float("inf"))
        if rule is not None and rule.ignored is not None:
            blocked = blocked.scatter(1, rule.ignored, float("inf"))
        neg = nearest_slots(blocked, idx, self.m)  # (B, M), never a true match
        return Selection(pos, neg, pos_mask, None if rule is None else rule.ignored)

    def refresh(self, idx: Tensor) -> None:
        if self.base is not None:
            self.base.refresh(idx)


def searches(scl_cfg: SCLConfig) -> bool:
    """Whether the rule is the paper's plain kNN, which asks a searcher (exact or faiss) for each
    step's K + band + M nearest; the other rules rank a dense distance and need none."""
    s = scl_cfg
    return (
        s.positive_rule == "knn" and s.camera_debias == "none" and not s.part_agreement and s.pos_max_distance is None
    )


def make_miner(
    scl_cfg: SCLConfig,
    search_cfg: SearchConfig,
    distance: SelectionDistance,
    *,
    identities: IdentityTable | None = None,
    seed: int = 0,
):
    """The miner of a selecting epoch (after warm-up) for config sections ``scl`` and ``search``.

    Args:
        scl_cfg: :class:`reidlib.config.SCLConfig`.
        search_cfg: :class:`reidlib.config.SearchConfig` (the paper's rule searches through it).
        distance: the epoch's selection distance, built by the method.
        identities: the training identities' table, which ``scl.oracle`` (and nothing else) reads.
        seed: seeds a faiss index build.
    """
    s = scl_cfg
    rule = _rule_miner(s, search_cfg, distance, seed)
    if s.oracle == "none":
        return rule
    if identities is None:
        raise ConfigError(f"scl.oracle={s.oracle!r} (a supervised ceiling) needs the training identities")
    return OracleMiner(rule, distance, identities, s.m, s.oracle)


def _rule_miner(s: SCLConfig, search_cfg: SearchConfig, distance: SelectionDistance, seed: int):
    """The miner of ``scl.positive_rule`` and its modifiers."""
    if searches(s):
        searcher = make_searcher(search_cfg, distance, m=s.m, seed=seed)
        return NearestMiner(searcher, len(distance), s.k, s.m, s.negative_band)
    if s.m is None:
        raise ConfigError(
            f"scl.m = null (all negatives) goes with the paper's rule only, not scl.positive_rule={s.positive_rule!r} "
            "and its checks"
        )
    checks = PositiveChecks(distance, s.pos_max_distance, s.part_agreement, s.part_agreement_k)
    if s.positive_rule in ("jaccard", "ca_jaccard", "camera_groups"):
        search = make_slot_search(search_cfg, distance, seed=seed)
        cross = None
        if s.cross_camera_positives:
            cross = cross_camera_pairs(search, s.cross_camera_k, s.cross_camera_positives)
        table = positive_table(distance, search, s)
        searcher = None
        if choose_backend(search_cfg.backend, s.m, len(distance), distance.device) == "faiss":
            # a bank too large for (B, N) rows a step: negatives through the index, stripes in a pool
            searcher = FaissSearcher(distance, search_cfg, seed=seed)
            if s.part_agreement:
                checks.stripe_lists = stripe_lists(distance, search, LIST_DEPTH * s.part_agreement_k)
        return TableMiner(distance, table, s.m, checks, cross, s.negative_band, searcher)
    ranking = None
    if s.positive_rule in ("reciprocal", "cycle"):
        ranking, _ = make_slot_search(search_cfg, distance, seed=seed).ranking(s.reciprocal_k)
    return CandidateMiner(
        distance, s.k, s.m, checks, ranking=ranking, prefix=s.positive_rule == "cycle", band=s.negative_band
    )
