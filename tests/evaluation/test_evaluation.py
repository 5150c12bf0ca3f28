"""evaluate_rank against torchreid's per-query loop and a case worked out by hand."""

import numpy as np
import pytest

from reidlib.errors import DataError
from reidlib.evaluation.protocol import evaluate, evaluate_rank, format_results


def naive_eval(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """The classic per-query loop (torchreid's eval_market1501), plus INP."""
    num_q, num_g = distmat.shape
    max_rank = min(max_rank, num_g)
    indices = np.argsort(distmat, axis=1, kind="stable")
    matches = (g_pids[indices] == q_pids[:, None]).astype(np.int32)
    all_cmc, all_ap, all_inp = [], [], []
    for q in range(num_q):
        order = indices[q]
        remove = (g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q])
        raw = matches[q][~remove]
        if not raw.any():
            continue
        cmc = raw.cumsum()
        last = np.where(raw == 1)[0].max()
        all_inp.append(cmc[last] / (last + 1.0))
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        num_rel = raw.sum()
        precision = raw.cumsum() / (np.arange(len(raw)) + 1.0)
        all_ap.append((precision * raw).sum() / num_rel)
    return np.mean(all_cmc, axis=0), np.mean(all_ap), np.mean(all_inp), len(all_ap)


@pytest.mark.parametrize("seed", range(5))
def test_matches_naive_loop(seed):
    rng = np.random.default_rng(seed)
    num_q, num_g = 37, 120
    q_pids = rng.integers(0, 15, num_q)
    g_pids = rng.integers(0, 15, num_g)
    q_camids = rng.integers(0, 4, num_q)
    g_camids = rng.integers(0, 4, num_g)
    distmat = rng.random((num_q, num_g))
    cmc, mAP, mINP, valid = naive_eval(distmat, q_pids, g_pids, q_camids, g_camids)
    res = evaluate(distmat, q_pids, g_pids, q_camids, g_camids, chunk=8)
    np.testing.assert_allclose(res.cmc, cmc)
    assert res.mAP == pytest.approx(mAP)
    assert res.mINP == pytest.approx(mINP)
    assert res.num_valid_queries == valid
    assert res.num_skipped_queries == num_q - valid
    got_cmc, got_map = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids)
    np.testing.assert_allclose(got_cmc, cmc)
    assert got_map == pytest.approx(mAP)


def test_hand_computed():
    # Query 0: pid 1, camera 0. Gallery by distance: g0 (pid 1, cam 0: same id and camera, removed),
    # g1 (pid 2), g2 (pid 1, cam 1), g3 (pid 3), g4 (pid 1, cam 2).
    # Kept ranking: g1 x, g2 v, g3 x, g4 v -> matches at ranks 2 and 4.
    # AP = (1/2 + 2/4) / 2 = 0.5; INP = 2 / 4 = 0.5; first match at rank 2.
    # Query 1: pid 2, camera 1. g1 (pid 2, cam 1) is removed; no other pid 2: skipped.
    distmat = np.array([[0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.1, 0.2, 0.3, 0.4]])
    q_pids, q_camids = np.array([1, 2]), np.array([0, 1])
    g_pids, g_camids = np.array([1, 2, 1, 3, 1]), np.array([0, 1, 1, 0, 2])
    res = evaluate(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=5)
    assert res.mAP == pytest.approx(0.5)
    assert res.mINP == pytest.approx(0.5)
    np.testing.assert_allclose(res.cmc, [0, 1, 1, 1, 1])
    assert (res.num_valid_queries, res.num_skipped_queries) == (1, 1)


def test_perfect_ranking():
    distmat = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 2.0]])
    res = evaluate(distmat, np.array([5, 6]), np.array([5, 6, 7]), np.array([0, 0]), np.array([1, 1, 1]))
    assert res.mAP == 1.0 and res.mINP == 1.0 and res.cmc[0] == 1.0


def test_errors():
    with pytest.raises(DataError, match="distmat is 2 x 3"):
        evaluate(np.zeros((2, 3)), np.zeros(2), np.zeros(4), np.zeros(2), np.zeros(3))
    with pytest.raises(DataError, match="none of the 1 queries"):
        evaluate(np.zeros((1, 2)), np.array([1]), np.array([2, 3]), np.array([0]), np.array([0, 1]))


def test_format_names_protocol():
    res = evaluate(np.array([[0.0, 1.0]]), np.array([1]), np.array([1, 2]), np.array([0]), np.array([1, 1]))
    text = format_results({"combined": res}, protocol="market1501")
    assert "protocol: market1501" in text and "100.0" in text
    assert "NON-STANDARD" in format_results({"x": res}, protocol="market1501+camera-penalty")


