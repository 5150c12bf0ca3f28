"""faiss indexes over SCL's selection distance: building them and asking them for candidates.

Shape letters: B anchors, N memory slots, D feature dim, P stripes, d = D / P, C cameras,
E = 2D + C embedding dim, E' = indexed dim (E, or ``faiss_dim`` after PCA).

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
SCL's distance are one order. ``tests/neighbours/test_searchers.py`` checks both identities numerically.

**The indexes** (config ``search.faiss_index``; :func:`build_index` picks one). Each is built
over x of every slot, rewrites a slot with ``update(rows, x)`` after a bank update, and returns
``search(q, num)``, each anchor's ``num`` nearest slots (-1 pads a short row); the re-ranking
against the banks is :class:`reidlib.neighbours.searchers.FaissSearcher`'s.

- :class:`FlatIndex`, exact: faiss's ``IndexFlatIP`` over x (N x E float32: 1.6 GB at N = 100,000).
- :class:`GpuFlatIndex`, exact: with banks on a CUDA device and the faiss GPU build installed, x
  lives on that device as a torch tensor and faiss's brute-force ``knn_gpu`` searches it.
- :class:`IVFIndex`, approximate: an inverted file (L2, ``nlist`` k-means cells, ``nprobe`` visited
  per anchor) over x, optionally reduced by PCA to ``faiss_dim`` dims first (fitted on a sample of
  the bank). Cells and basis are fitted once, on the bank as it is then; an updated slot moves to
  its new cell (faiss ``update_vectors`` with a direct map). IVF stays on the CPU even with CUDA
  banks: faiss's GPU IVF cannot move a slot, and ``search.backend: auto`` keeps the exact torch
  path on an accelerator anyway. ``ivf_sq8`` is the same inverted file with each indexed
  dimension kept in 8 bits (faiss's scalar quantizer): a quarter of the bytes scanned per slot
  visited, and a little more to re-rank (benchmarks/bench_step.py --search measures both).

**HNSW is not offered for training.** A faiss HNSW graph cannot move or remove a vector, and the
banks change every step; it could only be rebuilt (33 s for 100,000 PCA-256 vectors on one thread
in ``benchmarks/bench_selection.py``, and superlinear in N) and would search a graph built on
stale slots in between. The benchmark measures it for comparison only.

faiss is imported inside the functions that need it: the exact path and :func:`embed` never load it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from reidlib.config import FAISS_INDEXES, SearchConfig
from reidlib.distances import selection_weights
from reidlib.errors import ConfigError

SLOT_CHUNK = 16_384  # slots per block of the exact path and of index building
PCA_SAMPLE = 50_000  # bank rows the PCA basis is fitted on
KMEANS_POINTS_PER_CELL = 40  # bank rows per IVF cell for k-means (faiss warns below 39)
KMEANS_ITER = 10

SlotEmbedding = Callable[[Tensor], Tensor]  # slot rows (n,) -> their x (n, E) float32, from the banks


class SlotIndex(Protocol):
    """What :class:`reidlib.neighbours.searchers.FaissSearcher` asks of an index."""

    approximate: bool  # True: candidates may miss true neighbours (ask for more, re-rank)

    def search(self, q: Tensor, num: int) -> Tensor: ...

    def update(self, rows: Tensor, x: Tensor) -> None: ...


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
        lambda_g, lambda_c: the selection distance's weights (config ``scl.lambda_g``, ``scl.lambda_c``).
        num_cams: C, the one-hot width (cameras are 0..C-1).
        query: True for anchors (camera sign -), False for slots (+).

    Returns:
        (n, E) float32, E = 2D (+ C with cameras); for an anchor q and a slot x,
        ``dist = 2 - 2 q . x``.
    """
    w_global, w_parts = selection_weights(lambda_g, parts.shape[1])
    cols = [
        math.sqrt(w_global) * global_.float(),  # (n, D)
        math.sqrt(w_parts) * parts.flatten(1).float(),  # (n, D)
    ]
    if camids is not None:
        cam_w = math.sqrt(lambda_c / 2.0) * (-1.0 if query else 1.0)
        cols.append(cam_w * F.one_hot(camids.long(), num_cams).float())  # (n, C)
    return torch.cat(cols, dim=1)


