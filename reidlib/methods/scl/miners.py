"""One selector per rule: who is each anchor's positive, who its negative, for one epoch.

Shape letters: B anchors, N memory slots, D feature dim, P stripes, d = D / P, K positives
(candidates) besides the own slot, M negatives.

A selector is built at the start of every epoch from the banks as they are then
(:func:`make_selector`), and called once per step under ``no_grad``::

    sel = selector(g, p, cams, idx)     # Selection(pos_idx (B, 1+K), neg_idx (B, M), pos_mask (B, 1+K))
    ... loss, backward, optimiser step, bank updates ...
    selector.refresh(idx)               # an index follows the slots just written

The rules (config ``scl.positive_rule`` and its modifiers; docs/method.md, "Beyond the paper"):

- :class:`WarmupSelector`: the own slot only, K + M random negatives (the first epochs).
- :class:`NearestSelector`: the paper's rule, the K nearest by the selection distance, the next M
  negatives, through a :mod:`reidlib.neighbours.searchers` searcher (exact, or faiss for large banks).
- :class:`CandidateSelector`: the same K nearest as *candidates*, each kept or dropped by checks:
  ``reciprocal`` (the candidate's own ``reciprocal_k`` nearest at the start of the epoch hold the
  anchor), ``cycle`` (that check, nearest first, up to the first candidate that fails: an adaptive
  K, after MPLP in MMCL, CVPR 2020), ``pos_max_distance`` and ``part_agreement`` (enough stripes
  rank the candidate among their ``part_agreement_k`` nearest, after PPLR, CVPR 2022). Dropped
  candidates are neither positives nor negatives; the negatives are the M slots after the K.
- :class:`JaccardSelector`: positives from the k-reciprocal Jaccard distance of the slots,
  computed once per epoch (``jaccard`` or camera-aware ``ca_jaccard``, :mod:`reidlib.neighbours.graph`): up
  to K nearest below ``jaccard_eps``, then the same ``pos_max_distance`` and ``part_agreement``
  checks; negatives are the M nearest slots by the selection distance that are not positives.

``camera_debias`` and the ``lambda_c`` schedule change the distance every rule ranks by
(:class:`SelectionView`). Every rule but the paper's computes a dense (B, N) distance per step
(the exact path; 64 x 100,000 float32 is 26 MB).
"""

from __future__ import annotations

import torch
from torch import Tensor

from reidlib.neighbours import graph
from reidlib.errors import ConfigError
from reidlib.neighbours.searchers import Searcher, TorchSearcher, bank_features, make_searcher
from reidlib.methods.scl.selection import Selection, nearest_slots, neighbour_count, select_random, selection_from_order


def lambda_c_at(scl_cfg, epoch: int, epochs: int) -> float:
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


class SelectionView:
    """SCL's selection distance over the banks as they are now, optionally camera-debiased.

    Args:
        global_bank: MemoryBank or (N, D) tensor; part_bank: MemoryBank or (N, P, d) tensor.
        camids: (N,) the slots' cameras.
        lambda_g, lambda_c: the distance's weights (lambda_c as scheduled for the epoch).
        debias: ``none`` | ``mean`` | ``mean_std`` (:class:`reidlib.neighbours.graph.CameraDebias`, fitted
            on the banks when the view is built).
    """

    def __init__(self, global_bank, part_bank, camids: Tensor, *, lambda_g: float, lambda_c: float, debias: str = "none"):
        self.global_bank, self.part_bank, self.camids = global_bank, part_bank, camids
        self.lambda_g, self.lambda_c = lambda_g, lambda_c
        self.debias_g = self.debias_p = None
        if debias != "none":
            num_cams = int(camids.max()) + 1
            g, p = bank_features(global_bank), bank_features(part_bank)
            self.debias_g = graph.CameraDebias.fit(g, camids, num_cams, scale=debias == "mean_std")
            self.debias_p = graph.CameraDebias.fit(p, camids, num_cams, scale=debias == "mean_std")

    def __len__(self) -> int:
        return len(self.camids)

    def features(self, g: Tensor, p: Tensor, cams: Tensor) -> tuple[Tensor, Tensor]:
        """Anchors' (or slots') features as the distance sees them: (B, D), (B, P, d)."""
        if self.debias_g is None:
            return g.float(), p.float()
        return self.debias_g(g, cams), self.debias_p(p, cams)

    def banks(self) -> tuple[Tensor, Tensor]:
        """The banks as the distance sees them: (N, D), (N, P, d)."""
        return self.features(bank_features(self.global_bank), bank_features(self.part_bank), self.camids)

    def distances(self, g: Tensor, p: Tensor, cams: Tensor) -> Tensor:
        """(B, D), (B, P, d), (B,) -> (B, N) selection distances to every slot."""
        bank_g, bank_p = self.banks()
        search = TorchSearcher(bank_g, bank_p, self.camids, lambda_g=self.lambda_g, lambda_c=self.lambda_c)
        return search.distances(*self.features(g, p, cams), cams)

    def slot_rows(self) -> graph.DistanceRows:
        """Slot-to-slot distances over the banks as they are now, for the per-epoch rankings:
        (b,) slot indices -> (b, N). The (debiased) banks are read once, not once per block."""
        bank_g, bank_p = self.banks()
        search = TorchSearcher(bank_g, bank_p, self.camids, lambda_g=self.lambda_g, lambda_c=self.lambda_c)
        return lambda rows: search.distances(bank_g[rows], bank_p[rows], self.camids[rows])

    def stripe_distances(self, p: Tensor, cams: Tensor) -> Tensor:
        """(B, P, d), (B,) -> (B, P, N) squared distances stripe by stripe (unit stripes)."""
        bank_p = bank_features(self.part_bank).float()
        anchors = p.float()
        if self.debias_p is not None:
            bank_p, anchors = self.debias_p(bank_p, self.camids), self.debias_p(p, cams)
        return (2.0 - 2.0 * torch.einsum("bpd,npd->bpn", anchors.float(), bank_p)).clamp_min_(0.0)


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


