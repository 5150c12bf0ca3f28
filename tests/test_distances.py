"""Distances against direct broadcasting and per-stripe loops."""

import numpy as np
import pytest
import torch

from reidlib.distances import (
    camera_term,
    candidate_distance,
    combined_distance,
    pairwise_sq_euclidean,
    part_sq_distance,
    selection_weights,
)
from reidlib.errors import ConfigError
from reidlib.evaluation.evaluator import query_gallery_distance


def feats(n, p=4, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, p * d, generator=g, dtype=torch.float64), torch.randn(
        n, p, d, generator=g, dtype=torch.float64
    )


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


def test_camera_penalty_changes_exactly_same_camera_pairs(device):
    qg, qp = (x.to(device) for x in feats(4))
    gg, gp = (x.to(device) for x in feats(6, seed=4))
    qc, gc = torch.tensor([0, 1, 2, 0], device=device), torch.tensor([0, 0, 1, 2, 2, 1], device=device)
    plain = combined_distance(qg, qp, gg, gp, lambda_g=0.5, q_camids=qc, g_camids=gc)
    pen = combined_distance(qg, qp, gg, gp, lambda_g=0.5, lambda_c=0.05, q_camids=qc, g_camids=gc)
    assert pen.device.type == device.type
    plain, pen, qc, gc = plain.cpu(), pen.cpu(), qc.cpu(), gc.cpu()
    same = qc[:, None] == gc[None]
    assert torch.allclose((pen - plain)[same], torch.full((int(same.sum()),), 0.05, dtype=pen.dtype))
    assert torch.equal((pen - plain)[~same], torch.zeros(int((~same).sum()), dtype=pen.dtype))


def test_camera_term_against_a_loop():
    """lambda_c on same-camera pairs, 0 elsewhere: for every pair (N,) and per anchor (B, R)."""
    qc, gc = torch.tensor([0, 1, 2, 0]), torch.tensor([0, 0, 1, 2, 2, 1])
    pairs = camera_term(0.05, qc, gc, dtype=torch.float64, device="cpu")
    want = torch.tensor([[0.05 if int(q) == int(g) else 0.0 for g in gc] for q in qc], dtype=torch.float64)
    assert pairs.dtype == torch.float64 and torch.equal(pairs, want)
    cand = torch.tensor([[0, 2], [5, 3], [3, 1], [1, 4]])  # (B, R) slot indices
    per_anchor = camera_term(0.05, qc, gc[cand], dtype=torch.float64, device="cpu")
    assert torch.equal(per_anchor, want.gather(1, cand))


def test_selection_weights_and_their_users():
    """(lambda_g, (1 - lambda_g) / P), and both squared selection paths add the camera term alike."""
    assert selection_weights(0.3, 4) == (0.3, 0.7 / 4)
    qg, qp, gg, gp = (x.float() for x in (*feats(4), *feats(6, seed=4)))
    qc, gc = torch.tensor([0, 1, 2, 0]), torch.tensor([0, 0, 1, 2, 2, 1])
    full = combined_distance(qg, qp, gg, gp, lambda_g=0.3, lambda_c=0.2, q_camids=qc, g_camids=gc)
    cand = torch.tensor([[0, 2], [5, 3], [3, 1], [1, 4]])
    got = candidate_distance(
        qg, qp, gg[cand], gp[cand].flatten(2), lambda_g=0.3, lambda_c=0.2, q_camids=qc, c_camids=gc[cand]
    )
    assert torch.allclose(got, full.gather(1, cand), atol=1e-4)


def test_errors():
    qg, qp = feats(2)
    with pytest.raises(ConfigError, match=r"scl\.lambda_g"):
        combined_distance(qg, qp, qg, qp, lambda_g=1.5)
    with pytest.raises(ConfigError, match=r"scl\.lambda_c"):
        combined_distance(qg, qp, qg, qp, lambda_g=0.5, lambda_c=-0.1)
    with pytest.raises(ConfigError, match="camids"):
        combined_distance(qg, qp, qg, qp, lambda_g=0.5, lambda_c=0.1)


def test_query_gallery_chunks_agree():
    qg, qp = feats(7)
    gg, gp = feats(11, seed=5)
    q = {"global": qg.float().numpy(), "parts": qp.float().numpy(), "camids": np.arange(7) % 3}
    g = {"global": gg.float().numpy(), "parts": gp.float().numpy(), "camids": np.arange(11) % 3}
    whole = query_gallery_distance(q, g, lambda_g=0.5, lambda_c=0.1, chunk=100)
    parts = query_gallery_distance(q, g, lambda_g=0.5, lambda_c=0.1, chunk=3)
    np.testing.assert_allclose(whole, parts, rtol=1e-6)
    assert whole.dtype == np.float32 and whole.shape == (7, 11)


@pytest.mark.parametrize("lambda_g", [0.0, 0.4, 1.0])
def test_unit_norm_shortcut_equals_the_general_formula(lambda_g, device):
    qg, qp = feats(6)
    gg, gp = feats(11, seed=5)
    unit = lambda x: torch.nn.functional.normalize(x.to(device), dim=-1)  # noqa: E731  rows, and each stripe
    qg, qp, gg, gp = unit(qg), unit(qp), unit(gg), unit(gp)
    qc, gc = torch.tensor([0, 1, 2, 0, 1, 2], device=device), torch.arange(11, device=device) % 3
    kw = dict(lambda_g=lambda_g, lambda_c=0.3, q_camids=qc, g_camids=gc)
    fast = combined_distance(qg, qp, gg, gp, unit_norm=True, **kw)
    assert torch.allclose(fast, combined_distance(qg, qp, gg, gp, **kw), atol=1e-12)
    with pytest.raises(ValueError, match="squared"):
        combined_distance(qg, qp, gg, gp, squared=False, unit_norm=True, lambda_g=lambda_g)