def faiss_gpu_available(device) -> bool:
    """Whether faiss can search on ``device``: a CUDA device, and a faiss build with GPUs.

    The GPU build replaces faiss-cpu (``pip uninstall faiss-cpu && pip install faiss-gpu-cu12``);
    faiss-cpu has no ``StandardGpuResources``.
    """
    if torch.device(device).type != "cuda":
        return False
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def inverted_file(width: int, nlist: int, *, inner_product: bool, sq8: bool = False):
    """An untrained faiss inverted file of ``nlist`` k-means cells over ``width``-dim vectors, by
    inner product or L2, keeping each vector in float32 or (``sq8``) in 8 bits a dimension (faiss's
    scalar quantizer: a quarter of the bytes a probed cell scans)."""
    import faiss

    metric = faiss.METRIC_INNER_PRODUCT if inner_product else faiss.METRIC_L2
    quantizer = faiss.IndexFlatIP(width) if inner_product else faiss.IndexFlatL2(width)
    if sq8:
        return faiss.IndexIVFScalarQuantizer(quantizer, width, nlist, faiss.ScalarQuantizer.QT_8bit, metric)
    return faiss.IndexIVFFlat(quantizer, width, nlist, metric)


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


def _numpy(x: Tensor) -> np.ndarray:
    """(n, E) -> a C-contiguous float32 array on the CPU, as faiss takes it."""
    return np.ascontiguousarray(x.cpu().numpy(), dtype=np.float32)


class FlatIndex:
    """Exact inner-product search over every slot's x on the CPU (faiss ``IndexFlatIP``)."""

    approximate = False

    def __init__(self, embed_slots: SlotEmbedding, num_slots: int, dim: int):
        import faiss

        self.flat = faiss.IndexFlatIP(dim)
        for rows in torch.arange(num_slots).split(SLOT_CHUNK):
            self.flat.add(_numpy(embed_slots(rows)))  # ids 0..N-1 in order
        # a view of the index's own storage, rewritten in place by update
        self._stored = faiss.rev_swig_ptr(self.flat.get_xb(), num_slots * dim).reshape(num_slots, dim)

    def search(self, q: Tensor, num: int) -> Tensor:
        """(B, E) -> (B, num) int64 slots on the CPU, by inner product."""
        _, cand = self.flat.search(_numpy(q), num)
        return torch.from_numpy(cand)

    def update(self, rows: Tensor, x: Tensor) -> None:
        """Write slots ``rows`` (n,) (CPU, unique) with their new x (n, E)."""
        self._stored[rows.numpy().astype(np.int64)] = _numpy(x)


class GpuFlatIndex:
    """Exact search by faiss's brute-force ``knn_gpu`` over every slot's x, held as a torch tensor
    on the banks' CUDA device."""

    approximate = False

    def __init__(self, embed_slots: SlotEmbedding, num_slots: int, dim: int, device: torch.device):
        import faiss
        import faiss.contrib.torch_utils  # noqa: F401  (lets knn_gpu take torch tensors)

        self._res = faiss.StandardGpuResources()
        self.slots = torch.empty(num_slots, dim, device=device)  # (N, E)
        for rows in torch.arange(num_slots).split(SLOT_CHUNK):
            self.update(rows, embed_slots(rows))

    def search(self, q: Tensor, num: int) -> Tensor:
        """(B, E) -> (B, num) int64 slots on the CPU, by inner product."""
        import faiss

        device = self.slots.device
        _, cand = faiss.knn_gpu(
            self._res,
            q.float().to(device).contiguous(),
            self.slots,
            num,
            metric=faiss.METRIC_INNER_PRODUCT,
            device=device.index or 0,
        )
        return cand.cpu()

    def update(self, rows: Tensor, x: Tensor) -> None:
        """Write slots ``rows`` (n,) with their new x (n, E)."""
        self.slots[rows.to(self.slots.device)] = x