class WarmupSelector:
    """The warm-up rule: the own slot is the only positive, negatives are drawn at random."""

    def __init__(self, num_slots: int, num_neg: int | None, generator: torch.Generator) -> None:
        self.num_slots, self.num_neg, self.generator = num_slots, num_neg, generator

    def __call__(self, g: Tensor, p: Tensor, cams: Tensor, idx: Tensor) -> Selection:
        return select_random(idx, self.num_slots, self.num_neg, generator=self.generator)

    def refresh(self, idx: Tensor) -> None:
        """Nothing to follow."""


class NearestSelector:
    """The paper's rule through a searcher: K nearest positives, the next M negatives."""

    def __init__(self, searcher: Searcher, num_slots: int, k: int, m: int | None) -> None:
        self.searcher, self.k = searcher, k
        self.count = neighbour_count(num_slots, k, m)

    def __call__(self, g: Tensor, p: Tensor, cams: Tensor, idx: Tensor) -> Selection:
        order = self.searcher.neighbours(g, p, cams, idx, self.count)  # (B, K+M), nearest first
        return selection_from_order(order, idx, self.k)

    def refresh(self, idx: Tensor) -> None:
        self.searcher.refresh(idx)


class CandidateSelector:
    """The K nearest as candidates, kept by the checks named in the module docstring.

    Args:
        view: the selection distance.
        k, m: candidates and negatives.
        ranking: (N, 1 + reciprocal_k) each slot's nearest at the start of the epoch (self
            first) for the reciprocal check; None skips it.
        prefix: keep candidates nearest first only up to the first that fails (``cycle``).
        max_distance: drop candidates farther than this; None keeps all.
        part_agreement, part_k: drop candidates fewer than ``part_agreement`` stripes rank among
            their ``part_k`` nearest; 0 skips the check.
    """

    def __init__(
        self, view: SelectionView, k: int, m: int | None, *, ranking: Tensor | None = None, prefix: bool = False,
        max_distance: float | None = None, part_agreement: int = 0, part_k: int = 20,
    ) -> None:
        self.view, self.k, self.ranking, self.prefix = view, k, ranking, prefix
        self.max_distance, self.part_agreement, self.part_k = max_distance, part_agreement, part_k
        self.count = neighbour_count(len(view), k, m)

    def __call__(self, g: Tensor, p: Tensor, cams: Tensor, idx: Tensor) -> Selection:
        dist = self.view.distances(g, p, cams)  # (B, N)
        order = nearest_slots(dist, idx, self.count)  # (B, K+M)
        cand = order[:, : self.k]  # (B, K)
        keep = torch.ones_like(cand, dtype=torch.bool)
        if self.ranking is not None:  # the candidate's own list holds the anchor
            keep &= (self.ranking[cand] == idx[:, None, None]).any(-1)
        if self.max_distance is not None:
            keep &= dist.gather(1, cand) <= self.max_distance
        if self.part_agreement:
            votes = part_votes(self.view.stripe_distances(p, cams), idx, cand, self.part_k)
            keep &= votes >= self.part_agreement
        if self.prefix:  # nearest first, up to the first failure
            keep = keep.cumprod(dim=1).bool()
        sel = selection_from_order(order, idx, self.k)
        pos_mask = torch.cat([torch.ones_like(idx[:, None], dtype=torch.bool), keep], dim=1)
        return sel._replace(pos_mask=pos_mask)

    def refresh(self, idx: Tensor) -> None:
        """Nothing to follow: every call reads the banks as they are."""


