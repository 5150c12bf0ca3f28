"""Evaluation under the standard Market-1501 protocol: CMC, mAP and mINP, vectorised NumPy.

For each query, gallery items with the query's identity *and* camera are removed (they would be
trivially easy); queries with no remaining true match are skipped and counted. CMC is capped at 1
and averaged over valid queries; AP is the mean of the precision at each true match (Zheng et
al., ICCV 2015); INP is (number of true matches) / (rank of the hardest one) (Ye et al., TPAMI
2021), and mINP its mean. Evaluation knows nothing about training tricks: a camera-aware distance,
if wanted, is built in :mod:`reidlib.distances` and labelled there.

Names follow torchreid (``distmat``, ``q_pids``, ``g_camids``) so that its users read this at once.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
import torch

from reidlib.errors import ConfigError, DataError

log = logging.getLogger(__name__)

PROTOCOLS = {
    "market1501": "standard Market-1501 protocol",
    "mars": "standard MARS protocol: tracklet against tracklet, the Market-1501 rule one level up",
    "mars+camera-penalty": "NON-STANDARD: same-camera gallery tracklets penalised at test time",
    "market1501+camera-penalty": "NON-STANDARD: same-camera gallery items penalised at test time",
    "market1501@R": "Market-1501 rules on each query's top-R gallery items: CMC exact up to R; "
    "mAP@R and mINP@R count matches beyond R as missed, lower bounds of mAP and mINP",
}


class RankResult(NamedTuple):
    cmc: np.ndarray  # (max_rank,) share of valid queries with a true match within rank r+1
    mAP: float
    mINP: float
    num_valid_queries: int
    num_skipped_queries: int


def evaluate(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 50,
    chunk: int = 256,
) -> RankResult:
    """CMC, mAP and mINP of a query x gallery distance matrix (smaller is nearer).

    Args:
        distmat: (num_q, num_g) distances.
        q_pids, q_camids: (num_q,) query identities and cameras.
        g_pids, g_camids: (num_g,) gallery identities and cameras.
        max_rank: CMC length; cut to the gallery size if larger.
        chunk: queries per block (bounds memory at chunk x num_g).

    Returns:
        RankResult; raises DataError if shapes disagree or no query has a valid match.
    """
    distmat = np.asarray(distmat)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    num_q, num_g = distmat.shape
    if (len(q_pids), len(q_camids), len(g_pids), len(g_camids)) != (num_q, num_q, num_g, num_g):
        raise DataError(
            f"distmat is {num_q} x {num_g} but got {len(q_pids)} q_pids, {len(q_camids)} q_camids, "
            f"{len(g_pids)} g_pids, {len(g_camids)} g_camids"
        )
    if num_g < max_rank:
        log.warning("gallery has %d items, fewer than max_rank=%d; CMC cut to %d", num_g, max_rank, num_g)
        max_rank = num_g

    sums = np.zeros(max_rank + 3)  # CMC counts, then AP, INP and valid-query sums
    for start in range(0, num_q, chunk):
        stop = min(start + chunk, num_q)
        order = np.argsort(distmat[start:stop], axis=1)  # (c, num_g)
        sums += _block_sums(order, q_pids[start:stop], q_camids[start:stop], g_pids, g_camids, max_rank)
    return _result(sums, num_q, max_rank)


def _result(sums: np.ndarray, num_q: int, max_rank: int) -> RankResult:
    cmc_sum, ap_sum, inp_sum, valid = sums[:max_rank], sums[max_rank], sums[max_rank + 1], int(sums[max_rank + 2])
    skipped = num_q - valid
    if valid == 0:
        raise DataError(f"none of the {num_q} queries has a gallery match from another camera")
    if skipped:
        log.info("%d of %d queries have no valid gallery match and were skipped", skipped, num_q)
    return RankResult(cmc_sum / valid, ap_sum / valid, inp_sum / valid, valid, skipped)


def _block_sums(
    order: np.ndarray,
    q_pids: np.ndarray,
    q_camids: np.ndarray,
    g_pids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int,
    num_rel: np.ndarray | None = None,
    top_r: int | None = None,
) -> np.ndarray:
    """CMC counts, AP, INP and valid-query sums of one block of queries.

    Args:
        order: (c, L) gallery indices of each query, nearest first: every gallery item (L = num_g),
            or the first L of them (then ``num_rel`` and ``top_r`` must be given).
        q_pids, q_camids: (c,); g_pids, g_camids: (num_g,).
        max_rank: CMC length.
        num_rel: (c,) true matches of each query in the whole gallery (same pid, other camera);
            None counts them in ``order`` (which then must hold the whole gallery).
        top_r: keep only matches at kept rank <= top_r (the top-R protocol).

    Returns:
        (max_rank + 3,) sums: CMC counts per rank, AP, INP, number of valid queries.
    """
    c, width = order.shape
    match = g_pids[order] == q_pids[:, None]  # (c, L), sparse
    # Only the matches matter from here, so work on their coordinates, not on full rows.
    rows, cols = np.nonzero(match)  # row-major: sorted by (row, col)
    same_cam = g_camids[order[rows, cols]] == q_camids[rows]  # removed by the protocol
    hit_row, hit_col = rows[~same_cam], cols[~same_cam]
    removed_key = rows[same_cam] * width + cols[same_cam]  # sorted
    # 1-based rank of a true match among kept items: its column minus the removed items before it.
    removed_before = np.searchsorted(removed_key, hit_row * width + hit_col) - np.searchsorted(
        removed_key, hit_row * width
    )
    rank = hit_col + 1 - removed_before
    if top_r is not None:
        keep = rank <= top_r
        hit_row, rank = hit_row[keep], rank[keep]
    n_hits = np.bincount(hit_row, minlength=c)  # (c,) matches found
    total = n_hits if num_rel is None else num_rel  # matches in the whole gallery
    ok = total > 0  # valid queries
    found = n_hits > 0
    first = np.concatenate([[0], np.cumsum(n_hits)[:-1]])  # index of each row's first hit
    hits_so_far = np.arange(len(hit_row)) - first[hit_row] + 1
    # AP: sum over found matches of (matches so far) / (rank), over all true matches
    ap = np.bincount(hit_row, hits_so_far / rank, minlength=c)[ok] / total[ok]
    # INP: matches / rank of the last (hardest) match; 0 if that match was not retrieved
    complete = found & (n_hits == total)
    inp = np.zeros(c)
    inp[complete] = total[complete] / rank[first[complete] + n_hits[complete] - 1]
    # CMC: the first match's rank r gives 1 from r on
    first_rank = rank[first[found & ok]]
    cmc = (first_rank[:, None] <= np.arange(1, max_rank + 1)[None, :]).sum(axis=0)
    return np.concatenate([cmc, [ap.sum(), inp[ok].sum(), ok.sum()]])


def evaluate_rank(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 50,
) -> tuple[np.ndarray, float]:
    """torchreid's ``evaluate_rank``: returns ``(cmc, mAP)`` under the Market-1501 protocol."""
    res = evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=max_rank)
    return res.cmc, res.mAP


