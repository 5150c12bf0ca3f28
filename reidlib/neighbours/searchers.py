"""Neighbour search for SCL's selection: each anchor's nearest memory slots, at any bank size.

Shape letters: B anchors, N memory slots, D feature dim, P stripes, d = D / P, C cameras,
E = 2D + C embedding dim, R candidates per anchor.

**Backends** (config ``search.backend``; :func:`make_searcher` picks one):

- :class:`TorchSearcher`, exact: :func:`reidlib.distances.combined_distance` over chunks of slots
  and ``topk``. A float16 bank is converted one chunk at a time, so a 1M-slot float16 bank never
  needs a full float32 copy. ``m = None`` ("all negatives") always uses it.
- :class:`FaissSearcher`: one index of :mod:`reidlib.neighbours.faiss_index` (``search.faiss_index``: flat,
  exact, on the GPU with faiss-gpu; or IVF, approximate) over the slots' inner-product embedding
  (that module's docstring derives it). An exact index returns ``count + 1`` candidates per
  anchor, IVF ``R = ceil(rerank * (count + 1))``; they are re-ranked exactly against the current
  banks with :func:`reidlib.distances.candidate_distance`: the order within the candidates is
  exact, and only membership is approximate. An anchor left with fewer than ``count``
  candidates (sparse IVF cells) falls back to the exact search.

**The training step** (banks change after ``backward()``, so the index follows them)::

    s = cfg.scl
    searcher = make_searcher(cfg.search, global_bank, part_bank, train_camids,
                             lambda_g=s.lambda_g, lambda_c=s.lambda_c, m=s.m)   # after filling the banks
    order = searcher.neighbours(g, p, cams, idx, k + m)                       # (B, K+M), under no_grad
    sel = selection_from_order(order, idx, k)
    ... loss, backward(), optimiser step, global_bank.update(idx, g), part_bank.update(idx, p) ...
    searcher.refresh(idx)                                                     # the slots just written

Call ``refresh`` after every bank update, warm-up steps included (or build the searcher when
warm-up ends), and build it again after a checkpoint's banks are loaded. IVF cells and the PCA
basis are fitted once, on the bank as it is then; refreshed slots move to their new cell. If
features drift far over training, build a new searcher (e.g. at the start of each epoch) to
refit them.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor

from reidlib.config import SEARCH_BACKENDS
from reidlib.distances import candidate_distance, combined_distance
from reidlib.errors import ConfigError
from reidlib.neighbours.faiss_index import SLOT_CHUNK, build_index, embed
from reidlib.methods.scl.selection import nearest_slots

# `search.backend: auto` uses faiss from this many slots on (and the exact torch path below it).
# In benchmarks/bench_selection.py (one thread, B = 64, top 507) IVF with the default settings
# (PCA 256, nprobe 256, rerank 2) kept recall >= 0.95 and beat exact search 3x at 100,000 slots
# and 49x at 1,000,000; at 20,000 it needed nearly exhaustive probing to reach that recall.
AUTO_FAISS_MIN_SLOTS = 100_000


class Searcher(Protocol):
    """What the training step calls; :func:`make_searcher` returns one."""

    def neighbours(self, g: Tensor, p: Tensor, cams: Tensor, self_idx: Tensor, count: int) -> Tensor:
        ...

    def refresh(self, idx: Tensor) -> None:
        ...


def bank_features(bank) -> Tensor:
    """A MemoryBank's buffer (read at each call, so in-place updates are seen) or a tensor."""
    return getattr(bank, "features", bank)


