"""Neighbour search for SCL's selection: each anchor's nearest memory slots, at any bank size.

Shape letters: B anchors, N memory slots, D feature dim, P stripes, d = D / P, C cameras,
E = 2D + C embedding dim, R candidates per anchor.

A searcher answers one question for the epoch's
:class:`~reidlib.neighbours.selection_distance.SelectionDistance`, which the method builds once per
epoch and hands it: which ``count`` slots are nearest to each anchor (its own slot left out)?

**Backends** (config ``search.backend``; :func:`make_searcher` picks one):

- :class:`TorchSearcher`, exact: the distance to every slot, a block of slots at a time, with a
  running top-k (:func:`reidlib.neighbours.exact.nearest`). ``m = None`` ("all negatives") always
  uses it.
- :class:`FaissSearcher`: one index of :mod:`reidlib.neighbours.faiss_index` (``search.faiss_index``:
  flat, exact, on the GPU with faiss-gpu; or IVF, approximate) over the slots' inner-product
  embedding. An exact index returns ``count + 1`` candidates per anchor, IVF
  ``R = ceil(rerank * (count + 1))``; they are re-ranked exactly against the slots as they are
  now (:meth:`SelectionDistance.to_rows`), read from the searcher's own copy of every slot as the
  distance sees it (``FaissSearcher.rows``: debiased, in the banks' dtype, rewritten with the
  index by ``refresh``), one row a candidate and one batched product for every inner product:
  the order within the candidates is exact (up to float16 rounding of a float16 bank's debiased
  slots), and only membership is approximate. An anchor left with fewer than ``count`` candidates (sparse IVF
  cells) falls back to the exact search. :meth:`FaissSearcher.neighbours_with_stripes` also hands
  back the re-ranked candidates' distances stripe by stripe, from the rows the re-ranking
  gathered: the pool of the table rule's stripe check.

**The training step** (banks change after ``backward()``, so the index follows them)::

    distance = SelectionDistance(global_bank, part_bank, camids, lambda_g=..., lambda_c=...)  # each epoch
    searcher = make_searcher(cfg.search, distance, m=cfg.scl.m)
    order = searcher.neighbours(g, p, cams, idx, k + m)        # (B, K+M), under no_grad
    ... loss, backward(), optimiser step, global_bank.update(idx, g), part_bank.update(idx, p) ...
    searcher.refresh(idx)                                      # the slots just written

IVF cells and the PCA basis are fitted once, on the bank as it is when the searcher is built (each
epoch's start); refreshed slots move to their new cell.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor

from reidlib.config import SEARCH_BACKENDS, SearchConfig
from reidlib.errors import ConfigError
from reidlib.neighbours.faiss_index import build_index
from reidlib.neighbours.selection_distance import SelectionDistance

# `search.backend: auto` uses faiss from this many slots on (and the exact torch path below it).
# In benchmarks/bench_selection.py (one thread, B = 64, top 507) IVF with the default settings
# (PCA 256, nprobe 256, rerank 2) kept recall >= 0.95 and beat exact search 3x at 100,000 slots
# and 49x at 1,000,000; at 20,000 it needed nearly exhaustive probing to reach that recall.
AUTO_FAISS_MIN_SLOTS = 100_000


class Searcher(Protocol):
    """What a miner calls; :func:`make_searcher` returns one."""

    def neighbours(self, g: Tensor, p: Tensor, cams: Tensor, self_idx: Tensor, count: int) -> Tensor: ...

    def neighbours_with_stripes(
        self, g: Tensor, p: Tensor, cams: Tensor, self_idx: Tensor, count: int
    ) -> tuple[Tensor, Tensor, Tensor]: ...

    def refresh(self, idx: Tensor) -> None: ...


class TorchSearcher:
    """Exact search: the selection distance to every slot, a block of slots at a time, then top-k."""

    def __init__(self, distance: SelectionDistance) -> None:
        self.distance = distance

    def neighbours(self, g: Tensor, p: Tensor, cams: Tensor, self_idx: Tensor, count: int) -> Tensor:
        """The ``count`` nearest slots per anchor, nearest first, own slot left out.

        Shape:
            g: (B, D), p: (B, P, d), cams: (B,), self_idx: (B,) -> (B, count) int64
        """
        return self.distance.nearest(g, p, cams, self_idx, count)

    @torch.no_grad()
    def neighbours_with_stripes(
        self, g: Tensor, p: Tensor, cams: Tensor, self_idx: Tensor, count: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`neighbours` as :meth:`FaissSearcher.neighbours_with_stripes` gives it: the
        order, which is also the pool, and the pool's stripe distances."""
        order = self.neighbours(g, p, cams, self_idx, count)
        spread = order[:, None, :].expand(-1, p.shape[1], -1)
        return order, order, self.distance.stripe_distances_to(p, cams, spread)

    def refresh(self, idx: Tensor) -> None:
        """Nothing to do: every call reads the banks as they are."""


