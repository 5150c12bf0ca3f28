"""Cluster scores and pair distances, against hand-computed cases."""

import numpy as np
import pytest

from reidlib.reports.analysis import cluster_scores, pair_distances, purity


def test_purity_hand_computed():
    # cluster 0 holds ids 1, 1, 2 (2 right); cluster 1 holds ids 2, 3 (1 right): 3 of 5
    assert purity([1, 1, 2, 2, 3], [0, 0, 0, 1, 1]) == pytest.approx(3 / 5)
    assert purity([5, 5, 7], [9, 9, 4]) == 1.0


def test_cluster_scores_on_separated_identities():
    rng = np.random.default_rng(0)
    pids = np.repeat([1, 2, 3, 0, 0], 4)  # three identities and 8 distractor images
    centres = rng.normal(size=(5, 8)) * 10
    x = centres[np.arange(20) // 4] + rng.normal(size=(20, 8)) * 0.01
    dist = np.linalg.norm(x[:, None] - x[None], axis=-1)
    rows = cluster_scores(dist, pids, np.array([1.0, 1e6]))
    assert rows[0] == pytest.approx({"threshold": 1.0, "clusters": 3, "purity": 1.0, "nmi": 1.0, "ari": 1.0})
    assert rows[1]["clusters"] == 1 and rows[1]["purity"] == pytest.approx(1 / 3) and rows[1]["ari"] == 0.0


def test_pair_distances_split():
    pids = np.array([1, 1, 2, 0, 0])
    camids = np.array([0, 1, 0, 0, 1])
    dist = np.arange(25, dtype=float).reshape(5, 5)
    pairs = pair_distances(dist, pids, camids)
    assert pairs["same id, other camera"].tolist() == [1.0]  # (0, 1)
    assert pairs["same id, same camera"].size == 0
    # distractors are one-off people: (3, 4) is a pair of two identities
    assert 19.0 in pairs["other id, other camera"]
    assert sum(len(v) for v in pairs.values()) == 10


def test_selection_quality_against_a_loop():
    import torch

    from reidlib.distances import combined_distance
    from reidlib.reports.analysis import selection_quality

    gen = torch.Generator().manual_seed(0)
    n, k, m = 40, 3, 10
    g = torch.nn.functional.normalize(torch.randn(n, 16, generator=gen), dim=1)
    p = torch.nn.functional.normalize(torch.randn(n, 4, 4, generator=gen), dim=-1)
    pids, cams = torch.arange(n) // 4, torch.arange(n) % 3
    anchors = torch.tensor([0, 5, 17, 33])
    got = selection_quality(g, p, cams, pids, anchors, k=k, m=m, lambda_g=0.5, lambda_c=0.1)
    true = same_cam = 0
    for a in anchors.tolist():
        d = combined_distance(
            g[a : a + 1], p[a : a + 1], g, p, lambda_g=0.5, lambda_c=0.1, q_camids=cams[a : a + 1], g_camids=cams
        )[0]
        d[a] = float("inf")
        nearest = d.argsort()[:k]
        true += int((pids[nearest] == pids[a]).sum())
        same_cam += int((cams[nearest] == cams[a]).sum())
    assert got["pos_precision"] == pytest.approx(true / (k * len(anchors)))
    assert got["pos_same_camera"] == pytest.approx(same_cam / (k * len(anchors)))


def test_trained_banks_from_a_run(tiny_synthetic, tmp_path):
    from reidlib.engine.trainer import train
    from reidlib.reports.analysis import trained_banks
    from tests.helpers import tiny_cfg

    assert trained_banks(tmp_path) is None  # no checkpoint
    train(tiny_cfg(tiny_synthetic, epochs=1), tmp_path / "run")
    g, p, epochs = trained_banks(tmp_path / "run")
    assert epochs == 1 and g.shape == (59, 32) and p.shape == (59, 4, 8)
    assert torch_allclose_unit(g)


def torch_allclose_unit(x) -> bool:
    return bool(((x.norm(dim=-1) - 1).abs() < 1e-4).all())