def feature_split(rng, n, num_ids=12, num_cams=4, d=16, parts=4):
    """Unit global and stripe features near identity centres, with pids and cameras."""
    pids = rng.integers(0, num_ids, n)
    centres = rng.normal(size=(num_ids, d))
    glob = centres[pids] + rng.normal(size=(n, d))
    stripes = centres[pids].reshape(n, parts, d // parts) + rng.normal(size=(n, parts, d // parts))
    glob /= np.linalg.norm(glob, axis=1, keepdims=True)
    stripes /= np.linalg.norm(stripes, axis=2, keepdims=True)
    return {
        "global": glob.astype(np.float32),
        "parts": stripes.astype(np.float32),
        "pids": pids,
        "camids": rng.integers(0, num_cams, n),
    }


def dense(query, gallery, lambda_g, squared):
    """The dense distmat the top-R path must agree with."""
    import torch

    from reidlib.distances import combined_distance
    from reidlib.evaluation.evaluator import query_gallery_distance

    if not squared:
        return query_gallery_distance(query, gallery, lambda_g=lambda_g)
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    return combined_distance(
        t(query["global"]),
        t(query["parts"]),
        t(gallery["global"]),
        t(gallery["parts"]),
        lambda_g=lambda_g,
        squared=True,
    ).numpy()


def truncated_ap_loop(distmat, q_pids, g_pids, q_camids, g_camids, top_r):
    """Oracle for mAP@R and CMC: per query, precision at each match within the first R kept items,
    summed over all true matches of the query (those beyond R count 0)."""
    aps, firsts = [], []
    for q in range(distmat.shape[0]):
        order = np.argsort(distmat[q], kind="stable")
        keep = ~((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q]))
        raw = (g_pids[order] == q_pids[q])[keep].astype(float)
        if not raw.any():
            continue
        hits = raw[:top_r]
        precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
        aps.append((precision * hits).sum() / raw.sum())
        firsts.append(np.argmax(raw) + 1)
    return float(np.mean(aps)), np.array(firsts)


@pytest.mark.parametrize(
    "backend, distance, lambda_g",
    [
        ("torch", "euclidean", 0.5),
        ("torch", "squared", 0.5),
        ("faiss", "squared", 0.5),
        ("faiss", "euclidean", 1.0),
        ("faiss", "euclidean", 0.0),
    ],
)
def test_topk_whole_gallery_equals_evaluate(backend, distance, lambda_g, device):
    """On ``device``: the torch path's distances, or faiss's GPU index where the build has one."""
    from reidlib.evaluation.topk import evaluate_topk

    if backend == "faiss":
        pytest.importorskip("faiss")
    rng = np.random.default_rng(3)
    query, gallery = feature_split(rng, 40), feature_split(rng, 150)
    distmat = dense(query, gallery, lambda_g, distance == "squared")
    ref = evaluate(distmat, query["pids"], gallery["pids"], query["camids"], gallery["camids"])
    got = evaluate_topk(query, gallery, lambda_g=lambda_g, distance=distance, backend=backend, chunk=16, device=device)
    np.testing.assert_allclose(got.cmc, ref.cmc)
    assert got.mAP == pytest.approx(ref.mAP) and got.mINP == pytest.approx(ref.mINP)
    assert (got.num_valid_queries, got.num_skipped_queries) == (ref.num_valid_queries, ref.num_skipped_queries)


@pytest.mark.parametrize("backend, distance", [("torch", "euclidean"), ("faiss", "squared")])
def test_topk_cmc_exact_up_to_r_and_map_at_r(backend, distance, device):
    from reidlib.evaluation.topk import evaluate_topk

    if backend == "faiss":
        pytest.importorskip("faiss")
    rng = np.random.default_rng(4)
    query, gallery = feature_split(rng, 50), feature_split(rng, 200)
    distmat = dense(query, gallery, 0.5, distance == "squared")
    args = (query["pids"], gallery["pids"], query["camids"], gallery["camids"])
    ref = evaluate(distmat, *args)
    top_r = 12
    got = evaluate_topk(
        query, gallery, lambda_g=0.5, top_r=top_r, distance=distance, backend=backend, chunk=7, device=device
    )
    assert len(got.cmc) == top_r
    np.testing.assert_allclose(got.cmc, ref.cmc[:top_r])
    map_r, _ = truncated_ap_loop(distmat, *args, top_r)
    assert got.mAP == pytest.approx(map_r)
    assert got.mAP <= ref.mAP and got.mINP <= ref.mINP
    assert got.num_valid_queries == ref.num_valid_queries


def test_topk_rejects_faiss_for_euclidean_sum():
    from reidlib.errors import ConfigError
    from reidlib.evaluation.topk import evaluate_topk

    rng = np.random.default_rng(5)
    query, gallery = feature_split(rng, 5), feature_split(rng, 20)
    with pytest.raises(ConfigError, match="inner-product"):
        evaluate_topk(query, gallery, lambda_g=0.5, backend="faiss")
    with pytest.raises(ConfigError, match="top_r"):
        evaluate_topk(query, gallery, lambda_g=0.5, top_r=21)