def format_results(rows: dict[str, RankResult], protocol: str = "market1501", title: str = "") -> str:
    """A plain-text table of mAP, Rank-1/5/10 and mINP per row, naming the protocol."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    head = f"{title} " if title else ""
    lines = [
        f"{head}(protocol: {protocol}, {PROTOCOLS[protocol]})",
        f"{'':<22} {'mAP':>6} {'R-1':>6} {'R-5':>6} {'R-10':>6} {'mINP':>6}",
    ]
    for name, r in rows.items():
        ranks = [r.cmc[min(i, len(r.cmc) - 1)] for i in (0, 4, 9)]
        values = [r.mAP, *ranks, r.mINP]
        lines.append(f"{name:<22} " + " ".join(f"{100 * v:6.1f}" for v in values))
    skipped = {r.num_skipped_queries for r in rows.values()}
    if skipped != {0}:
        lines.append(f"(queries skipped for lack of a valid match: {', '.join(map(str, sorted(skipped)))})")
    return "\n".join(lines)


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
    search: str = "torch",
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
        search: ``torch`` (exact, any distance) or ``faiss`` (an exact flat inner-product index over
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
    if search not in ("torch", "faiss"):
        raise ConfigError(f"search must be torch or faiss, got {search!r}")
    if search == "faiss" and distance == "euclidean" and 0 < lambda_g < 1:
        raise ConfigError(
            "search='faiss' needs an inner-product distance: lambda_g |dg| + (1 - lambda_g) |dp| is not one; "
            "use distance='squared', lambda_g of 0 or 1, or search='torch'"
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

    nearest = _faiss_nearest if search == "faiss" else _torch_nearest
    blocks = nearest(query, gallery, lambda_g=lambda_g, squared=distance == "squared", width=width, chunk=chunk,
                     device=torch.device(device))
    sums = np.zeros(max_rank + 3)
    for start, order in blocks:  # (c, width) gallery indices per block of queries
        stop = start + len(order)
        sums += _block_sums(order, q_pids[start:stop], q_camids[start:stop], g_pids, g_camids, max_rank,
                            num_rel=num_rel[start:stop], top_r=None if exact else top_r)
    return _result(sums, num_q, max_rank)


def _torch_nearest(query, gallery, *, lambda_g, squared, width, chunk, device):
    """Yield (start, (c, width) nearest gallery indices) per block of queries, exact, by torch."""
    from reidlib.distances import combined_distance

    def tensor(a):
        return torch.as_tensor(np.asarray(a, dtype=np.float32), device=device)

    g_global, g_parts = tensor(gallery["global"]), tensor(gallery["parts"])
    q_global, q_parts = tensor(query["global"]), tensor(query["parts"])
    for start in range(0, len(q_global), chunk):
        stop = start + chunk
        dist = combined_distance(q_global[start:stop], q_parts[start:stop], g_global, g_parts,
                                 lambda_g=lambda_g, squared=squared)  # (c, num_g)
        if width == dist.shape[1]:  # the whole gallery: evaluate's own sort (1.5x torch's on a CPU)
            yield start, np.argsort(dist.cpu().numpy(), axis=1)
        else:
            yield start, torch.topk(dist, width, dim=1, largest=False, sorted=True).indices.cpu().numpy()


def _faiss_nearest(query, gallery, *, lambda_g, squared, width, chunk, device):
    """The same by an exact flat inner-product faiss index (GPU if the device and the build allow)."""
    import faiss

    from reidlib.neighbours.faiss_index import embed, faiss_gpu_available

    def vectors(feats):
        x = embed(torch.as_tensor(np.asarray(feats["global"])), torch.as_tensor(np.asarray(feats["parts"])), None,
                  lambda_g=lambda_g)
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


def protocol_ranking(
    distmat: np.ndarray, q_pids: np.ndarray, q_camids: np.ndarray, g_pids: np.ndarray, g_camids: np.ndarray, top: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each query's ``top`` nearest gallery images under the standard protocol (gallery images of
    the query's identity *and* camera removed), and the rank of its first true match.

    Shape:
        distmat: (Q, G). Returns ``ranked`` (Q, T) gallery indices, nearest first (T = ``top``, or
        fewer kept images), and ``first_match`` (Q,) 1-based, 0 when a query has no true match.
    """
    order = np.argsort(distmat, axis=1, kind="stable")  # (Q, G)
    same_id = g_pids[order] == q_pids[:, None]
    junk = same_id & (g_camids[order] == q_camids[:, None])
    keep = np.argsort(junk, axis=1, kind="stable")[:, : min(top, int((~junk).sum(axis=1).min()))]  # kept first
    ranked = np.take_along_axis(order, keep, axis=1)
    hit = same_id & ~junk
    kept_rank = np.cumsum(~junk, axis=1)  # (Q, G) rank among kept images
    first = np.take_along_axis(kept_rank, hit.argmax(axis=1)[:, None], axis=1)[:, 0]
    return ranked, np.where(hit.any(axis=1), first, 0)
