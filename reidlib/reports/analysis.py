"""Looking inside the learned features: clusters against identities, and distance distributions.

The visualisation notebook is a view over these functions. They use the test split's identities
to *measure* what training did, as evaluation does; nothing here feeds back into training.
Shape letters: n test images (query + gallery), D dim, P parts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import AgglomerativeClustering
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from reidlib.config import Config
from reidlib.data import ReidData
from reidlib.distances import combined_distance
from reidlib.errors import RunDirError
from reidlib.evaluation.evaluator import evaluate_model, query_gallery_distance
from reidlib.methods.scl.diagnostics import IdentityTable, SelectionStats
from reidlib.methods.scl.selection import select_neighbours
from reidlib.model import make_model
from reidlib.utils import runs
from reidlib.utils.torch_env import seed_everything, setup_torch

FEATURES_KEYS = ("global", "parts", "pids", "camids", "paths")

__all__ = [
    "load_test_features",
    "initial_model",
    "untrained_test_features",
    "test_set_distance",
    "purity",
    "cluster_scores",
    "pair_distances",
    "trained_banks",
    "selection_quality",
]


def _test_set(query: dict[str, np.ndarray], gallery: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Query then gallery as one set, with ``is_query`` marking which is which."""
    out = {key: np.concatenate([query[key], gallery[key]]) for key in FEATURES_KEYS}
    out["is_query"] = np.arange(len(out["pids"])) < len(query["pids"])
    return out


def load_test_features(run_dir: str | Path) -> dict[str, np.ndarray]:
    """The run's query and gallery features (``features.npz``) as one test set.

    Returns:
        ``global`` (n, D), ``parts`` (n, P, D/P), ``pids``, ``camids``, ``paths`` and ``is_query``.
    """
    path = Path(run_dir) / runs.FEATURES
    if not path.is_file():
        raise RunDirError(f"{path} not found: has {run_dir} finished training?")
    with np.load(path) as npz:
        query = {key: npz[f"query_{key}"] for key in FEATURES_KEYS}
        gallery = {key: npz[f"gallery_{key}"] for key in FEATURES_KEYS}
    return _test_set(query, gallery)


def initial_model(cfg: Config) -> tuple[torch.nn.Module, torch.device]:
    """The model a run with ``cfg`` starts from: same seed, so the same initial weights."""
    device = setup_torch(cfg)
    seed_everything(cfg.train.seed)  # as train() does before it builds the model
    return make_model(cfg, device), device


def untrained_test_features(cfg: Config, data: ReidData) -> dict[str, np.ndarray]:
    """Test-set features of the model a run *started* from (:func:`initial_model`)."""
    model, device = initial_model(cfg)
    with torch.no_grad():
        _, query, gallery = evaluate_model(model, cfg, data, device)
    return _test_set(query, gallery)


def test_set_distance(feats: dict[str, np.ndarray], lambda_g: float) -> np.ndarray:
    """(n, n) combined distance (the evaluation's, no camera penalty) between all test images."""
    return query_gallery_distance(feats, feats, lambda_g=lambda_g)


def purity(true_labels: np.ndarray, cluster_labels: np.ndarray) -> float:
    """Share of images whose cluster's most common true label is their own."""
    true_labels, cluster_labels = np.asarray(true_labels), np.asarray(cluster_labels)
    _, t = np.unique(true_labels, return_inverse=True)
    _, c = np.unique(cluster_labels, return_inverse=True)
    table = np.zeros((c.max() + 1, t.max() + 1), dtype=np.int64)  # (clusters, identities)
    np.add.at(table, (c, t), 1)
    return float(table.max(axis=1).sum() / len(true_labels))


def cluster_scores(
    dist: np.ndarray, pids: np.ndarray, thresholds: np.ndarray, linkage: str = "average"
) -> list[dict[str, float]]:
    """Agglomerative clusters of a precomputed distance at each threshold, scored against ``pids``.

    Distractors (pid 0) are left out: they are one-off people, not one identity. Purity alone
    rewards many tiny clusters, so NMI and ARI sit beside it, with the number of clusters against
    the number of identities.

    Returns:
        one dict per threshold: ``threshold``, ``clusters``, ``purity``, ``nmi``, ``ari``.
    """
    keep = np.asarray(pids) != 0
    dist, pids = dist[np.ix_(keep, keep)], np.asarray(pids)[keep]
    rows = []
    for threshold in thresholds:
        labels = AgglomerativeClustering(
            n_clusters=None, metric="precomputed", linkage=linkage, distance_threshold=float(threshold)
        ).fit_predict(dist)
        rows.append(
            {
                "threshold": float(threshold),
                "clusters": int(labels.max() + 1),
                "purity": purity(pids, labels),
                "nmi": float(normalized_mutual_info_score(pids, labels)),
                "ari": float(adjusted_rand_score(pids, labels)),
            }
        )
    return rows


def pair_distances(dist: np.ndarray, pids: np.ndarray, camids: np.ndarray) -> dict[str, np.ndarray]:
    """Distances of all distinct pairs, split by same / different identity and camera.

    Distractors (pid 0) are one-off people: a pair of two distractors counts as two identities.

    Returns:
        ``same id, same camera``, ``same id, other camera``, ``other id, same camera``,
        ``other id, other camera``: 1-D arrays.
    """
    i, j = np.triu_indices(len(pids), k=1)
    same_id = (pids[i] == pids[j]) & (pids[i] != 0)
    same_cam = camids[i] == camids[j]
    d = dist[i, j]
    return {
        "same id, same camera": d[same_id & same_cam],
        "same id, other camera": d[same_id & ~same_cam],
        "other id, same camera": d[~same_id & same_cam],
        "other id, other camera": d[~same_id & ~same_cam],
    }


def trained_banks(run_dir: str | Path) -> tuple[torch.Tensor, torch.Tensor, int] | None:
    """A run's global and part banks, (N, D) and (N, P, d) float32, and the epochs they have seen,
    from its newest checkpoint; None when the run has none."""
    state = runs.load_checkpoint(Path(run_dir))
    if state is None or "global_bank" not in state:
        return None
    return state["global_bank"]["features"].float(), state["part_bank"]["features"].float(), int(state["epoch"])


def selection_quality(
    global_: torch.Tensor,
    parts: torch.Tensor,
    camids: torch.Tensor,
    pids: torch.Tensor,
    anchors: torch.Tensor,
    *,
    k: int,
    m: int,
    lambda_g: float,
    lambda_c: float,
) -> dict[str, float | None]:
    """How good the paper's selection (k nearest, next m negatives) is for ``anchors`` over banks
    ``global_`` (N, D) and ``parts`` (N, P, d): the training diagnostics' summary
    (:class:`reidlib.methods.scl.diagnostics.SelectionStats`: positive precision, recall, same-camera share...)."""
    rows = anchors.long()
    dist = combined_distance(
        global_[rows],
        parts[rows],
        global_,
        parts,
        lambda_g=lambda_g,
        lambda_c=lambda_c,
        q_camids=camids[rows],
        g_camids=camids,
    )
    stats = SelectionStats()
    stats.add(select_neighbours(dist, rows, k, m), rows, IdentityTable.build(pids), camids)
    return stats.summary()
