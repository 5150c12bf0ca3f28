"""Cluster Contrast's pseudo-labels (reidlib.methods.cluster_contrast.clustering) against naive loops and dense DBSCAN.

The pieces of the Jaccard distance (rankings, reciprocal sets, the sparse join) are tested one by
one in test_graph.py; here their composition is checked against the public code's
``compute_jaccard_distance``, written as a loop over a dense matrix with test_graph's oracles.
"""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.cluster import DBSCAN
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from reidlib.methods.cluster_contrast import clustering
from tests.neighbours.test_graph import naive_jaccard, zhong_expansion

N, D, IDS = 60, 16, 10


def clustered_features(seed=0, n=N, ids=IDS, noise=0.5):
    """Unit features (n, D) of ``ids`` identities, and the identities (n,)."""
    g = torch.Generator().manual_seed(seed)
    pid = torch.randint(0, ids, (n,), generator=g)
    feats = F.normalize(torch.randn(ids, D, generator=g)[pid] + noise * torch.randn(n, D, generator=g), dim=1)
    return feats, pid


def public_jaccard(feats, k1, k2):
    """The public code's compute_jaccard_distance, dense, float64: its search returns each
    feature's k1 nearest with the feature itself first; the sets are Zhong's expansion over that
    ranking; softmax(-|f_i - f_j|^2) weights; query expansion over the first k2."""
    x = feats.double()
    dist = ((x[:, None] - x[None]) ** 2).sum(-1)  # (N, N)
    n = len(x)
    rank = [sorted(range(n), key=lambda j: (j != i, dist[i, j].item()))[:k1] for i in range(n)]
    sets = [sorted(zhong_expansion(rank, i, k1)) for i in range(n)]
    width = max(len(s) for s in sets)
    idx = torch.tensor([s + [s[0]] * (width - len(s)) for s in sets])
    valid = torch.tensor([[w < len(s) for w in range(width)] for s in sets])
    _, jaccard = naive_jaccard((idx, valid), dist.gather(1, idx), rank, k2)
    return jaccard.clamp_min(0.0)  # as the public code sets negative rounding to 0


def dense(pairs, n=N):
    rows, cols, dist = pairs
    out = torch.ones(n, n, dtype=torch.float64)
    out[rows, cols] = dist.double()
    return out


@pytest.mark.parametrize("k1,k2", [(8, 3), (12, 6), (5, 1)])
def test_jaccard_pairs_match_the_public_code(k1, k2):
    feats, _ = clustered_features()
    pairs = clustering.jaccard_pairs(feats, k1, k2)
    want = public_jaccard(feats, k1, k2)
    assert torch.allclose(dense(pairs), want, atol=1e-5)
    assert (want < 1).sum() == len(pairs[0])  # exactly the overlapping pairs are stored
    assert len(pairs[0]) < N * N  # sparse


# eps off the distances' frequent exact values (0.5 is S = 2/3, two equal sets' overlap), where
# float32 (the library) and float64 (the oracle) may round to either side
@pytest.mark.parametrize("eps,min_samples", [(0.6, 4), (0.45, 3), (0.7, 6)])
def test_pseudo_labels_equal_dense_dbscan(eps, min_samples):
    """DBSCAN on the sparse pairs within eps == DBSCAN on the dense public-code distance."""
    feats, _ = clustered_features(seed=1)
    labels = clustering.pseudo_labels(clustering.jaccard_pairs(feats, 12, 6), N, eps=eps, min_samples=min_samples)
    want = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit_predict(
        public_jaccard(feats, 12, 6).numpy()
    )
    assert labels.dtype == torch.long and torch.equal(labels, torch.from_numpy(want).long())
    assert clustering.num_clusters(labels) >= 2 and (labels == -1).any()  # a non-trivial case


def test_cluster_centroids_match_loop():
    feats, _ = clustered_features(seed=2)
    labels = torch.tensor([i % 4 if i % 7 else -1 for i in range(N)])
    got = clustering.cluster_centroids(feats, labels, 4)
    for c in range(4):
        members = [feats[i] for i in range(N) if labels[i] == c]
        assert torch.allclose(got[c], sum(members) / len(members), atol=1e-6)


