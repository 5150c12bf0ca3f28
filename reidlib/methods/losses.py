"""The methods' losses, pure functions of features, a memory and indices: the selective contrastive
loss (SCL) and Cluster Contrast's InfoNCE over cluster centroids (:func:`cluster_contrast_loss`).

Shape letters: B batch, N memory slots, D feature dim, K positives besides the own slot, M negatives,
C clusters.

For anchor i with feature x_i and selected slots ``[pos_i; neg_i]`` of the mixture bank X, the
logits are ``x_i . X[j] / tau`` and

    loss = sum_j c_j * mean_i( -log softmax(logits_i)_j ),   j over the 1 + K positives,
    c_0 = lambda_t (the own slot),   c_j = alpha * (1 - lambda_t) / K (each neighbour).

Each positive term keeps the other positives in its denominator (docs/method.md, "Loss").

Anchors may have fewer positives than K (a rule that drops candidates, :mod:`reidlib.methods.scl.miners`):
``pos_mask`` (B, 1+K) marks the kept columns. A dropped column leaves the softmax (it is neither
positive nor negative), and the anchor's neighbour weight is ``alpha * (1 - lambda_t) / K_i`` with
K_i its kept neighbours, so ``c`` still sums to ``lambda_t + alpha (1 - lambda_t)`` where K_i > 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from reidlib.config import SCLConfig

if TYPE_CHECKING:  # the loss reads a Selection's indices; importing the miners' package here would be circular
    from reidlib.methods.scl.selection import Selection


class SCLLosses(NamedTuple):
    total: Tensor
    part: Tensor
    global_: Tensor


def positive_weights(k: int, *, lambda_t: float, alpha: float) -> Tensor:
    """The weights ``c`` (1+K,) of the own slot and the K neighbours."""
    neighbour = alpha * (1.0 - lambda_t) / k if k else 0.0
    return torch.tensor([lambda_t] + [neighbour] * k, dtype=torch.float64)


def selective_contrastive_loss(
    feats: Tensor,
    bank: Tensor,
    pos_idx: Tensor,
    neg_idx: Tensor,
    *,
    temperature: float,
    lambda_t: float,
    alpha: float,
    pos_mask: Tensor | None = None,
) -> Tensor:
    """SCL's loss for one feature space against the mixture bank.

    Args:
        feats: (B, D) anchor features (the global feature, or the concatenated stripes).
        bank: (N, D) mixture bank; a buffer, so gradients flow only into ``feats``.
        pos_idx: (B, 1+K) positives, column 0 the anchor's own slot.
        neg_idx: (B, M) negatives.
        temperature: tau; logits are divided by it.
        lambda_t: weight of the own slot.
        alpha: scale of the neighbours' total weight.
        pos_mask: (B, 1+K) bool, the kept positives (column 0 must be True); None keeps all.

    Returns:
        A scalar tensor.
    """
    return _losses(
        feats[None], bank, pos_idx, neg_idx, temperature=temperature, lambda_t=lambda_t, alpha=alpha, pos_mask=pos_mask
    )[0]


def masked_positive_weights(pos_mask: Tensor, *, lambda_t: float, alpha: float) -> Tensor:
    """Per-anchor weights (B, 1+K): ``lambda_t`` on the own slot, ``alpha (1 - lambda_t) / K_i`` on
    each of the K_i kept neighbours, 0 on dropped columns."""
    kept = pos_mask[:, 1:].to(torch.float64)  # (B, K)
    per = alpha * (1.0 - lambda_t) / kept.sum(1, keepdim=True).clamp_min(1.0)
    own = torch.full_like(kept[:, :1], lambda_t)
    return torch.cat([own, kept * per], dim=1)


def _losses(
    feats: Tensor,
    bank: Tensor,
    pos_idx: Tensor,
    neg_idx: Tensor,
    *,
    temperature: float,
    lambda_t: float,
    alpha: float,
    pos_mask: Tensor | None = None,
) -> Tensor:
    """The loss of S feature spaces (S, B, D) against one gather of the bank -> (S,).

    The gathered slots (B, 1+K+M, D) are the largest tensor of the step (266 MB at the paper's
    B 64, M 500, D 2048), so both feature spaces share one gather and one batched product.
    """
    idx = torch.cat([pos_idx, neg_idx], dim=1)  # (B, J), J = 1+K+M
    targets = bank[idx].to(feats.dtype)  # (B, J, D)
    logits = torch.einsum("sbd,bjd->sbj", feats, targets) / temperature  # (S, B, J)
    num_pos = pos_idx.shape[1]
    if pos_mask is None:
        log_prob = F.log_softmax(logits, dim=-1)
        c = positive_weights(num_pos - 1, lambda_t=lambda_t, alpha=alpha).to(feats)  # (1+K,)
        return -(log_prob[..., :num_pos] * c).sum(dim=-1).mean(dim=-1)
    if not bool(pos_mask[:, 0].all()):
        raise ValueError("pos_mask[:, 0] (each anchor's own slot) must be True")
    dropped = torch.cat([~pos_mask, torch.zeros_like(neg_idx, dtype=torch.bool)], dim=1)  # (B, J)
    log_prob = F.log_softmax(logits.masked_fill(dropped, float("-inf")), dim=-1)
    c = masked_positive_weights(pos_mask, lambda_t=lambda_t, alpha=alpha).to(feats)  # (B, 1+K)
    terms = log_prob[..., :num_pos].masked_fill(~pos_mask, 0.0) * c  # (S, B, 1+K)
    return -terms.sum(dim=-1).mean(dim=-1)


def scl_total_loss(global_: Tensor, parts_cat: Tensor, bank: Tensor, sel: Selection, scl_cfg: SCLConfig) -> SCLLosses:
    """``lambda_p * L(parts) + (1 - lambda_p) * L(global)``, both against the mixture bank.

    Args:
        global_: (B, D) global features.
        parts_cat: (B, D) the P stripe features concatenated (divided by sqrt(P) under
            ``scl.part_scale: unit``; the caller scales them).
        bank: (N, D) the mixture bank.
        sel: the step's :class:`~reidlib.methods.scl.selection.Selection` (positives, negatives,
            kept positives).
        scl_cfg: config section ``scl``: ``lambda_p``, and ``temperature``, ``lambda_t``, ``alpha``
            as in :func:`selective_contrastive_loss`.

    Returns:
        :class:`SCLLosses` (total, part, global), scalars.
    """
    s = scl_cfg
    feats = torch.stack([parts_cat, global_])  # (2, B, D)
    part_loss, global_loss = _losses(
        feats,
        bank,
        sel.pos_idx,
        sel.neg_idx,
        temperature=s.temperature,
        lambda_t=s.lambda_t,
        alpha=s.alpha,
        pos_mask=sel.pos_mask,
    )
    return SCLLosses(s.lambda_p * part_loss + (1.0 - s.lambda_p) * global_loss, part_loss, global_loss)


class ClusterContrastLosses(NamedTuple):
    total: Tensor


def cluster_contrast_loss(feats: Tensor, centroids: Tensor, labels: Tensor, *, temperature: float) -> Tensor:
    """Cluster Contrast's loss: InfoNCE of each feature against every cluster centroid, its own
    cluster's the positive (Dai et al., ACCV 2022)::

        loss = mean_i( -log softmax_j(x_i . c_j / tau)[y_i] ),   j over all C centroids

    Args:
        feats: (B, D) unit features (the global feature).
        centroids: (C, D) the cluster memory; a buffer, so gradients flow only into ``feats``.
        labels: (B,) each anchor's cluster in [0, C): outliers never reach the loss (a -1 is an error).
        temperature: tau; logits are divided by it.

    Returns:
        A scalar tensor.
    """
    logits = feats @ centroids.to(feats.dtype).T / temperature  # (B, C)
    return F.cross_entropy(logits, labels)
