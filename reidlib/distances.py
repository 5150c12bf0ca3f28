"""Every distance reidlib uses, in one place; pure torch functions, device-agnostic.

Shape letters: B queries (or anchors), N gallery items (or memory slots), D feature dim,
P stripes, d = D / P stripe dim.

Two uses, two deliberate choices (docs/method.md):

- **Selection** (training) uses squared Euclidean distances, as the paper does:
  ``lambda_g * |g_i - G_j|^2 + (1 - lambda_g) * (1/P) sum_p |p_ip - L_jp|^2 + lambda_c * [same camera]``
  (weights :func:`selection_weights`, camera term :func:`camera_term`; the same distance as an
  inner product for faiss is :func:`reidlib.neighbours.faiss_index.embed`).
- **Evaluation** uses plain Euclidean distances, ``lambda_g * |g_q - g_g| + (1 - lambda_g) * |p_q - p_g|``
  with p the concatenated (D-dim) stripes, and no camera term: the standard protocol (the test
  distmat, block by block: :func:`reidlib.evaluation.evaluator.query_gallery_distance`). The original
  research code's test-time camera penalty is available only by asking for it by name
  (``lambda_c > 0``, config ``eval.camera_aware``), and every table then says so.
"""

from __future__ import annotations

import torch
from torch import Tensor

from reidlib.errors import ConfigError


def pairwise_sq_euclidean(x: Tensor, y: Tensor) -> Tensor:
    """``|x_i - y_j|^2`` for all pairs, via ``|x|^2 + |y|^2 - 2 x.y`` (clamped at 0).

    Shape:
        x: (B, D), y: (N, D) -> (B, N)
    """
    y = y.to(x.dtype)
    sq = x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1)[None] - 2.0 * x @ y.T
    return sq.clamp_min_(0.0)


def part_sq_distance(xp: Tensor, yp: Tensor) -> Tensor:
    """Mean over stripes of squared stripe distances, ``(1/P) sum_p |x_p - y_p|^2``.

    Summing the stripe distances is the squared distance of the concatenated stripes, so one
    matrix product does it (no loop over P, no (B, N, P) tensor).

    Shape:
        xp: (B, P, d), yp: (N, P, d) -> (B, N)
    """
    return pairwise_sq_euclidean(xp.flatten(1), yp.flatten(1)) / xp.shape[1]


def selection_weights(lambda_g: float, num_parts: int) -> tuple[float, float]:
    """The squared selection distance's weights ``(lambda_g, (1 - lambda_g) / P)``: the distance is
    ``w_g |g - G|^2 + w_p sum_p |p_p - L_p|^2`` (+ :func:`camera_term`)."""
    return lambda_g, (1.0 - lambda_g) / num_parts


def camera_term(lambda_c: float, q_camids: Tensor, g_camids: Tensor, *, dtype: torch.dtype, device) -> Tensor:
    """``lambda_c * [cam(i) = cam(j)]``: the distance added to same-camera pairs.

    Shape:
        q_camids: (B,); g_camids: (N,) for every pair -> (B, N), or (B, R) for each anchor's own
        candidates -> (B, R)
    """
    q_camids, g_camids = q_camids.to(device), g_camids.to(device)
    same = q_camids[:, None] == (g_camids if g_camids.dim() == 2 else g_camids[None, :])
    return lambda_c * same.to(dtype)


def _check(lambda_g: float, lambda_c: float, q_camids, g_camids) -> None:
    if not 0.0 <= lambda_g <= 1.0:
        raise ConfigError(f"scl.lambda_g must lie in [0, 1], got {lambda_g}")
    if lambda_c < 0:
        raise ConfigError(f"scl.lambda_c (the camera penalty) must be >= 0, got {lambda_c}")
    if lambda_c > 0 and (q_camids is None or g_camids is None):
        raise ConfigError("a camera penalty (scl.lambda_c > 0) needs q_camids and g_camids")


