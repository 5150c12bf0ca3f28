"""Cluster Contrast's pseudo-labels: DBSCAN on the k-reciprocal Jaccard distance, the clusters'
centroids, the P x K batches that pseudo-labels need, and how good the labels are.

Shape letters: N training images (slots), D feature dim, C clusters, K images of one cluster in a
batch (``num_instances``), P = B / K clusters in a batch, B batch, S steps, W the widest set.

Pure functions; :class:`reidlib.methods.cluster_contrast.learner.ClusterContrast` calls them at every epoch's
start, in this order::

    pairs = jaccard_pairs(g, k1, k2)                           # sparse (rows, cols, dist)
    labels = pseudo_labels(pairs, N, eps=..., min_samples=...)  # (N,), -1 an outlier
    memory.fill(cluster_centroids(g, labels, C))               # (C, D)
    batches = pk_batches(labels, K, B, S, generator)           # (S, B), outliers left out

The Jaccard distance is :mod:`reidlib.neighbours.graph`'s, the one SCL's Jaccard selectors use. It is sparse:
only pairs whose k-reciprocal vectors overlap are stored (the rest lie at distance 1, which is
never within DBSCAN's ``eps`` < 1), so no N x N matrix is built; the largest tensors are one
block of 512 x N distances for the rankings, and the overlapping pairs (about N W^2 of them).
The training identities reach only :func:`label_stats`, which *measures* the labels (and, when they
are unknown, reports the figures that need them as None).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse
import torch
from sklearn.cluster import DBSCAN
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from torch import Tensor

from reidlib.distances import pairwise_sq_euclidean
from reidlib.neighbours import graph


@torch.no_grad()
def jaccard_pairs(feats: Tensor, k1: int, k2: int) -> tuple[Tensor, Tensor, Tensor]:
    """The k-reciprocal Jaccard distance between features, as the public code's
    ``compute_jaccard_distance`` defines it, sparse.

    The public code's faiss search returns each feature's k1 nearest *with the feature itself*,
    so its k-reciprocal sets R(i, k1) are built over the slot and its k1 - 1 nearest (Zhong et
    al.'s, and SCL's ``jaccard`` rule, over the slot and k1 nearest); the ranking below has that
    width, so the sets are the public code's. The weights are ``softmax(-|f_i - f_j|^2)`` over each
    set, the query expansion is over the k2 nearest (the slot itself included).

    Args:
        feats: (N, D) unit features (the global feature).
        k1: the reciprocal sets' k; k2: the query expansion's width (k2 <= k1).

    Returns:
        ``(rows, cols, dist)`` of :func:`reidlib.neighbours.graph.jaccard_distance`: the overlapping pairs
        (each slot with itself included), sorted by row, then distance.
    """
    feats = feats.float()

    def distance_rows(rows: Tensor) -> Tensor:  # (b,) -> (b, N) squared Euclidean distances
        return pairwise_sq_euclidean(feats[rows.to(feats.device)], feats)

    ranking, _ = graph.slot_ranking(distance_rows, len(feats), k1 - 1)  # (N, k1), the slot first
    sets = graph.reciprocal_sets(ranking, k1)  # (N, W)
    return graph.jaccard_distance(sets, graph.set_distances(distance_rows, sets[0]), ranking, k2)


def pseudo_labels(pairs: tuple[Tensor, Tensor, Tensor], num_slots: int, *, eps: float, min_samples: int) -> Tensor:
    """DBSCAN (scikit-learn, a precomputed sparse distance) on the Jaccard pairs.

    Only the pairs within ``eps`` are handed over; with ``eps`` < 1 that is exactly what DBSCAN on
    the dense matrix would link (:func:`jaccard_pairs` leaves out pairs at distance 1).

    Args:
        pairs: ``(rows, cols, dist)`` from :func:`jaccard_pairs`, sorted by row, then distance.
        num_slots: N.
        eps, min_samples: DBSCAN's (``min_samples`` counts the slot itself).

    Returns:
        (N,) int64 on the CPU: clusters 0..C-1, -1 for the outliers (un-clustered images).
    """
    rows, cols, dist = (t.cpu() for t in pairs)
    near = dist <= eps
    rows, cols, dist = rows[near], cols[near], dist[near]
    indptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(torch.bincount(rows, minlength=num_slots), 0)])
    # built from its parts, so the order (by distance within a row, as scikit-learn wants it) and
    # the zero distances (each slot to itself) are kept
    matrix = scipy.sparse.csr_matrix((dist.numpy(), cols.numpy(), indptr.numpy()), shape=(num_slots, num_slots))
    labels = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit_predict(matrix)
    return torch.from_numpy(labels).long()


def num_clusters(labels: Tensor) -> int:
    """C: the number of clusters in ``labels`` (N,) (-1 marks an outlier)."""
    return int(labels.max()) + 1 if len(labels) else 0


def cluster_centroids(feats: Tensor, labels: Tensor, clusters: int) -> Tensor:
    """Each cluster's mean feature (outliers ignored), unnormalised (``MemoryBank.fill`` normalises).

    Shape:
        feats: (N, D), labels: (N,) -> (C, D)
    """
    keep = labels >= 0
    members = labels[keep].to(feats.device)
    sums = torch.zeros(clusters, feats.shape[1], dtype=torch.float32, device=feats.device)
    sums.index_add_(0, members, feats[keep.to(feats.device)].float())
    return sums / torch.bincount(members, minlength=clusters).clamp_min(1)[:, None]


def pk_batches(labels: Tensor, num_instances: int, batch_size: int, steps: int, generator: torch.Generator) -> Tensor:
    """``steps`` batches of P clusters x K images each; outliers are left out.

    As the public code's ``RandomMultipleGallerySampler``, every cluster is drawn equally often:
    the clusters come in passes, each pass every cluster once in a fresh random order, and each
    batch holds the next P of them (a batch repeats a cluster only where it straddles two passes,
    or when there are fewer than P clusters). A cluster's k-th appearance takes the next K of its
    members in a per-epoch shuffle, cyclically, so a cluster smaller than K repeats members and
    every member is seen before any is seen twice (the public code draws them at random,
    other cameras first).

    Args:
        labels: (N,) pseudo-labels, -1 an outlier.
        num_instances: K; batch_size: B, a multiple of K.
        steps: S, the batches to draw.
        generator: a CPU generator; the same state gives the same batches.

    Returns:
        (S, B) int64 slot indices, each batch P runs of K slots of one cluster; (0, B) when no
        image is clustered.
    """
    labels = labels.cpu()
    clustered = torch.nonzero(labels >= 0).squeeze(1)  # (n,)
    if not len(clustered) or not steps:
        return torch.empty(0, batch_size, dtype=torch.long)
    label = labels[clustered]
    clusters, k = num_clusters(labels), num_instances
    # each cluster's members, cluster by cluster, each cluster's in a random order
    members = clustered[
        torch.argsort(label.double() + torch.rand(len(label), generator=generator, dtype=torch.float64))
    ]
    sizes = torch.bincount(label, minlength=clusters)  # (C,)
    starts = torch.cumsum(sizes, 0) - sizes
    chunks = steps * (batch_size // k)
    passes = -(-chunks // clusters)
    order = torch.rand(passes, clusters, generator=generator).argsort(dim=1).flatten()[:chunks]  # a cluster per chunk
    appearance = torch.arange(chunks) // clusters  # the pass, which is the cluster's appearance
    offset = (appearance[:, None] * k + torch.arange(k)) % sizes[order][:, None]  # (chunks, K)
    return members[starts[order][:, None] + offset].reshape(steps, batch_size)


class LabelStats(NamedTuple):
    """How good an epoch's pseudo-labels are, measured against the hidden training identities.

    The first three need no identities; the others are None when the identities are unknown."""

    clusters: int  # C
    outlier_share: float  # un-clustered images (left out of the epoch) / N
    largest_cluster: int  # images in the largest cluster
    cluster_ari: float | None  # adjusted Rand index, each outlier its own cluster
    cluster_nmi: float | None  # normalised mutual information, likewise
    pair_precision: float | None  # same-cluster pairs of the same identity / same-cluster pairs
    pair_recall: float | None  # same-identity pairs in one cluster / same-identity pairs


def _pairs(counts: np.ndarray) -> int:
    """The pairs within groups of ``counts`` members: sum n (n - 1) / 2."""
    counts = counts.astype(np.int64)
    return int((counts * (counts - 1) // 2).sum())


def label_stats(labels: Tensor, pids: Tensor | None) -> LabelStats:
    """The pseudo-labels' diagnostics: clusters, outliers, the largest cluster, ARI and NMI, and the
    precision (the clustering analogue of SCL's positive precision) and recall of same-cluster pairs.

    ARI and NMI count each outlier as a cluster of its own, so leaving images out is not rewarded.
    ``pids`` None (identities unknown) leaves ARI, NMI, pair precision and recall at None.

    Shape:
        labels: (N,), -1 an outlier; pids: (N,) the training identities (never used to train).
    """
    clusters = num_clusters(labels)
    labels = labels.cpu().numpy()
    clustered = labels >= 0
    sizes = np.bincount(labels[clustered], minlength=clusters)
    outlier_share = float(1.0 - clustered.mean()) if len(labels) else 0.0
    largest = int(sizes.max()) if clusters else 0
    if pids is None:
        return LabelStats(clusters, outlier_share, largest, None, None, None, None)
    pids = pids.cpu().numpy()
    singletons = np.where(clustered, labels, clusters + np.arange(len(labels)))
    _, cells = np.unique(np.stack([labels[clustered], pids[clustered]]), axis=1, return_counts=True)  # (cluster, id)
    correct, same_cluster = _pairs(cells), _pairs(sizes)
    same_id = _pairs(np.unique(pids, return_counts=True)[1])
    return LabelStats(
        clusters=clusters,
        outlier_share=outlier_share,
        largest_cluster=largest,
        cluster_ari=float(adjusted_rand_score(pids, singletons)),
        cluster_nmi=float(normalized_mutual_info_score(pids, singletons)),
        pair_precision=correct / same_cluster if same_cluster else None,
        pair_recall=correct / same_id if same_id else None,
    )