# --- pk_batches -------------------------------------------------------------------------------


def some_labels(sizes, outliers=5, seed=0):
    """Shuffled labels: cluster c has sizes[c] members, plus ``outliers`` -1 entries."""
    labels = torch.tensor([c for c, n in enumerate(sizes) for _ in range(n)] + [-1] * outliers)
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


@pytest.mark.parametrize(
    "sizes,k,batch,steps", [([5, 9, 2, 12, 4, 7], 3, 6, 11), ([6, 3], 2, 8, 4), ([4] * 9, 4, 16, 5)]
)
def test_pk_batches(sizes, k, batch, steps):
    """P runs of K slots of one cluster a batch, no outlier; every cluster once per pass;
    a cluster's appearances walk through a shuffle of its members, cyclically."""
    labels = some_labels(sizes)
    out = clustering.pk_batches(labels, k, batch, steps, torch.Generator().manual_seed(3))
    assert out.shape == (steps, batch) and out.dtype == torch.long
    assert (labels[out] >= 0).all()  # outliers are left out
    chunks = out.reshape(-1, k)  # one chunk of K per cluster appearance, in order
    chunk_cluster = labels[chunks]
    assert (chunk_cluster == chunk_cluster[:, :1]).all()  # each run of K is one cluster
    order = chunk_cluster[:, 0].tolist()
    clusters = len(sizes)
    for start in range(0, len(order), clusters):  # each pass: every cluster once
        this_pass = order[start : start + clusters]
        assert len(set(this_pass)) == len(this_pass)
    for c, size in enumerate(sizes):
        seq = chunks[chunk_cluster[:, 0] == c].flatten().tolist()
        assert all(seq[t] == seq[t % size] for t in range(len(seq)))  # cyclic
        if len(seq) >= size:
            assert sorted(seq[:size]) == sorted(torch.nonzero(labels == c).flatten().tolist())


def test_pk_batches_seeded_and_empty():
    labels = some_labels([5, 6, 7, 8])
    draw = lambda seed: clustering.pk_batches(labels, 2, 4, 6, torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(draw(0), draw(0)) and not torch.equal(draw(0), draw(1))
    none = clustering.pk_batches(torch.full((9,), -1), 2, 4, 6, torch.Generator())
    assert none.shape == (0, 4)


# --- label_stats --------------------------------------------------------------------------------


def test_label_stats_match_loops():
    labels = torch.tensor([0, 0, 0, 1, 1, -1, 2, 2, 2, 2, -1, 1])
    pids = torch.tensor([5, 5, 6, 6, 6, 5, 7, 7, 7, 8, 8, 6])
    s = clustering.label_stats(labels, pids)
    pairs = list(itertools.combinations(range(len(labels)), 2))
    same_cluster = [(i, j) for i, j in pairs if labels[i] >= 0 and labels[i] == labels[j]]
    same_id = [(i, j) for i, j in pairs if pids[i] == pids[j]]
    correct = [(i, j) for i, j in same_cluster if pids[i] == pids[j]]
    assert s.pair_precision == pytest.approx(len(correct) / len(same_cluster))
    assert s.pair_recall == pytest.approx(len(correct) / len(same_id))
    assert (s.clusters, s.largest_cluster, s.outlier_share) == (3, 4, pytest.approx(2 / 12))
    singletons = np.array([0, 0, 0, 1, 1, 100, 2, 2, 2, 2, 101, 1])  # each outlier a cluster of its own
    assert s.cluster_ari == pytest.approx(adjusted_rand_score(pids.numpy(), singletons))
    assert s.cluster_nmi == pytest.approx(normalized_mutual_info_score(pids.numpy(), singletons))


def test_label_stats_without_clusters():
    s = clustering.label_stats(torch.full((6,), -1), torch.tensor([1, 1, 2, 2, 3, 3]))
    assert (s.clusters, s.largest_cluster, s.outlier_share, s.pair_precision, s.pair_recall) == (0, 0, 1.0, None, 0.0)
