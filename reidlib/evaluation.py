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
    "market1501+camera-penalty": "NON-STANDARD: same-camera gallery items penalised at test time",
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

    cmc_sum = np.zeros(max_rank)
    ap_sum = inp_sum = 0.0
    valid = 0
    for start in range(0, num_q, chunk):
        stop = min(start + chunk, num_q)
        c = stop - start
        order = np.argsort(distmat[start:stop], axis=1)  # (c, num_g)
        match = g_pids[order] == q_pids[start:stop, None]  # (c, num_g), sparse
        # Only the matches matter from here, so work on their coordinates, not on full rows.
        rows, cols = np.nonzero(match)  # row-major: sorted by (row, col)
        same_cam = g_camids[order[rows, cols]] == q_camids[start + rows]  # removed by the protocol
        hit_row, hit_col = rows[~same_cam], cols[~same_cam]
        removed_key = rows[same_cam] * num_g + cols[same_cam]  # sorted
        # 1-based rank of a true match among kept items: its column minus the removed items before it.
        removed_before = np.searchsorted(removed_key, hit_row * num_g + hit_col) - np.searchsorted(
            removed_key, hit_row * num_g
        )
        rank = hit_col + 1 - removed_before
        n_hits = np.bincount(hit_row, minlength=c)  # (c,)
        ok = n_hits > 0
        if not ok.any():
            continue
        first = np.concatenate([[0], np.cumsum(n_hits)[:-1]])  # index of each row's first hit
        hits_so_far = np.arange(len(hit_row)) - first[hit_row] + 1
        # AP: mean over true matches of (matches so far) / (rank)
        ap_sum += (np.bincount(hit_row, hits_so_far / rank, minlength=c)[ok] / n_hits[ok]).sum()
        # INP: matches / rank of the last (hardest) match
        inp_sum += (n_hits[ok] / rank[first[ok] + n_hits[ok] - 1]).sum()
        # CMC: the first match's rank r gives 1 from r on
        first_rank = rank[first[ok]]
        cmc_sum += (first_rank[:, None] <= np.arange(1, max_rank + 1)[None, :]).sum(axis=0)
        valid += int(ok.sum())

    skipped = num_q - valid
    if valid == 0:
        raise DataError(f"none of the {num_q} queries has a gallery match from another camera")
    if skipped:
        log.info("%d of %d queries have no valid gallery match and were skipped", skipped, num_q)
    return RankResult(cmc_sum / valid, ap_sum / valid, inp_sum / valid, valid, skipped)


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