class JaccardSelector:
    """Positives from a per-epoch table of each slot's nearest by Jaccard distance.

    Args:
        view: the selection distance (negatives, the checks, and the rankings the table is built from).
        positives: ``(idx, valid)`` (N, K) from :func:`reidlib.neighbours.graph.nearest_by_jaccard`.
        m: negatives per anchor.
        max_distance, part_agreement, part_k: the same checks as :class:`CandidateSelector`'s, on
            the table's positives (a positive that fails one is dropped, not made a negative).
    """

    def __init__(
        self, view: SelectionView, positives: tuple[Tensor, Tensor], m: int, *,
        max_distance: float | None = None, part_agreement: int = 0, part_k: int = 20,
    ) -> None:
        self.view, (self.table, self.valid), self.m = view, positives, m
        self.max_distance, self.part_agreement, self.part_k = max_distance, part_agreement, part_k
        neighbour_count(len(view), self.table.shape[1], m)

    def __call__(self, g: Tensor, p: Tensor, cams: Tensor, idx: Tensor) -> Selection:
        pos, keep = self.table[idx], self.valid[idx]  # (B, K)
        dist = self.view.distances(g, p, cams)  # (B, N)
        if self.max_distance is not None:
            keep = keep & (dist.gather(1, pos) <= self.max_distance)
        if self.part_agreement:
            keep = keep & (part_votes(self.view.stripe_distances(p, cams), idx, pos, self.part_k) >= self.part_agreement)
        neg = nearest_slots(dist.scatter(1, pos, float("inf")), idx, self.m)  # (B, M); positives never negatives
        pos_mask = torch.cat([torch.ones_like(idx[:, None], dtype=torch.bool), keep], dim=1)
        return Selection(torch.cat([idx[:, None], pos], dim=1), neg, pos_mask)

    def refresh(self, idx: Tensor) -> None:
        """Nothing to follow: the table is fixed for the epoch, the distance reads the banks."""


def jaccard_positives(view: SelectionView, scl_cfg) -> tuple[Tensor, Tensor]:
    """The per-epoch table of :class:`JaccardSelector` for ``scl.positive_rule`` jaccard / ca_jaccard."""
    s, num_slots = scl_cfg, len(view)
    slot_rows = view.slot_rows()
    ranking, _ = graph.slot_ranking(slot_rows, num_slots, max(s.jaccard_k1, s.jaccard_k2))
    if s.positive_rule == "jaccard":
        sets = graph.reciprocal_sets(ranking, s.jaccard_k1)
    else:
        intra, _ = graph.slot_ranking(slot_rows, num_slots, s.ca_k_intra, camids=view.camids, cameras="same")
        inter, _ = graph.slot_ranking(slot_rows, num_slots, s.ca_k_inter, camids=view.camids, cameras="other")
        sets = graph.camera_aware_sets(intra, inter, s.ca_k_intra, s.ca_k_inter)
    pairs = graph.jaccard_distance(sets, graph.set_distances(slot_rows, sets[0]), ranking, s.jaccard_k2)
    return graph.nearest_by_jaccard(pairs, num_slots, s.k, s.jaccard_eps)


def make_selector(
    scl_cfg, search_cfg, epoch: int, epochs: int, global_bank, part_bank, camids: Tensor, generator: torch.Generator,
    *, seed: int = 0,
):
    """The selector of ``epoch`` for config sections ``scl`` and ``search`` over the banks as they are now.

    Args:
        scl_cfg: :class:`reidlib.config.SCLConfig`.
        search_cfg: :class:`reidlib.config.SearchConfig` (the paper's rule searches through it).
        epoch, epochs: the epoch under way (0-based) and the run's length (the lambda_c schedule).
        global_bank, part_bank: MemoryBanks (read at every call).
        camids: (N,) the slots' cameras.
        generator: the warm-up rule's random draws.
        seed: seeds a faiss index build.
    """
    s = scl_cfg
    num_slots = len(camids)
    if epoch < s.warmup_epochs:
        return WarmupSelector(num_slots, None if s.m is None else s.k + s.m, generator)
    lambda_c = lambda_c_at(s, epoch, epochs)
    plain = s.positive_rule == "knn" and s.camera_debias == "none" and not s.part_agreement and s.pos_max_distance is None
    if plain:
        searcher = make_searcher(
            search_cfg, global_bank, part_bank, camids, lambda_g=s.lambda_g, lambda_c=lambda_c, m=s.m, seed=seed
        )
        return NearestSelector(searcher, num_slots, s.k, s.m)
    if s.m is None:
        raise ConfigError(f"scl.m = null (all negatives) goes with the paper's rule only, not scl.positive_rule={s.positive_rule!r} and its checks")
    view = SelectionView(global_bank, part_bank, camids, lambda_g=s.lambda_g, lambda_c=lambda_c, debias=s.camera_debias)
    if s.positive_rule in ("jaccard", "ca_jaccard"):
        return JaccardSelector(
            view, jaccard_positives(view, s), s.m, max_distance=s.pos_max_distance,
            part_agreement=s.part_agreement, part_k=s.part_agreement_k,
        )
    ranking = None
    if s.positive_rule in ("reciprocal", "cycle"):
        ranking, _ = graph.slot_ranking(view.slot_rows(), num_slots, s.reciprocal_k)
    return CandidateSelector(
        view, s.k, s.m, ranking=ranking, prefix=s.positive_rule == "cycle", max_distance=s.pos_max_distance,
        part_agreement=s.part_agreement, part_k=s.part_agreement_k,
    )
