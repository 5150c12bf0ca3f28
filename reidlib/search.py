"""Neighbour search for SCL's selection: each anchor's nearest memory slots, at any bank size.

Shape letters: B anchors, N memory slots, D feature dim, P stripes, d = D / P, C cameras,
E = 2D + C embedding dim, E' = indexed dim (E, or ``faiss_dim`` after PCA), R candidates per anchor.

**The distance as an inner product.** SCL selects by (docs/method.md)

    dist(i, j) = lg |g_i - G_j|^2 + (1 - lg) (1/P) sum_p |p_ip - L_jp|^2 + lc [cam(i) = cam(j)].

Every feature, bank slot and stripe has unit norm, so with

    q_i = [sqrt(lg) g_i, sqrt((1 - lg)/P) p_i, -sqrt(lc/2) onehot(cam_i)]    (the anchor)
    x_j = [sqrt(lg) G_j, sqrt((1 - lg)/P) L_j, +sqrt(lc/2) onehot(cam_j)]    (the slot)

(p, L the P stripes concatenated) the distance is exactly ``2 - 2 q_i . x_j``. The camera weight
is split evenly (the product only needs ``-lc/2``): with ``-lc/2`` on one side and 1 on the other,
the one-hot dims would carry as much norm as the features and k-means (IVF) would cut the bank by
camera first. Every q and x then has the same squared norm ``s = 1 + lc/2``, so
``|q_i - x_j|^2 = 2s - 2 q_i . x_j = dist(i, j) + lc``: nearest by inner product, by L2 and by
SCL's distance are one order. ``tests/test_search.py`` checks both identities numerically.

**Backends** (``scl.search``; :func:`make_searcher` picks one):

- :class:`TorchSearcher`, exact: :func:`reidlib.distances.combined_distance` over chunks of slots
  and ``topk``. A float16 bank is converted one chunk at a time, so a 1M-slot float16 bank never
  needs a full float32 copy. ``m = None`` ("all negatives") always uses it.
- :class:`FaissSearcher` with ``faiss_index``:
  ``flat``, an exact inner-product index over x (N x E float32: 1.6 GB at N = 100,000); with
  banks on a CUDA device and the faiss GPU build installed, x lives on that device as a torch
  tensor and faiss's brute-force ``knn_gpu`` searches it (the CPU build's ``IndexFlatIP``
  otherwise);
  ``ivf``, an inverted file (L2, ``nlist`` k-means cells, ``nprobe`` visited per anchor) over x,
  optionally reduced by PCA to ``faiss_dim`` dims first (fitted on a sample of the bank). It
  returns ``R = ceil(rerank * (count + 1))`` candidates per anchor, which are re-ranked exactly
  against the current banks with :func:`reidlib.distances.candidate_distance`: the order within
  the candidates is exact, and only membership is approximate. An anchor left with fewer than
  ``count`` candidates (sparse cells) falls back to the exact search. IVF stays on the CPU even
  with CUDA banks: faiss's GPU IVF cannot move a slot (``update_vectors``), and ``auto`` keeps
  the exact torch path on an accelerator anyway.

**HNSW is not offered for training.** A faiss HNSW graph cannot move or remove a vector, and the
banks change every step; it could only be rebuilt (33 s for 100,000 PCA-256 vectors on one thread
in ``benchmarks/bench_selection.py``, and superlinear in N) and would search a graph built on
stale slots in between. The benchmark measures it for comparison only.

**The training step** (banks change after ``backward()``, so the index follows them)::

    searcher = make_searcher(cfg.scl, global_bank, part_bank, train_camids)  # after filling the banks
    order = searcher.neighbours(g, p, cams, idx, k + m)                       # (B, K+M), under no_grad
    sel = selection_from_order(order, idx, k)
    ... loss, backward(), optimiser step, global_bank.update(idx, g), part_bank.update(idx, p) ...
    searcher.refresh(idx)                                                     # the slots just written

Call ``refresh`` after every bank update, warm-up steps included (or build the searcher when
warm-up ends), and build it again after a checkpoint's banks are loaded. IVF cells and the PCA
basis are fitted once, on the bank as it is then; refreshed slots move to their new cell (faiss
``update_vectors`` with a direct map). If features drift far over training, build a new searcher
(e.g. at the start of each epoch) to refit them.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from reidlib.distances import candidate_distance, combined_distance
from reidlib.errors import ConfigError
from reidlib.selection import nearest_slots

# `search: auto` uses faiss from this many slots on (and the exact torch path below it). In
# benchmarks/bench_selection.py (one thread, B = 64, top 507) IVF with the default settings
# (PCA 256, nprobe 256, rerank 2) kept recall >= 0.95 and beat exact search 3x at 100,000 slots
# and 49x at 1,000,000; at 20,000 it needed nearly exhaustive probing to reach that recall.
AUTO_FAISS_MIN_SLOTS = 100_000
SLOT_CHUNK = 16_384  # slots per block of the exact path and of index building
PCA_SAMPLE = 50_000  # bank rows the PCA basis is fitted on
KMEANS_POINTS_PER_CELL = 40  # bank rows per IVF cell for k-means (faiss warns below 39)
KMEANS_ITER = 10


class Searcher(Protocol):
    """What the training step calls; :func:`make_searcher` returns one."""

    def neighbours(self, g: Tensor, p: Tensor, cams: Tensor, self_idx: Tensor, count: int) -> Tensor:
        ...

    def refresh(self, idx: Tensor) -> None:
        ...


def bank_features(bank) -> Tensor:
    """A MemoryBank's buffer (read at each call, so in-place updates are seen) or a tensor."""
    return getattr(bank, "features", bank)