def _scratch(buffers: dict[str, Tensor], name: str, shape, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A reused scratch tensor of ``shape`` from ``buffers`` (grown when too small).

    Fresh 100 MB allocations page-fault on every call, which costs more than the work done in them.
    """
    size = math.prod(shape)
    buf = buffers.get(name)
    if buf is None or buf.numel() < size or buf.dtype != dtype or buf.device != device:
        buf = buffers[name] = torch.empty(size, dtype=dtype, device=device)
    return buf[:size].view(shape)


class TorchSearcher:
    """Exact search: the combined distance to every slot, a block of slots at a time, then topk.

    Args:
        global_bank: (N, D) bank or MemoryBank; part_bank: (N, P, d) bank or MemoryBank.
        camids: (N,) the slots' cameras.
        lambda_g, lambda_c: the selection distance's weights.
        chunk: slots per block (a float16 bank is converted to float32 one block at a time).
    """

    def __init__(self, global_bank, part_bank, camids: Tensor, *, lambda_g: float, lambda_c: float, chunk: int = SLOT_CHUNK):
        self.global_bank, self.part_bank, self.camids = global_bank, part_bank, camids
        self.lambda_g, self.lambda_c, self.chunk = lambda_g, lambda_c, chunk
        self._buffers: dict[str, Tensor] = {}

    def _as_float(self, name: str, block: Tensor) -> Tensor:
        """A float32 view of a bank block: the block itself, or a float16 block copied into a
        reused buffer (a fresh 128 MB tensor per block page-faults, which costs more than the copy)."""
        if block.dtype == torch.float32:
            return block
        return _scratch(self._buffers, name, block.shape, torch.float32, block.device).copy_(block)

    @torch.no_grad()
    def distances(self, g: Tensor, p: Tensor, cams: Tensor) -> Tensor:
        """(B, D), (B, P, d), (B,) -> (B, N) selection distances (float32)."""
        bank_g, bank_p = bank_features(self.global_bank), bank_features(self.part_bank)
        num_slots = bank_g.shape[0]
        out = torch.empty(g.shape[0], num_slots, dtype=torch.float32, device=g.device)  # (B, N)
        for start in range(0, num_slots, self.chunk):  # blocks of slots, not samples
            stop = min(start + self.chunk, num_slots)
            out[:, start:stop] = combined_distance(
                g.float(),
                p.float(),
                self._as_float("global", bank_g[start:stop]),  # (chunk, D)
                self._as_float("parts", bank_p[start:stop]),  # (chunk, P, d)
                lambda_g=self.lambda_g,
                squared=True,
                # float32 slots are unit vectors to rounding; float16 ones are off by ~1e-3,
                # so their norms are computed, as the faiss path's re-ranking does
                unit_norm=bank_g.dtype == torch.float32,
                lambda_c=self.lambda_c,
                q_camids=cams,
                g_camids=self.camids[start:stop],
            )
        return out

    @torch.no_grad()
    def neighbours(self, g: Tensor, p: Tensor, cams: Tensor, self_idx: Tensor, count: int) -> Tensor:
        """The ``count`` nearest slots per anchor, nearest first, own slot left out.

        Shape:
            g: (B, D), p: (B, P, d), cams: (B,), self_idx: (B,) -> (B, count) int64
        """
        return nearest_slots(self.distances(g, p, cams), self_idx, count)

    def refresh(self, idx: Tensor) -> None:
        """Nothing to do: every call reads the banks as they are."""


class FaissSearcher:
    """A faiss index's candidates per anchor, re-ranked exactly against the banks as they are now.

    Args:
        global_bank: (N, D) bank or MemoryBank; part_bank: (N, P, d) bank or MemoryBank.
        camids: (N,) the slots' cameras.
        lambda_g, lambda_c: the selection distance's weights.
        index: ``flat`` (exact) or ``ivf`` (config ``search.faiss_index``).
        faiss_dim, nlist, nprobe, seed, gpu: how the index is built
            (:func:`reidlib.neighbours.faiss_index.build_index`).
        rerank: candidates per anchor ``R = ceil(rerank * (count + 1))`` (IVF; flat takes count + 1).
    """

    def __init__(
        self,
        global_bank,
        part_bank,
        camids: Tensor,
        *,
        lambda_g: float,
        lambda_c: float,
        index: str = "ivf",
        faiss_dim: int = 0,
        nlist: int = 0,
        nprobe: int = 256,
        rerank: float = 2.0,
        seed: int = 0,
        gpu: bool | None = None,
    ):
        self.global_bank, self.part_bank, self.camids = global_bank, part_bank, camids
        self.lambda_g, self.lambda_c, self.rerank = lambda_g, lambda_c, rerank
        self.num_cams = int(camids.max()) + 1
        self.exact = TorchSearcher(global_bank, part_bank, camids, lambda_g=lambda_g, lambda_c=lambda_c)
        self._buffers: dict[str, Tensor] = {}
        bank_g = bank_features(global_bank)
        num_slots, dim = bank_g.shape[0], 2 * bank_g.shape[1] + self.num_cams
        self.sq_norms = torch.empty(num_slots, 2, device=bank_g.device)  # (N, 2) global, parts, for re-ranking
        self.fallbacks = 0  # anchors that fell back to the exact search (a diagnostic)
        self.index = build_index(index, self._embed_slots, num_slots, dim, device=bank_g.device,
                                 faiss_dim=faiss_dim, nlist=nlist, nprobe=nprobe, seed=seed, gpu=gpu)

    def _embed_slots(self, rows: Tensor) -> Tensor:
        """Embed slots ``rows`` from the banks as they are now (and cache their squared norms).

        Shape:
            rows: (n,) -> (n, E) float32 on the banks' device
        """
        bank_g, bank_p = bank_features(self.global_bank), bank_features(self.part_bank)
        rows = rows.to(bank_g.device)
        g, p = bank_g[rows].float(), bank_p[rows].float()  # (n, D), (n, P, d)
        self.sq_norms[rows] = torch.stack([g.pow(2).sum(1), p.pow(2).sum((1, 2))], dim=1)
        return embed(g, p, self.camids[rows], lambda_g=self.lambda_g, lambda_c=self.lambda_c,
                     num_cams=self.num_cams, query=False)  # (n, E)

    def _buffer(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        return _scratch(self._buffers, name, shape, dtype, device)

    def _gather(self, name: str, bank: Tensor, cand: Tensor) -> Tensor:
        """Rows ``cand`` (B, R) of a (N, D) bank as a (B, R, D) float32 tensor."""
        shape = (cand.numel(), bank.shape[1])
        flat = cand.reshape(-1)
        if bank.dtype == torch.float32:
            out = torch.index_select(bank, 0, flat, out=self._buffer(name, shape, torch.float32, bank.device))
        else:
            staged = torch.index_select(bank, 0, flat, out=self._buffer("staging", shape, bank.dtype, bank.device))
            out = self._buffer(name, shape, torch.float32, bank.device).copy_(staged)
        return out.view(*cand.shape, -1)

    @torch.no_grad()
    def candidates(self, g: Tensor, p: Tensor, cams: Tensor, num: int) -> Tensor:
        """The index's ``num`` nearest slots per anchor, approximately ordered; -1 pads a short row.

        Shape:
            g: (B, D), p: (B, P, d), cams: (B,) -> (B, num) int64 (on the CPU)
        """
        q = embed(g, p, cams, lambda_g=self.lambda_g, lambda_c=self.lambda_c, num_cams=self.num_cams, query=True)
        return self.index.search(q, num)

    @torch.no_grad()
    def neighbours(self, g: Tensor, p: Tensor, cams: Tensor, self_idx: Tensor, count: int) -> Tensor:
        """The ``count`` nearest slots per anchor, nearest first, own slot left out.

        Shape:
            g: (B, D), p: (B, P, d), cams: (B,), self_idx: (B,) -> (B, count) int64
        """
        bank_g, bank_p = bank_features(self.global_bank), bank_features(self.part_bank)
        num_slots = bank_g.shape[0]
        num = math.ceil(self.rerank * (count + 1)) if self.index.approximate else count + 1
        if count == 0 or num >= num_slots:
            return self.exact.neighbours(g, p, cams, self_idx, count)
        cand = self.candidates(g, p, cams, num).to(bank_g.device)  # (B, R)
        self_idx = self_idx.to(bank_g.device)
        drop = (cand < 0) | (cand == self_idx[:, None])  # padding and the anchor's own slot
        cand = torch.where(cand < 0, self_idx[:, None], cand)
        dist = candidate_distance(
            g.to(bank_g.device),
            p.to(bank_g.device),
            self._gather("global", bank_g, cand),  # (B, R, D)
            self._gather("parts", bank_p.flatten(1), cand),  # (B, R, D)
            lambda_g=self.lambda_g,
            lambda_c=self.lambda_c,
            q_camids=cams.to(bank_g.device),
            c_camids=self.camids.to(bank_g.device)[cand],
            c_global_sq=self.sq_norms[:, 0][cand],
            c_parts_sq=self.sq_norms[:, 1][cand],
        ).masked_fill_(drop, float("inf"))  # (B, R)
        best, pos = torch.topk(dist, count, dim=1, largest=False, sorted=True)
        order = cand.gather(1, pos)  # (B, count)
        short = ~torch.isfinite(best[:, -1])  # (B,)
        if short.any():  # too few candidates in the probed cells: exact search for those anchors
            self.fallbacks += int(short.sum())
            order[short] = self.exact.neighbours(g[short], p[short], cams[short], self_idx[short], count)
        return order.to(self_idx.device)

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


def make_searcher(
    search_cfg, global_bank, part_bank, camids: Tensor, *, lambda_g: float, lambda_c: float, m: int | None,
    seed: int = 0,
) -> Searcher:
    """The searcher that config section ``search`` asks for, over the current banks.

    Args:
        search_cfg: :class:`reidlib.config.SearchConfig`.
        global_bank: MemoryBank or (N, D) tensor; part_bank: MemoryBank or (N, P, d) tensor. Banks
            are read at each call, so in-place ``MemoryBank.update`` is seen.
        camids: (N,) the slots' cameras.
        lambda_g, lambda_c: the selection distance's weights (``scl.lambda_g``, and ``scl.lambda_c``
            or the epoch's value under its schedule).
        m: ``scl.m``; None ("all negatives") always searches exactly.
        seed: seeds the IVF build (PCA sample, k-means).

    Returns:
        A :class:`TorchSearcher` or a :class:`FaissSearcher`. Call ``.refresh(idx)`` after every
        bank update (a no-op for torch).
    """
    bank_g = bank_features(global_bank)
    c = search_cfg
    if choose_backend(c.backend, m, bank_g.shape[0], bank_g.device) == "torch":
        return TorchSearcher(global_bank, part_bank, camids, lambda_g=lambda_g, lambda_c=lambda_c)
    return FaissSearcher(
        global_bank, part_bank, camids, lambda_g=lambda_g, lambda_c=lambda_c, index=c.faiss_index,
        faiss_dim=c.faiss_dim, nlist=c.nlist, nprobe=c.nprobe, rerank=c.rerank, seed=seed,
    )
