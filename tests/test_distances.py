"""Distances against direct broadcasting and per-stripe loops."""

import numpy as np
import pytest
import torch

from reidlib.distances import (
    combined_distance,
    pairwise_sq_euclidean,
    part_sq_distance,
    query_gallery_distance,
)
from reidlib.errors import ConfigError


def feats(n, p=4, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, p * d, generator=g, dtype=torch.float64), torch.randn(n, p, d, generator=g, dtype=torch.float64)


def test_pairwise_matches_broadcast():
    x, _ = feats(6)
    y, _ = feats(9, seed=1)
    want = ((x[:, None] - y[None]) ** 2).sum(-1)
    assert torch.allclose(pairwise_sq_euclidean(x, y), want)


def test_part_distance_is_mean_over_stripes():
    _, xp = feats(3)
    _, yp = feats(7, seed=2)
    want = sum(((xp[:, None, s] - yp[None, :, s]) ** 2).sum(-1) for s in range(xp.shape[1])) / xp.shape[1]
    assert torch.allclose(part_sq_distance(xp, yp), want)


def test_combined_endpoints_and_mix():
    qg, qp = feats(3)
    gg, gp = feats(5, seed=3)
    g_only = combined_distance(qg, qp, gg, gp, lambda_g=1.0)
    p_only = combined_distance(qg, qp, gg, gp, lambda_g=0.0)
    assert torch.allclose(g_only, pairwise_sq_euclidean(qg, gg))
    assert torch.allclose(p_only, part_sq_distance(qp, gp))
    assert torch.allclose(combined_distance(qg, qp, gg, gp, lambda_g=0.3), 0.3 * g_only + 0.7 * p_only)


def test_euclidean_path():
    qg, qp = feats(3)
    gg, gp = feats(5, seed=3)
    got = combined_distance(qg, qp, gg, gp, lambda_g=0.5, squared=False)
    want = 0.5 * torch.cdist(qg, gg) + 0.5 * torch.cdist(qp.flatten(1), gp.flatten(1))
    assert torch.allclose(got, want)


def test_camera_penalty_changes_exactly_same_camera_pairs():
    qg, qp = feats(4)
    gg, gp = feats(6, seed=4)
    qc, gc = torch.tensor([0, 1, 2, 0]), torch.tensor([0, 0, 1, 2, 2, 1])
    plain = combined_distance(qg, qp, gg, gp, lambda_g=0.5, q_camids=qc, g_camids=gc)
    pen = combined_distance(qg, qp, gg, gp, lambda_g=0.5, camera_penalty=0.05, q_camids=qc, g_camids=gc)
    same = qc[:, None] == gc[None]
    assert torch.allclose((pen - plain)[same], torch.full((int(same.sum()),), 0.05, dtype=pen.dtype))
    assert torch.equal((pen - plain)[~same], torch.zeros(int((~same).sum()), dtype=pen.dtype))


def test_errors():
    qg, qp = feats(2)
    with pytest.raises(ConfigError, match="lambda_g"):
        combined_distance(qg, qp, qg, qp, lambda_g=1.5)
    with pytest.raises(ConfigError, match="camids"):
        combined_distance(qg, qp, qg, qp, lambda_g=0.5, camera_penalty=0.1)


def test_query_gallery_chunks_agree():
    qg, qp = feats(7)
    gg, gp = feats(11, seed=5)
    q = {"global": qg.float().numpy(), "parts": qp.float().numpy(), "camids": np.arange(7) % 3}
    g = {"global": gg.float().numpy(), "parts": gp.float().numpy(), "camids": np.arange(11) % 3}
    whole = query_gallery_distance(q, g, lambda_g=0.5, camera_penalty=0.1, chunk=100)
    parts = query_gallery_distance(q, g, lambda_g=0.5, camera_penalty=0.1, chunk=3)
    np.testing.assert_allclose(whole, parts, rtol=1e-6)
    assert whole.dtype == np.float32 and whole.shape == (7, 11)


@pytest.mark.parametrize("lambda_g", [0.0, 0.4, 1.0])
def test_unit_norm_shortcut_equals_the_general_formula(lambda_g):
    qg, qp = feats(6)
    gg, gp = feats(11, seed=5)
    unit = lambda x: torch.nn.functional.normalize(x, dim=-1)  # noqa: E731  rows, and each stripe
    qg, qp, gg, gp = unit(qg), unit(qp), unit(gg), unit(gp)
    qc, gc = torch.tensor([0, 1, 2, 0, 1, 2]), torch.arange(11) % 3
    kw = dict(lambda_g=lambda_g, camera_penalty=0.3, q_camids=qc, g_camids=gc)
    fast = combined_distance(qg, qp, gg, gp, unit_norm=True, **kw)
    assert torch.allclose(fast, combined_distance(qg, qp, gg, gp, **kw), atol=1e-12)
    with pytest.raises(ValueError, match="squared"):
        combined_distance(qg, qp, gg, gp, squared=False, unit_norm=True, lambda_g=lambda_g)
