"""Memory banks: one slot per training image, held in buffers, updated after ``loss.backward()``.

SCL keeps three banks (docs/method.md, "Memory"):

- the **global bank** G (N, D) and the **part bank** L (N, P, D/P), read to pick each image's
  neighbours; after each step the batch's own slots move toward the new features,
  ``slot <- normalise(mu * old + (1 - mu) * new)`` (mu = 0.5 in the paper);
- the **mixture bank** X (N, D), read only by the loss. Both the global feature and the
  concatenated part feature write into it, one after the other, and each write reaches the
  anchor's own slot *and* the slots of its selected positives: ``X[y] <- normalise((X[y] + x) / 2)``.

Shape letters: B batch, N slots, D feature dim, P stripes, K positives.

The order matters and is visible in the training step: features are computed, the loss reads
the banks, ``backward()`` runs, and only then do the banks change.
"""

from __future__ import annotations

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