def embed(
    global_: Tensor,
    parts: Tensor,
    camids: Tensor | None,
    *,
    lambda_g: float,
    lambda_c: float = 0.0,
    num_cams: int = 0,
    query: bool = True,
) -> Tensor:
    """The inner-product embedding of anchors (``query=True``) or bank slots (module docstring).

    Args:
        global_: (n, D) unit global features; parts: (n, P, d) unit stripes.
        camids: (n,) cameras, or None for no camera term (no one-hot columns, e.g. evaluation).
        lambda_g, lambda_c: the selection distance's weights.
        num_cams: C, the one-hot width (cameras are 0..C-1).
        query: True for anchors (camera sign -), False for slots (+).

    Returns:
        (n, E) float32, E = 2D (+ C with cameras); for an anchor q and a slot x,
        ``dist = 2 - 2 q . x``.
    """
    num_parts = parts.shape[1]
    cols = [
        math.sqrt(lambda_g) * global_.float(),  # (n, D)
        math.sqrt((1.0 - lambda_g) / num_parts) * parts.flatten(1).float(),  # (n, D)
    ]
    if camids is not None:
        cam_w = math.sqrt(lambda_c / 2.0) * (-1.0 if query else 1.0)
        cols.append(cam_w * F.one_hot(camids.long(), num_cams).float())  # (n, C)
    return torch.cat(cols, dim=1)


