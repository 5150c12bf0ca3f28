"""How good SCL's selection is, measured with the training identities, which never reach the loss.

Shape letters: B batch, N memory slots, K positives besides the own slot, M negatives.

:class:`SelectionStats` sums, over an epoch's steps, the precision of the positives, how many come
from the anchor's camera, and how many negatives are in fact the anchor's identity. Without
identities (camera folders) the figures that need them are None, unavailable, and the others stay.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields

import torch
from torch import Tensor

from reidlib.methods.scl.selection import Selection


@dataclass
class SelectionStats:
    """Running sums over an epoch of how good the selected positives and negatives are.

    Measured with the training identities, which never reach the loss. Positives are the
    neighbours that :attr:`Selection.pos_mask` keeps (the own slot excluded). Positives per anchor
    and the same-camera share need no identities; the other figures do.
    """

    anchors: int = 0
    pos_true: float = 0.0  # neighbours sharing the anchor's identity
    pos_same_cam: float = 0.0  # neighbours from the anchor's camera
    pos_count: int = 0  # neighbours selected
    neg_false: float = 0.0  # negatives that are in fact the anchor's identity
    neg_count: int = 0
    pos_cross_true: float = 0.0  # neighbours from another camera that share the identity
    pos_cross_count: int = 0  # neighbours from another camera
    true_total: int = 0  # the anchors' same-identity slots (own excluded): recall's denominator
    candidates: int = 0  # neighbour columns offered (kept or not); 0 in warm-up

    @torch.no_grad()
    def add(self, sel: Selection, idx: Tensor, pids: Tensor | None, camids: Tensor) -> None:
        """Add a step's selection; ``pids`` (N,) None when the identities are unknown, which leaves
        the sums that need them at 0 (:meth:`summary` then reports them as None)."""
        anchor_cam = camids[idx][:, None]  # (B, 1)
        neighbours, kept = sel.pos_idx[:, 1:], sel.mask()[:, 1:]  # (B, K)
        same_cam = camids[neighbours] == anchor_cam
        self.anchors += len(idx)
        self.pos_same_cam += (same_cam & kept).sum().item()
        self.pos_count += int(kept.sum())
        self.candidates += neighbours.numel()
        self.pos_cross_count += int((kept & ~same_cam).sum())
        self.neg_count += sel.neg_idx.numel()
        if pids is None:
            return
        anchor_pid = pids[idx][:, None]  # (B, 1)
        true = (pids[neighbours] == anchor_pid) & kept
        self.pos_true += true.sum().item()
        self.pos_cross_true += (true & ~same_cam).sum().item()
        per_pid = torch.bincount(pids - pids.min())  # slots per identity: O(N), not a (B, N) comparison
        self.true_total += int(per_pid[pids[idx] - pids.min()].sum()) - len(idx)
        self.neg_false += (pids[sel.neg_idx] == anchor_pid).sum().item()

    def as_tensor(self) -> Tensor:
        """The sums as one float64 tensor (to add them up over processes)."""
        return torch.tensor(astuple(self), dtype=torch.float64)

    @classmethod
    def from_tensor(cls, values: Tensor) -> SelectionStats:
        kinds = [f.type for f in fields(cls)]
        return cls(*(int(v) if kind in (int, "int") else v for v, kind in zip(values.tolist(), kinds)))

    def summary(self, identities: bool = True) -> dict[str, float | None]:
        """The epoch's figures; None where there is nothing to measure, and, with ``identities``
        False (unknown), for every figure that needs them, rather than a figure of fake labels."""
        share = lambda a, b: a / b if b else None  # noqa: E731
        selecting = self.candidates > 0  # warm-up offers no neighbours: nothing to measure
        known = lambda value: value if identities else None  # noqa: E731
        return {
            "pos_precision": known(share(self.pos_true, self.pos_count)),
            "pos_recall": known(share(self.pos_true, self.true_total) if selecting else None),
            "pos_cross_camera_precision": known(share(self.pos_cross_true, self.pos_cross_count)),
            "pos_per_anchor": share(self.pos_count, self.anchors) if selecting else None,
            "pos_same_camera": share(self.pos_same_cam, self.pos_count),
            "neg_false_rate": known(share(self.neg_false, self.neg_count)),
            "neg_false_per_anchor": known(share(self.neg_false, self.anchors)),
        }
