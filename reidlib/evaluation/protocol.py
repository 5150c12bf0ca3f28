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

from reidlib.errors import DataError

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
        sums += block_sums(order, q_pids[start:stop], q_camids[start:stop], g_pids, g_camids, max_rank)
    return result_from_sums(sums, num_q, max_rank)


def result_from_sums(sums: np.ndarray, num_q: int, max_rank: int) -> RankResult:
    cmc_sum, ap_sum, inp_sum, valid = sums[:max_rank], sums[max_rank], sums[max_rank + 1], int(sums[max_rank + 2])
    skipped = num_q - valid
    if valid == 0:
        raise DataError(f"none of the {num_q} queries has a gallery match from another camera")
    if skipped:
        log.info("%d of %d queries have no valid gallery match and were skipped", skipped, num_q)
    return RankResult(cmc_sum / valid, ap_sum / valid, inp_sum / valid, valid, skipped)


def block_sums(
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


FIGURES = ("mAP", "rank1", "rank5", "rank10", "mINP")  # the columns of every table, in order


def figures(res: RankResult) -> dict[str, float]:
    """A RankResult's figures by name (:data:`FIGURES`, and the queries scored and skipped)."""
    return {
        "mAP": float(res.mAP),
        "rank1": float(res.cmc[0]),
        "rank5": float(res.cmc[min(4, len(res.cmc) - 1)]),
        "rank10": float(res.cmc[min(9, len(res.cmc) - 1)]),
        "mINP": float(res.mINP),
        "skipped_queries": int(res.num_skipped_queries),
        "valid_queries": int(res.num_valid_queries),
    }


def describe_protocol(protocol: str) -> str:
    """``protocol (its description)``, e.g. ``market1501 (standard Market-1501 protocol)``."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    return f"{protocol}, {PROTOCOLS[protocol]}"


def format_table(rows: dict[str, dict[str, float]], header: str, label: str = "") -> str:
    """The one plain-text table of figures: ``header``, then mAP, Rank-1/5/10 and mINP (in %) per
    row (rows: name -> :func:`figures`-like dict), and the queries skipped for lack of a match."""
    width = max([22, len(label), *(len(name) for name in rows)])
    lines = [header, f"{label:<{width}} {'mAP':>6} {'R-1':>6} {'R-5':>6} {'R-10':>6} {'mINP':>6}"]
    for name, r in rows.items():
        lines.append(f"{name:<{width}} " + " ".join(f"{100 * r[key]:6.1f}" for key in FIGURES))
    skipped = sorted({r.get("skipped_queries", 0) for r in rows.values()})
    valid = sorted({r.get("valid_queries", 0) for r in rows.values()})
    if len(skipped) == 1 and skipped[0] and len(valid) == 1:  # the same queries in every row
        one = skipped[0] == 1
        lines.append(
            f"({skipped[0]} {'query' if one else 'queries'} had no valid gallery match and "
            f"{'was' if one else 'were'} skipped; {valid[0]} were scored)"
        )
    elif skipped != [0]:
        lines.append(f"(queries skipped for lack of a valid gallery match: {', '.join(map(str, skipped))})")
    return "\n".join(lines)


def format_results(rows: dict[str, RankResult], protocol: str = "market1501", title: str = "") -> str:
    """:func:`format_table` of RankResults, headed by ``title`` and the protocol."""
    head = f"{title} " if title else ""
    return format_table(
        {name: figures(r) for name, r in rows.items()}, f"{head}(protocol: {describe_protocol(protocol)})"
    )


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
