"""Memory banks: one slot per training image, held in buffers, updated after ``loss.backward()``.

SCL keeps three banks (docs/method.md, "Memory"):

- the **global bank** G (N, D) and the **part bank** L (N, P, D/P), read to pick each image's
  neighbours; after each step the batch's own slots move toward the new features,
  ``slot <- normalise(mu * old + (1 - mu) * new)`` (mu = 0.5 in the paper);
- the **mixture bank** X (N, D), read only by the loss. Both the global feature and the
  concatenated part feature write into it, one after the other, and each write reaches the
  anchor's own slot *and* the slots of its selected positives: ``X[y] <- normalise((X[y] + x) / 2)``.

The mixture bank's rules are all here: how it starts (:func:`fill_mixture`), who writes it and at
what scale (:func:`mixture_writes`, :func:`part_features`), and which slots a step writes
(:func:`mixture_slots`).

Shape letters: B batch, N slots, D feature dim, P stripes, K positives.

The order matters and is visible in the training step: features are computed, the loss reads
the banks, ``backward()`` runs, and only then do the banks change.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MemoryBank(nn.Module):
    """N slots of L2-normalised features of shape ``slot_shape``, held in a buffer.

    Normalisation is along the last dimension, so a part bank of shape (N, P, D/P) keeps each
    stripe on the unit sphere, as the model's stripe features are.

    Args:
        num_slots: N, the number of training images.
        slot_shape: the shape of one slot, ``(D,)`` or ``(P, D/P)``.
        momentum: mu in ``normalise(mu * old + (1 - mu) * new)``.
        dtype: storage dtype (float16 halves the memory of large banks).
    """

    def __init__(
        self,
        num_slots: int,
        slot_shape: tuple[int, ...],
        momentum: float = 0.5,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("features", torch.zeros(num_slots, *slot_shape, dtype=dtype))

    def __len__(self) -> int:
        return self.features.shape[0]

    @torch.no_grad()
    def fill(self, feats: Tensor) -> None:
        """Set every slot at once, e.g. from one pass of the model over the training set."""
        if feats.shape != self.features.shape:
            raise ValueError(f"fill expects {tuple(self.features.shape)}, got {tuple(feats.shape)}")
        self.features.copy_(F.normalize(feats.float(), dim=-1))

    @torch.no_grad()
    def update(self, idx: Tensor, feats: Tensor) -> None:
        """Move slots ``idx`` toward ``feats``: ``normalise(mu * old + (1 - mu) * new)``.

        Where an index repeats, the slot moves toward the mean of its new features, so the result
        does not depend on the order of the batch.

        Shape:
            idx: (B,) or (B, J) slot indices; feats: (B, *slot_shape), one feature per row of idx,
            shared by the J slots of that row.
        """
        if idx.dim() == 2:  # every slot in row b receives feats[b]
            feats = feats[:, None].expand(*idx.shape, *feats.shape[1:])
        idx = idx.reshape(-1)
        feats = feats.reshape(idx.numel(), *self.features.shape[1:]).float()
        slots, inverse = torch.unique(idx, return_inverse=True)
        summed = torch.zeros(len(slots), *feats.shape[1:], dtype=feats.dtype, device=feats.device)
        summed.index_add_(0, inverse, feats)
        counts = torch.bincount(inverse, minlength=len(slots)).to(feats.dtype)
        new = summed / counts.view(-1, *[1] * (feats.dim() - 1))  # mean where idx repeats
        old = self.features[slots].float()
        mixed = F.normalize(self.momentum * old + (1.0 - self.momentum) * new, dim=-1)
        self.features[slots] = mixed.to(self.features.dtype)


def build_banks(
    num_slots: int, feat_dim: int, num_parts: int, momentum: float, dtype: torch.dtype = torch.float32
) -> tuple[MemoryBank, MemoryBank, MemoryBank]:
    """The three SCL banks: global (N, D), part (N, P, D/P) and mixture (N, D).

    The mixture bank's momentum is 0.5, fixed by its rule ``(X[y] + x) / 2``; the global and part
    banks use ``momentum`` (the config's ``bank_momentum``).
    """
    global_bank = MemoryBank(num_slots, (feat_dim,), momentum, dtype)
    part_bank = MemoryBank(num_slots, (num_parts, feat_dim // num_parts), momentum, dtype)
    mixture_bank = MemoryBank(num_slots, (feat_dim,), 0.5, dtype)
    return global_bank, part_bank, mixture_bank


# ---------------------------------------------------------------------------------------------
# The mixture bank's rules (config section ``scl``)

# where the concatenated stripes are divided by sqrt(P), by ``scl.part_scale``
UNIT_STRIPES_IN = {"sqrt_p": (), "unit": ("write", "loss"), "unit_writes": ("write",), "unit_loss": ("loss",)}


def part_features(scl_cfg, p: Tensor, use: str) -> Tensor:
    """The concatenated stripes as they meet the mixture bank in ``use`` (``write`` or ``loss``):
    as they are (norm sqrt(P), the public code), or divided by sqrt(P) (unit norm) where
    ``scl.part_scale`` asks for it there.

    Shape:
        p: (B, P, d) -> (B, D)
    """
    p_cat = p.flatten(1)
    return p_cat / math.sqrt(p.shape[1]) if use in UNIT_STRIPES_IN[scl_cfg.part_scale] else p_cat


def mixture_writes(scl_cfg, g: Tensor, p: Tensor) -> list[Tensor]:
    """The features that write the mixture bank, in order (``scl.mixture_writers``): g then the
    concatenated stripes (``both``, the public code), one combined write ``normalise(g + stripes)``,
    or only one of them.

    Shape:
        g: (B, D), p: (B, P, d) -> a list of (B, D)
    """
    p_cat = part_features(scl_cfg, p, "write")
    if scl_cfg.mixture_writers == "combined":
        return [F.normalize(g + p_cat, dim=1)]
    return {"both": [g, p_cat], "global": [g], "parts": [p_cat]}[scl_cfg.mixture_writers]


@torch.no_grad()
def fill_mixture(bank: MemoryBank, scl_cfg, g: Tensor, p: Tensor) -> None:
    """Start the mixture bank (``scl.mixture_init``): ``zeros`` (the public code; the buffer already
    holds them), or ``features``, as if every slot had seen its own writes once.

    Shape:
        g: (N, D), p: (N, P, d), every training image's features in slot order
    """
    if scl_cfg.mixture_init != "features":
        return
    first, *rest = mixture_writes(scl_cfg, g, p)
    bank.fill(first)
    every = torch.arange(len(g), device=g.device)
    for feats in rest:
        bank.update(every, feats)


def mixture_slots(scl_cfg, pos_idx: Tensor, pos_mask: Tensor) -> Tensor:
    """The slots each anchor's writes reach (``scl.mixture_update``): its own and its kept positives
    (``positives``, the paper), or its own only (``own``). A dropped candidate points at the own
    slot, so it writes nothing new.

    Shape:
        pos_idx: (B, 1+K), own slot first; pos_mask: (B, 1+K) bool -> (B, 1+K) or (B, 1)
    """
    slots = torch.where(pos_mask, pos_idx, pos_idx[:, :1])
    return slots if scl_cfg.mixture_update == "positives" else slots[:, :1]
