"""How good SCL's selection is, measured with the training identities, which never reach the loss.

Shape letters: B batch, N memory slots, K positives besides the own slot, M negatives, S the most
slots one identity holds.

:class:`IdentityTable` lists each slot's *true matches*, the other slots of its identity (the
supervised ceiling, :class:`reidlib.methods.scl.miners.OracleMiner`, reads it too). :class:`SelectionStats`
sums, over an epoch's steps:

- the positives: precision, recall, how many come from the anchor's camera, and the recall of the
  true matches in *other* cameras (every test query is cross-camera);
- the negatives that are in fact the anchor's identity (false negatives), split by same / other camera;
- where each true match sits: kept as a positive, left alone (a dropped candidate, or in the band
  of nearest non-positives that no rule may call negative), among the negatives, or beyond them.

Without identities (camera folders) the figures that need them are None, unavailable, and the
others stay.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields
from typing import NamedTuple

import torch
from torch import Tensor

from reidlib.methods.scl.selection import Selection, member
from reidlib.neighbours import graph


class IdentityTable(NamedTuple):
    """Each slot's true matches: the other slots of its identity, padded to the largest identity."""

    slots: Tensor  # (N, S) slot indices (-1 pads)
    valid: Tensor  # (N, S) bool: a true match (not padding, not the slot itself)

    @classmethod
    @torch.no_grad()
    def build(cls, pids: Tensor) -> IdentityTable:
        """The table of a training split's identities ``pids`` (N,), with one sort (no (N, N) tensor)."""
        members, group_of = graph.group_members(pids)
        slots = members[group_of]  # (N, S)
        valid = (slots >= 0) & (slots != torch.arange(len(pids), device=pids.device)[:, None])
        return cls(slots, valid)


@dataclass
class SelectionStats:
    """Running sums over an epoch of how good the selected positives and negatives are.

    Positives are the neighbours that :attr:`Selection.pos_mask` keeps (the own slot excluded).
    Positives per anchor and the same-camera share need no identities; the other figures do.
    """

    anchors: int = 0
    pos_true: float = 0.0  # neighbours sharing the anchor's identity
    pos_same_cam: float = 0.0  # neighbours from the anchor's camera
    pos_count: int = 0  # neighbours selected
    neg_false: float = 0.0  # negatives that are in fact the anchor's identity
    neg_count: int = 0
    pos_cross_true: float = 0.0  # neighbours from another camera that share the identity
    pos_cross_count: int = 0  # neighbours from another camera
    true_total: int = 0  # the anchors' true matches (own slot excluded): recall's denominator
    candidates: int = 0  # neighbour columns offered (kept or not); 0 in warm-up
    cross_total: int = 0  # the anchors' true matches in another camera
    neg_false_same_cam: float = 0.0  # false negatives from the anchor's camera
    true_left_alone: float = 0.0  # true matches dropped as candidates or in the band
    true_beyond: float = 0.0  # true matches neither positive, left alone, nor negative

    @torch.no_grad()
    def add(self, sel: Selection, idx: Tensor, identities: IdentityTable | None, camids: Tensor) -> None:
        """Add a step's selection; ``identities`` None when they are unknown, which leaves the sums
        that need them at 0 (:meth:`summary` then reports them as None)."""
        anchor_cam = camids[idx][:, None]  # (B, 1)
        neighbours, kept = sel.pos_idx[:, 1:], sel.mask()[:, 1:]  # (B, K)
        same_cam = camids[neighbours] == anchor_cam
        self.anchors += len(idx)
        self.pos_same_cam += (same_cam & kept).sum().item()
        self.pos_count += int(kept.sum())
        self.candidates += neighbours.numel()
        self.pos_cross_count += int((kept & ~same_cam).sum())
        self.neg_count += sel.neg_idx.numel()
        if identities is None:
            return
        matches, valid = identities.slots[idx], identities.valid[idx]  # (B, S)
        other_cam = valid & (camids[matches.clamp_min(0)] != anchor_cam)  # true matches in another camera
        is_kept = member(matches, neighbours, kept) & valid
        left_alone = (member(matches, neighbours, ~kept) | member(matches, sel.ignored)) & valid & ~is_kept
        negative = member(matches, sel.neg_idx) & valid
        self.true_total += int(valid.sum())
        self.cross_total += int(other_cam.sum())
        self.pos_true += is_kept.sum().item()
        self.pos_cross_true += (is_kept & other_cam).sum().item()
        self.neg_false += negative.sum().item()
        self.neg_false_same_cam += (negative & ~other_cam).sum().item()
        self.true_left_alone += left_alone.sum().item()
        self.true_beyond += (valid & ~is_kept & ~left_alone & ~negative).sum().item()

    def as_tensor(self) -> Tensor:
        """The sums as one float64 tensor (to add them up over processes)."""
        return torch.tensor(astuple(self), dtype=torch.float64)

    @classmethod
    def from_tensor(cls, values: Tensor) -> SelectionStats:
        kinds = [f.type for f in fields(cls)]
        values = values.tolist() + [0.0] * (len(kinds) - len(values))  # a checkpoint saved with fewer sums
        return cls(*(int(v) if kind in (int, "int") else v for v, kind in zip(values, kinds)))

    def summary(self, identities: bool = True) -> dict[str, float | None]:
        """The epoch's figures; None where there is nothing to measure, and, with ``identities``
        False (unknown), for every figure that needs them, rather than a figure of fake labels.

        ``true_kept``, ``true_left_alone``, ``true_negative`` and ``true_beyond`` are the shares of
        the anchors' true matches in each place (they sum to 1)."""
        share = lambda a, b: a / b if b else None  # noqa: E731
        selecting = self.candidates > 0  # warm-up offers no neighbours: nothing to measure
        known = lambda value: value if identities else None  # noqa: E731
        where = selecting or self.true_left_alone > 0
        return {
            "pos_precision": known(share(self.pos_true, self.pos_count)),
            "pos_recall": known(share(self.pos_true, self.true_total) if selecting else None),
            "pos_cross_camera_precision": known(share(self.pos_cross_true, self.pos_cross_count)),
            "pos_cross_camera_recall": known(share(self.pos_cross_true, self.cross_total) if selecting else None),
            "pos_per_anchor": share(self.pos_count, self.anchors) if selecting else None,
            "pos_same_camera": share(self.pos_same_cam, self.pos_count),
            "neg_false_rate": known(share(self.neg_false, self.neg_count)),
            "neg_false_per_anchor": known(share(self.neg_false, self.anchors)),
            "neg_false_same_camera_per_anchor": known(share(self.neg_false_same_cam, self.anchors)),
            "neg_false_other_camera_per_anchor": known(share(self.neg_false - self.neg_false_same_cam, self.anchors)),
            "true_kept": known(share(self.pos_true, self.true_total) if where else None),
            "true_left_alone": known(share(self.true_left_alone, self.true_total) if where else None),
            "true_negative": known(share(self.neg_false, self.true_total) if where else None),
            "true_beyond": known(share(self.true_beyond, self.true_total) if where else None),
        }