class IVFIndex:
    """An inverted file over every slot's x, PCA-reduced to ``faiss_dim`` dims unless 0 (CPU).

    Args:
        embed_slots: reads slots' x from the banks (for the PCA sample, k-means and the slots).
        num_slots, dim: N and E.
        faiss_dim: PCA to this many dims (0: the full E).
        nlist: cells (0: ``4 sqrt(N)``, and nprobe is then capped at nlist); nprobe: cells
            visited per anchor.
        sq8: keep each indexed dimension in 8 bits (faiss's scalar quantizer, ranges fitted on
            the k-means sample) instead of float32: a quarter of the bytes to scan per visited
            slot; the re-ranking is exact either way.
        seed: seeds the PCA sample and k-means, so a build is repeatable.
    """

    approximate = True

    def __init__(
        self,
        embed_slots: SlotEmbedding,
        num_slots: int,
        dim: int,
        *,
        faiss_dim: int = 0,
        nlist: int = 0,
        nprobe: int = 256,
        sq8: bool = False,
        seed: int = 0,
    ):
        import faiss

        if not nlist:  # 4 sqrt(N) cells, and at most all of them visited
            nlist = max(1, round(4 * math.sqrt(num_slots)))
            nprobe = min(nprobe, nlist)
        if nlist > num_slots:
            raise ConfigError(f"config key 'search.nlist' ({nlist}) exceeds the {num_slots} bank slots")
        if nprobe > nlist:
            raise ConfigError(f"config key 'search.nprobe' ({nprobe}) exceeds search.nlist ({nlist})")
        if faiss_dim >= dim:
            raise ConfigError(f"config key 'search.faiss_dim' ({faiss_dim}) must be < the embedding dim {dim}")
        generator = torch.Generator().manual_seed(seed)
        self.mean = self.basis = None
        if faiss_dim:
            rows = torch.randperm(num_slots, generator=generator)[:PCA_SAMPLE].sort().values
            self.mean, self.basis = pca_basis(embed_slots(rows).cpu(), faiss_dim, generator)
        rows = torch.randperm(num_slots, generator=generator)[: KMEANS_POINTS_PER_CELL * nlist].sort().values
        train = np.concatenate([self.vectors(embed_slots(r)) for r in rows.split(SLOT_CHUNK)])  # (S, E')
        indexed = faiss_dim or dim
        self.ivf = inverted_file(indexed, nlist, inner_product=False, sq8=sq8)
        self.ivf.cp.niter, self.ivf.cp.seed = KMEANS_ITER, seed
        self.ivf.train(train)
        self.ivf.set_direct_map_type(faiss.DirectMap.Array)  # for update_vectors
        self.ivf.nprobe = nprobe
        for rows in torch.arange(num_slots).split(SLOT_CHUNK):
            self.ivf.add(self.vectors(embed_slots(rows)))  # ids 0..N-1 in order

    def vectors(self, x: Tensor) -> np.ndarray:
        """x (n, E) as the index holds it: (n, E') float32 on the CPU, PCA-projected."""
        x = x.cpu()
        return _numpy(x if self.basis is None else (x - self.mean) @ self.basis)

    def search(self, q: Tensor, num: int) -> Tensor:
        """(B, E) -> (B, num) int64 slots on the CPU, approximately nearest first."""
        _, cand = self.ivf.search(self.vectors(q), num)
        return torch.from_numpy(cand)

    def update(self, rows: Tensor, x: Tensor) -> None:
        """Write slots ``rows`` (n,) (CPU, unique) with their new x (n, E), each into its new nearest cell."""
        self.ivf.update_vectors(rows.numpy().astype(np.int64), self.vectors(x))


def build_index(
    search_cfg: SearchConfig,
    embed_slots: SlotEmbedding,
    num_slots: int,
    dim: int,
    *,
    device: torch.device,
    seed: int = 0,
    gpu: bool | None = None,
) -> SlotIndex:
    """The index config section ``search`` asks for (``faiss_index``) over slots 0..N-1.

    Args:
        search_cfg: ``faiss_index`` (``flat`` or ``ivf``), and IVF's ``faiss_dim``, ``nlist``, ``nprobe``.
        embed_slots: reads slots' x (n, E) from the banks; num_slots, dim: N and E.
        device: the banks' device.
        seed: seeds IVF's PCA sample and k-means.
        gpu: flat only: search with faiss's GPU build on ``device`` (None: when
            :func:`faiss_gpu_available` says so).
    """
    c = search_cfg
    if c.faiss_index not in FAISS_INDEXES:
        raise ConfigError(
            f"config key 'search.faiss_index' must be one of {', '.join(FAISS_INDEXES)}; got {c.faiss_index!r}"
        )
    if c.faiss_index in ("ivf", "ivf_sq8"):
        return IVFIndex(
            embed_slots,
            num_slots,
            dim,
            faiss_dim=c.faiss_dim,
            nlist=c.nlist,
            nprobe=c.nprobe,
            sq8=c.faiss_index == "ivf_sq8",
            seed=seed,
        )
    if faiss_gpu_available(device) if gpu is None else gpu:
        return GpuFlatIndex(embed_slots, num_slots, dim, device)
    return FlatIndex(embed_slots, num_slots, dim)