def pca_basis(sample: Tensor, dim: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Mean and top-``dim`` principal directions of ``sample`` by a seeded randomised SVD.

    (faiss's PCAMatrix does a full eigendecomposition: 135 s for 4,102 dims on this machine.)

    Shape:
        sample: (S, E) -> mean (E,), basis (E, dim) with orthonormal columns.
    """
    mean = sample.mean(0)
    x = sample - mean  # (S, E)
    width = min(dim + 16, *x.shape)
    y = x @ torch.randn(x.shape[1], width, generator=generator)  # (S, width)
    for _ in range(2):  # power iterations sharpen the spectrum
        y = x @ (x.T @ torch.linalg.qr(y).Q)
    q = torch.linalg.qr(y).Q  # (S, width)
    _, _, vh = torch.linalg.svd(q.T @ x, full_matrices=False)  # (width, E)
    return mean, vh[:dim].T.contiguous()


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
                camera_penalty=self.lambda_c,
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
    """faiss search over the embedding x of every slot, candidates re-ranked exactly.

    Args:
        global_bank: (N, D) bank or MemoryBank; part_bank: (N, P, d) bank or MemoryBank.
        camids: (N,) the slots' cameras.
        lambda_g, lambda_c: the selection distance's weights.
        index: ``flat`` (exact) or ``ivf``.
        faiss_dim: IVF only: PCA to this many dims before indexing (0: the full E dims).
        nlist: IVF cells (0: ``4 sqrt(N)``, and nprobe is then capped at nlist); nprobe: cells
            visited per anchor.
        rerank: candidates per anchor ``R = ceil(rerank * (count + 1))`` (IVF; flat takes count + 1).
        seed: seeds the PCA sample and k-means, so a build is repeatable.
        gpu: flat only: search with faiss's GPU build on the banks' CUDA device (None: when
            :func:`faiss_gpu_available` says so).
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
        import faiss  # here, not at module level: the exact path never loads it

        self.lambda_g, self.lambda_c, self.rerank = lambda_g, lambda_c, rerank
        self.kind = index
        self.num_cams = int(camids.max()) + 1
        self.exact = TorchSearcher(global_bank, part_bank, camids, lambda_g=lambda_g, lambda_c=lambda_c)
        self._buffers: dict[str, Tensor] = {}
        bank_g = bank_features(global_bank)
        num_slots, full_dim = bank_g.shape[0], 2 * bank_g.shape[1] + self.num_cams
        generator = torch.Generator().manual_seed(seed)
        self.mean = self.basis = None
        self.sq_norms = torch.empty(num_slots, 2, device=bank_g.device)  # (N, 2) global, parts, for re-ranking
        self.fallbacks = 0  # anchors that fell back to the exact search (a diagnostic)
        if gpu is None:
            gpu = faiss_gpu_available(bank_g.device)
        self.gpu = gpu and index == "flat"
        if self.gpu:  # the slots' embeddings as a tensor on the device, searched by knn_gpu
            import faiss.contrib.torch_utils  # noqa: F401  (lets knn_gpu take torch tensors)

            self._gpu_res = faiss.StandardGpuResources()
            self._slots = torch.empty(num_slots, full_dim, device=bank_g.device)  # (N, E)
            for rows in torch.arange(num_slots).split(SLOT_CHUNK):
                self.refresh(rows)
            return
        if index == "flat":
            self.index = faiss.IndexFlatIP(full_dim)
        elif index == "ivf":
            if not nlist:  # 4 sqrt(N) cells, and at most all of them visited
                nlist = max(1, round(4 * math.sqrt(num_slots)))
                nprobe = min(nprobe, nlist)
            if nlist > num_slots:
                raise ConfigError(f"config key 'scl.nlist' ({nlist}) exceeds the {num_slots} bank slots")
            if nprobe > nlist:
                raise ConfigError(f"config key 'scl.nprobe' ({nprobe}) exceeds scl.nlist ({nlist})")
            if faiss_dim >= full_dim:
                raise ConfigError(f"config key 'scl.faiss_dim' ({faiss_dim}) must be < the embedding dim {full_dim}")
            if faiss_dim:
                rows = torch.randperm(num_slots, generator=generator)[:PCA_SAMPLE].sort().values
                self.mean, self.basis = pca_basis(self._embed_slots(rows).cpu(), faiss_dim, generator)
            dim = faiss_dim or full_dim
            rows = torch.randperm(num_slots, generator=generator)[: KMEANS_POINTS_PER_CELL * nlist].sort().values
            train = np.concatenate([self._slot_vectors(r) for r in rows.split(SLOT_CHUNK)])  # (S, E')
            self.index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, nlist, faiss.METRIC_L2)
            self.index.cp.niter, self.index.cp.seed = KMEANS_ITER, seed
            self.index.train(train)
            self.index.set_direct_map_type(faiss.DirectMap.Array)  # for update_vectors
            self.index.nprobe = nprobe
        else:
            raise ConfigError(f"config key 'scl.faiss_index' must be one of flat, ivf; got {index!r}")
        for rows in torch.arange(num_slots).split(SLOT_CHUNK):
            self.index.add(self._slot_vectors(rows))  # ids 0..N-1 in order
        if index == "flat":  # a view of the index's own storage, rewritten in place by refresh
            self._stored = faiss.rev_swig_ptr(self.index.get_xb(), num_slots * full_dim).reshape(num_slots, full_dim)

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

    def _project(self, x: Tensor) -> Tensor:
        return x if self.basis is None else (x - self.mean) @ self.basis  # (n, E')

    def _slot_vectors(self, rows: Tensor) -> np.ndarray:
        """Slots ``rows`` as the CPU index stores them: (n, E') float32, PCA-projected for IVF."""
        return np.ascontiguousarray(self._project(self._embed_slots(rows).cpu()).numpy(), dtype=np.float32)

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
        if self.gpu:
            import faiss

            device = self._slots.device
            _, cand = faiss.knn_gpu(self._gpu_res, q.float().to(device).contiguous(), self._slots, num,
                                    metric=faiss.METRIC_INNER_PRODUCT, device=device.index or 0)
            return cand.cpu()
        q = np.ascontiguousarray(self._project(q.cpu()).numpy(), dtype=np.float32)  # (B, E')
        _, cand = self.index.search(q, num)
        return torch.from_numpy(cand)

    @torch.no_grad()
    def neighbours(self, g: Tensor, p: Tensor, cams: Tensor, self_idx: Tensor, count: int) -> Tensor:
        """The ``count`` nearest slots per anchor, nearest first, own slot left out.

        Shape:
            g: (B, D), p: (B, P, d), cams: (B,), self_idx: (B,) -> (B, count) int64
        """
        bank_g, bank_p = bank_features(self.global_bank), bank_features(self.part_bank)
        num_slots = bank_g.shape[0]
        num = count + 1 if self.kind == "flat" else math.ceil(self.rerank * (count + 1))
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
            camera_penalty=self.lambda_c,
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
        if self.gpu:
            self._slots[rows.to(self._slots.device)] = self._embed_slots(rows)
            return
        x = self._slot_vectors(rows)  # (n, E')
        ids = rows.numpy().astype(np.int64)
        if self.kind == "flat":
            self._stored[ids] = x
        else:  # moves each slot to its new nearest cell
            self.index.update_vectors(ids, x)

    def nbytes(self) -> int:
        """Bytes held by the index (codes, ids, centroids), not counting the banks."""
        if self.gpu:
            return self._slots.numel() * self._slots.element_size()
        if self.kind == "flat":
            return self.index.ntotal * self.index.d * 4
        invlists = self.index.invlists
        codes = self.index.ntotal * (invlists.code_size + 8)  # codes + ids
        direct_map = self.index.ntotal * 8
        projection = 0 if self.basis is None else (self.basis.numel() + self.mean.numel()) * 4
        return codes + direct_map + self.index.nlist * self.index.d * 4 + projection


def faiss_gpu_available(device) -> bool:
    """Whether faiss can search on ``device``: a CUDA device, and a faiss build with GPUs.

    The GPU build replaces faiss-cpu (``pip uninstall faiss-cpu && pip install faiss-gpu-cu12``);
    faiss-cpu has no ``StandardGpuResources``.
    """
    if torch.device(device).type != "cuda":
        return False
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def choose_backend(search: str, m: int | None, num_slots: int, device: torch.device) -> str:
    """``torch`` or ``faiss`` for config ``scl.search`` (auto: by bank size, see AUTO_FAISS_MIN_SLOTS).

    ``m = None`` ("all negatives") needs every slot sorted, so it is always exact torch. On an
    accelerator ``auto`` keeps the exact path: the bank's matrix product is fast there, and faiss's
    updatable IVF is a CPU index.
    """
    if search not in ("auto", "torch", "faiss"):
        raise ConfigError(f"config key 'scl.search' must be one of auto, torch, faiss; got {search!r}")
    if m is None or search == "torch":
        return "torch"
    if search == "faiss":
        return "faiss"
    if torch.device(device).type != "cpu" or num_slots < AUTO_FAISS_MIN_SLOTS:
        return "torch"
    return "faiss"


def make_searcher(
    scl_cfg, global_bank, part_bank, camids: Tensor, *, seed: int = 0, lambda_c: float | None = None
) -> Searcher:
    """The searcher that config section ``scl`` asks for, over the current banks.

    Args:
        scl_cfg: :class:`reidlib.config.SCLConfig` (search, faiss_index, faiss_dim, nlist, nprobe,
            rerank, lambda_g, lambda_c, m).
        global_bank: MemoryBank or (N, D) tensor; part_bank: MemoryBank or (N, P, d) tensor. Banks
            are read at each call, so in-place ``MemoryBank.update`` is seen.
        camids: (N,) the slots' cameras.
        seed: seeds the IVF build (PCA sample, k-means).
        lambda_c: the camera penalty to use (the epoch's, under a schedule); None: ``scl_cfg.lambda_c``.

    Returns:
        A :class:`TorchSearcher` or a :class:`FaissSearcher`. Call ``.refresh(idx)`` after every
        bank update (a no-op for torch).
    """
    bank_g = bank_features(global_bank)
    s = scl_cfg
    lambda_c = s.lambda_c if lambda_c is None else lambda_c
    backend = choose_backend(s.search, s.m, bank_g.shape[0], bank_g.device)
    if backend == "torch":
        return TorchSearcher(global_bank, part_bank, camids, lambda_g=s.lambda_g, lambda_c=lambda_c)
    return FaissSearcher(
        global_bank, part_bank, camids, lambda_g=s.lambda_g, lambda_c=lambda_c, index=s.faiss_index,
        faiss_dim=s.faiss_dim, nlist=s.nlist, nprobe=s.nprobe, rerank=s.rerank, seed=seed,
    )
