"""Evaluation without a dense distmat: each query's top-R gallery items, for galleries too large
for a (Q, G) matrix (docs/evaluation.md).

Shape letters: Q queries, G gallery items, D feature dim, P stripes, R items kept per query.
"""

from __future__ import annotations

import numpy as np
import torch

from reidlib.distances import combined_distance
from reidlib.errors import ConfigError
from reidlib.evaluation.protocol import RankResult, block_sums, result_from_sums
from reidlib.neighbours import exact
from reidlib.neighbours.faiss_index import embed, faiss_gpu_available


def _count(keys: np.ndarray, of: np.ndarray) -> np.ndarray:
    """How many times each entry of ``of`` occurs in ``keys``."""
    uniq, counts = np.unique(keys, return_counts=True)
    pos = np.clip(np.searchsorted(uniq, of), 0, max(len(uniq) - 1, 0))
    return np.where(uniq[pos] == of, counts[pos], 0) if len(uniq) else np.zeros(len(of), dtype=np.int64)


def evaluate_topk(
    query: dict[str, np.ndarray],
    gallery: dict[str, np.ndarray],
    *,
    lambda_g: float,
    top_r: int | None = None,
    distance: str = "euclidean",
    backend: str = "torch",
    max_rank: int = 50,
    chunk: int = 256,
    device: str | torch.device = "cpu",
) -> RankResult:
    """CMC / mAP / mINP from each query's top-R gallery items, never holding the query x gallery matrix.

    For galleries too large for a dense distmat. Queries are handled ``chunk`` at a time: the
    block's distances (chunk, num_g) are computed, its nearest ``R + j`` items kept (j: the most
    same-identity same-camera items of a query, which the protocol removes, so that R items remain
    after removal), and the block is scored by the same code as :func:`evaluate`.

    - ``top_r=None`` (the whole gallery): exactly :func:`evaluate`'s figures (protocol
      ``market1501``), streamed.
    - ``top_r=R``: protocol ``market1501@R``. CMC is exact up to rank R (so ``max_rank <= R``).
      mAP@R is AP over *all* of a query's true matches with the ones ranked beyond R counted as
      missed (precision 0): a lower bound of mAP, equal to it when every match lies within R.
      mINP@R is INP where the hardest match lies within R, else 0 (a lower bound). Tables must say
      ``market1501@R`` with R.

    Args:
        query, gallery: dicts with ``global`` (n, D), ``parts`` (n, P, d), ``pids`` (n,), ``camids`` (n,).
        lambda_g: global share of the distance.
        top_r: R, or None for the whole gallery.
        distance: ``euclidean``, the standard test distance of
            :func:`reidlib.distances.query_gallery_distance`, lambda_g |dg| + (1 - lambda_g) |dp|;
            or ``squared``, lambda_g |dg|^2 + (1 - lambda_g) (1/P) sum_p |dp_p|^2 (the selection
            distance without its camera term), which is an inner product of one embedding.
        backend: ``torch`` (exact, any distance) or ``faiss`` (an exact flat inner-product index over
            the gallery embedding, on a GPU when ``device`` is CUDA and the faiss build has one).
            A sum of two Euclidean distances is not an inner product, so ``faiss`` needs
            ``distance="squared"`` or lambda_g of 0 or 1 (where both distances rank alike).
        max_rank: CMC length (at most R).
        chunk: queries per block. Memory is a few (chunk, num_g) float32 distance temporaries, plus,
            for the whole gallery, int64 sort indices and their gathers (~40 bytes x chunk x num_g
            in all: 10 GB at chunk 256 and a 1M gallery; lower ``chunk`` there).
        device: where the torch path computes distances.

    Returns:
        RankResult; raises ConfigError for a bad option, DataError if no query has a valid match.
    """
    if distance not in ("euclidean", "squared"):
        raise ConfigError(f"distance must be euclidean or squared, got {distance!r}")
    if backend not in ("torch", "faiss"):
        raise ConfigError(f"backend must be torch or faiss, got {backend!r}")
    if backend == "faiss" and distance == "euclidean" and 0 < lambda_g < 1:
        raise ConfigError(
            "backend='faiss' needs an inner-product distance: lambda_g |dg| + (1 - lambda_g) |dp| is not one; "
            "use distance='squared', lambda_g of 0 or 1, or backend='torch'"
        )
    q_pids, q_camids = np.asarray(query["pids"]), np.asarray(query["camids"])
    g_pids, g_camids = np.asarray(gallery["pids"]), np.asarray(gallery["camids"])
    num_q, num_g = len(q_pids), len(g_pids)
    top_r = num_g if top_r is None else top_r
    if not 0 < top_r <= num_g:
        raise ConfigError(f"top_r must lie in [1, {num_g}] (the gallery size), got {top_r}")
    exact = top_r == num_g
    max_rank = min(max_rank, top_r)
    # true matches (same pid, other camera) and removed items (same pid, same camera) per query
    cam_base = int(max(g_camids.max(), q_camids.max())) + 1
    junk = _count(g_pids * cam_base + g_camids, q_pids * cam_base + q_camids)  # (num_q,)
    num_rel = _count(g_pids, q_pids) - junk  # (num_q,)
    width = min(num_g, top_r + int(junk.max(initial=0)))

    nearest = _faiss_nearest if backend == "faiss" else _torch_nearest
    blocks = nearest(
        query,
        gallery,
        lambda_g=lambda_g,
        squared=distance == "squared",
        width=width,
        chunk=chunk,
        device=torch.device(device),
    )
    sums = np.zeros(max_rank + 3)
    for start, order in blocks:  # (c, width) gallery indices per block of queries
        stop = start + len(order)
        sums += block_sums(
            order,
            q_pids[start:stop],
            q_camids[start:stop],
            g_pids,
            g_camids,
            max_rank,
            num_rel=num_rel[start:stop],
            top_r=None if exact else top_r,
        )
    return result_from_sums(sums, num_q, max_rank)


def _torch_nearest(query, gallery, *, lambda_g, squared, width, chunk, device):
    """Yield (start, (c, width) nearest gallery indices) per block of queries, exact, by the blocked
    loop of :mod:`reidlib.neighbours.exact`."""

    def tensor(a):
        return torch.as_tensor(np.asarray(a, dtype=np.float32), device=device)

    g_global, g_parts = tensor(gallery["global"]), tensor(gallery["parts"])
    q_global, q_parts = tensor(query["global"]), tensor(query["parts"])

    def distance(rows, items):
        return combined_distance(
            q_global[rows], q_parts[rows], g_global[items], g_parts[items], lambda_g=lambda_g, squared=squared
        )  # (c, num_g)

    for found in exact.nearest(distance, len(q_global), len(g_global), width, query_block=chunk):
        yield found.rows.start, found.idx.cpu().numpy()


def _faiss_nearest(query, gallery, *, lambda_g, squared, width, chunk, device):
    """The same by an exact flat inner-product faiss index (GPU if the device and the build allow)."""
    import faiss

    def vectors(feats):
        x = embed(
            torch.as_tensor(np.asarray(feats["global"])),
            torch.as_tensor(np.asarray(feats["parts"])),
            None,
            lambda_g=lambda_g,
        )
        return np.ascontiguousarray(x.numpy(), dtype=np.float32)  # (n, 2D)

    x = vectors(gallery)
    index = faiss.IndexFlatIP(x.shape[1])
    if faiss_gpu_available(device):
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), device.index or 0, index)
    index.add(x)
    del x
    q = vectors(query)
    for start in range(0, len(q), chunk):
        _, order = index.search(q[start : start + chunk], width)
        yield start, order