def combined_distance(
    q_global: Tensor,
    q_parts: Tensor,
    g_global: Tensor,
    g_parts: Tensor,
    *,
    lambda_g: float,
    squared: bool = True,
    unit_norm: bool = False,
    lambda_c: float = 0.0,
    q_camids: Tensor | None = None,
    g_camids: Tensor | None = None,
) -> Tensor:
    """``lambda_g * global + (1 - lambda_g) * part distance (+ lambda_c for same camera)``.

    Args:
        q_global: (B, D) query / anchor global features.
        q_parts: (B, P, d) query / anchor stripes.
        g_global: (N, D) gallery / bank global features.
        g_parts: (N, P, d) gallery / bank stripes.
        lambda_g: global share; 1 gives global only, 0 parts only.
        squared: True (selection): squared global distance and mean squared stripe distance.
            False (evaluation): Euclidean global distance and Euclidean distance of the
            concatenated stripes.
        unit_norm: (squared only) every global row and every stripe has unit norm, as the
            model's features and the banks' slots do; then ``|x - y|^2 = 2 - 2 x.y`` and the
            distance is ``2 - 2 (lambda_g g.G + (1 - lambda_g)/P p.L)``: two matrix products
            into one buffer, with no norms computed (the norms of N slots cost more than the
            products at MSMT17 size).
        lambda_c: the camera penalty, added where ``q_camids[i] == g_camids[j]``.
        q_camids: (B,) cameras, needed when lambda_c > 0.
        g_camids: (N,) cameras, needed when lambda_c > 0.

    Returns:
        (B, N) distances.
    """
    _check(lambda_g, lambda_c, q_camids, g_camids)
    if unit_norm and not squared:
        raise ValueError("unit_norm applies to the squared (selection) distance only")
    dist = torch.zeros(q_global.shape[0], g_global.shape[0], dtype=q_global.dtype, device=q_global.device)
    if unit_norm:  # 2 - 2 (w_g g.G + w_p p.L), accumulated in dist
        w_global, w_parts = selection_weights(lambda_g, q_parts.shape[1])
        if lambda_g > 0:
            dist.addmm_(q_global, g_global.to(q_global.dtype).T, alpha=w_global)
        if lambda_g < 1:
            flat = g_parts.flatten(1).to(q_global.dtype)  # (N, D)
            dist.addmm_(q_parts.flatten(1), flat.T, alpha=w_parts)
        dist.mul_(-2.0).add_(2.0).clamp_min_(0.0)
    else:
        if lambda_g > 0:
            g = pairwise_sq_euclidean(q_global, g_global)
            dist += lambda_g * (g if squared else g.sqrt())
        if lambda_g < 1:
            if squared:
                p = part_sq_distance(q_parts, g_parts)
            else:
                p = pairwise_sq_euclidean(q_parts.flatten(1), g_parts.flatten(1)).sqrt()
            dist += (1.0 - lambda_g) * p
    if lambda_c > 0:
        dist += camera_term(lambda_c, q_camids, g_camids, dtype=dist.dtype, device=dist.device)
    return dist


def candidate_distance(
    q_global: Tensor,
    q_parts: Tensor,
    c_global: Tensor,
    c_parts: Tensor,
    *,
    lambda_g: float,
    lambda_c: float = 0.0,
    q_camids: Tensor | None = None,
    c_camids: Tensor | None = None,
    c_global_sq: Tensor | None = None,
    c_parts_sq: Tensor | None = None,
    global_dot: Tensor | None = None,
    parts_dot: Tensor | None = None,
) -> Tensor:
    """The selection distance (squared, as :func:`combined_distance` with ``squared=True``) from
    each anchor to its own R candidate slots, e.g. to re-rank an approximate search exactly.

    Uses the same ``|x|^2 + |y|^2 - 2 x.y`` form as :func:`pairwise_sq_euclidean`, so the values
    agree with :func:`combined_distance` up to float rounding.

    Args:
        q_global: (B, D) anchors' global features.
        q_parts: (B, P, d) anchors' stripes.
        c_global: (B, R, D) each anchor's candidates' global features (float32).
        c_parts: (B, R, P*d) each anchor's candidates' stripes, concatenated (float32).
        lambda_g: global share of the distance.
        lambda_c: the camera penalty, added where ``q_camids[b] == c_camids[b, r]``.
        q_camids: (B,) anchors' cameras; c_camids: (B, R) candidates' cameras.
        c_global_sq, c_parts_sq: (B, R) the candidates' squared norms, if known (a searcher
            caches them per slot); computed from ``c_global`` / ``c_parts`` otherwise.
        global_dot: (B, R) each anchor's global feature against its candidates', if computed
            already; from ``c_global`` otherwise.
        parts_dot: (B, R) each anchor's stripes, concatenated, against its candidates' (the sum
            of their stripe-by-stripe inner products), if computed already; from ``c_parts`` otherwise.

    Returns:
        (B, R) distances.
    """
    _check(lambda_g, lambda_c, q_camids, c_camids)
    w_global, w_parts = selection_weights(lambda_g, q_parts.shape[1])
    q_cat = q_parts.flatten(1)  # (B, D)
    dist = torch.zeros(c_global.shape[:2], dtype=torch.float32, device=c_global.device)  # (B, R)
    if lambda_g > 0:
        dot = torch.einsum("bd,brd->br", q_global.float(), c_global) if global_dot is None else global_dot
        c_sq = torch.linalg.vector_norm(c_global, dim=-1).pow(2) if c_global_sq is None else c_global_sq
        sq = q_global.float().pow(2).sum(1, keepdim=True) + c_sq
        dist += w_global * (sq - 2.0 * dot).clamp_min_(0.0)
    if lambda_g < 1:
        dot = torch.einsum("bd,brd->br", q_cat.float(), c_parts) if parts_dot is None else parts_dot
        c_sq = torch.linalg.vector_norm(c_parts, dim=-1).pow(2) if c_parts_sq is None else c_parts_sq
        sq = q_cat.float().pow(2).sum(1, keepdim=True) + c_sq
        dist += w_parts * (sq - 2.0 * dot).clamp_min_(0.0)
    if lambda_c > 0:
        dist += camera_term(lambda_c, q_camids, c_camids, dtype=dist.dtype, device=dist.device)
    return dist