class FaissSearcher:
    """A faiss index's candidates per anchor, re-ranked exactly against the banks as they are now.

    Args:
        distance: the epoch's selection distance.
        search_cfg: config section ``search`` (``faiss_index``, and IVF's ``faiss_dim``, ``nlist``,
            ``nprobe``, ``rerank``: candidates per anchor ``R = ceil(rerank * (count + 1))``).
        seed: seeds the IVF build (PCA sample, k-means).
        gpu: flat only: search with faiss's GPU build (None: when the banks are on CUDA and it has GPUs).
    """

    def __init__(
        self, distance: SelectionDistance, search_cfg: SearchConfig, *, seed: int = 0, gpu: bool | None = None
    ) -> None:
        self.distance, self.rerank = distance, search_cfg.rerank
        self.exact = TorchSearcher(distance)
        num_slots = len(distance)
        dim = 2 * distance.feat_dim + distance.num_cams
        self.sq_norms = torch.empty(num_slots, 2, device=distance.device)  # (N, 2) global, parts, for re-ranking
        # (N, 2D) every slot as the distance sees it (debiased), in the banks' dtype: re-ranking reads one row
        # a candidate instead of a global and a part row to debias at every step
        self.rows = torch.empty(num_slots, 2 * distance.feat_dim, dtype=distance.dtype, device=distance.device)
        self.fallbacks = 0  # anchors that fell back to the exact search (a diagnostic)
        self.index = build_index(
            search_cfg, self._embed_slots, num_slots, dim, device=distance.device, seed=seed, gpu=gpu
        )

    def _embed_slots(self, rows: Tensor) -> Tensor:
        """Embed slots ``rows`` (n,) from the banks as they are now (and keep their squared norms and
        their rows for re-ranking)."""
        x, norms, feats = self.distance.embed_slots(rows)
        rows = rows.to(self.sq_norms.device)
        self.sq_norms[rows], self.rows[rows] = norms, feats.to(self.rows.dtype)
        return x

    @torch.no_grad()
    def candidates(self, g: Tensor, p: Tensor, cams: Tensor, num: int) -> Tensor:
        """The index's ``num`` nearest slots per anchor, approximately ordered; -1 pads a short row.

        Shape:
            g: (B, D), p: (B, P, d), cams: (B,) -> (B, num) int64 (on the CPU)
        """
        return self.index.search(self.distance.embed(*self.distance.anchors(g, p, cams), cams, query=True), num)

    @torch.no_grad()
    def neighbours(self, g: Tensor, p: Tensor, cams: Tensor, self_idx: Tensor, count: int) -> Tensor:
        """The ``count`` nearest slots per anchor, nearest first, own slot left out.

        Shape:
            g: (B, D), p: (B, P, d), cams: (B,), self_idx: (B,) -> (B, count) int64
        """
        return self._search(g, p, cams, self_idx, count, stripes=False)[0]

    @torch.no_grad()
    def neighbours_with_stripes(
        self, g: Tensor, p: Tensor, cams: Tensor, self_idx: Tensor, count: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`neighbours`, and the slots it re-ranked with their distances stripe by stripe,
        read from the rows the re-ranking gathered (the pool of the part agreement check,
        :func:`~reidlib.methods.scl.checks.pooled_votes`): no second gather of those slots.

        Shape:
            -> order (B, count), pool (B, R) int64, pool's stripe distances (B, P, R) (inf where
            a pool entry is padding or the anchor's own slot)
        """
        return self._search(g, p, cams, self_idx, count, stripes=True)

    def _search(self, g, p, cams, self_idx, count: int, *, stripes: bool) -> tuple:
        device = self.distance.device
        num = math.ceil(self.rerank * (count + 1)) if self.index.approximate else count + 1
        if count == 0 or num >= len(self.distance):
            if stripes:
                return self.exact.neighbours_with_stripes(g, p, cams, self_idx, count)
            return (self.exact.neighbours(g, p, cams, self_idx, count),)
        cand = self.candidates(g, p, cams, num).to(device)  # (B, R)
        g, p, cams, self_idx = g.to(device), p.to(device), cams.to(device), self_idx.to(device)
        drop = (cand < 0) | (cand == self_idx[:, None])  # padding and the anchor's own slot
        cand = torch.where(cand < 0, self_idx[:, None], cand)
        rows = self.distance.gather(self.rows, cand)  # (B, R, 2D) float32
        dist = self.distance.to_rows(g, p, cams, cand, rows, self.sq_norms, stripes=stripes)
        dist, pool_dist = dist if stripes else (dist, None)
        dist = dist.masked_fill_(drop, float("inf"))  # (B, R)
        best, pos = torch.topk(dist, count, dim=1, largest=False, sorted=True)
        order = cand.gather(1, pos)  # (B, count)
        short = ~torch.isfinite(best[:, -1])  # (B,)
        if short.any():  # too few candidates in the probed cells: exact search for those anchors
            self.fallbacks += int(short.sum())
            anchors = (g[short], p[short], cams[short], self_idx[short], count)
            if not stripes:
                order[short] = self.exact.neighbours(*anchors)
            else:  # their pool: the exact neighbours, then nothing
                order[short], _, found_dist = self.exact.neighbours_with_stripes(*anchors)
                cand[short], drop[short] = self_idx[short, None], True
                cand[short, :count], drop[short, :count] = order[short], False
                pool_dist[short] = float("inf")
                pool_dist[short, :, :count] = found_dist
        if not stripes:
            return (order,)
        return order, cand, pool_dist.masked_fill_(drop[:, None, :], float("inf"))

    @torch.no_grad()
    def refresh(self, idx: Tensor) -> None:
        """Re-embed slots ``idx`` (B,) from the banks as they are now and write them into the index."""
        rows = torch.unique(idx.cpu())
        self.index.update(rows, self._embed_slots(rows))


def choose_backend(backend: str, m: int | None, num_slots: int, device: torch.device) -> str:
    """``torch`` or ``faiss`` for config ``search.backend`` (auto: by bank size, see AUTO_FAISS_MIN_SLOTS).

    ``m = None`` ("all negatives") needs every slot sorted, so it is always exact torch. On an
    accelerator ``auto`` keeps the exact path: the bank's matrix product is fast there, and faiss's
    updatable IVF is a CPU index.
    """
    if backend not in SEARCH_BACKENDS:
        raise ConfigError(f"config key 'search.backend' must be one of {', '.join(SEARCH_BACKENDS)}; got {backend!r}")
    if m is None or backend == "torch":
        return "torch"
    if backend == "faiss":
        return "faiss"
    if torch.device(device).type != "cpu" or num_slots < AUTO_FAISS_MIN_SLOTS:
        return "torch"
    return "faiss"


def make_searcher(search_cfg: SearchConfig, distance: SelectionDistance, *, m: int | None, seed: int = 0) -> Searcher:
    """The searcher that config section ``search`` asks for, over the epoch's selection distance.

    Args:
        search_cfg: :class:`reidlib.config.SearchConfig`.
        distance: the epoch's :class:`SelectionDistance` (its banks are read at each call).
        m: ``scl.m``; None ("all negatives") always searches exactly.
        seed: seeds the IVF build (PCA sample, k-means).

    Returns:
        A :class:`TorchSearcher` or a :class:`FaissSearcher`. Call ``.refresh(idx)`` after every
        bank update (a no-op for torch).
    """
    if choose_backend(search_cfg.backend, m, len(distance), distance.device) == "torch":
        return TorchSearcher(distance)
    return FaissSearcher(distance, search_cfg, seed=seed)
