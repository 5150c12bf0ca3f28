"""SCL's selection distance over the memory banks: one object, built once per epoch by the method
and handed to the searcher, the miners and the slot graph, so that the distance is written once
and its weights travel down, never back up.

Shape letters: B anchors, N memory slots, D feature dim, P stripes, d = D / P, C cameras,
R candidates per anchor, E = 2D + C embedding dim.

    d(i, j) = lambda_g |g_i - G_j|^2 + (1 - lambda_g) (1/P) sum_p |p_ip - L_jp|^2 + lambda_c [cam(i) = cam(j)]

(:func:`reidlib.distances.combined_distance`), where, with ``debias``, each camera's mean (and
spread) is first removed from the anchors and the slots alike and the features renormalised
(:class:`CameraDebias`; "Exploring the camera bias of person re-identification", ICLR 2025).

The object reads the banks as they are at each call (MemoryBank buffers are updated in place
after every step); only the debiasing statistics are fitted once, when it is built. What asks it:

- :meth:`SelectionDistance.to_slots`: the (B, N) distances to every slot (the miners' checks),
  a block of ``chunk`` slots at a time by :func:`reidlib.neighbours.exact.distance_matrix`;
- :meth:`SelectionDistance.nearest`: the ``count`` nearest slots per anchor by the same blocked
  loop (:class:`reidlib.neighbours.searchers.TorchSearcher`);
- :meth:`SelectionDistance.to_candidates` and :meth:`SelectionDistance.to_rows`: the distance to
  each anchor's own R candidates, from the banks or from rows gathered already (the exact
  re-ranking of a faiss index's candidates);
- :meth:`SelectionDistance.embed`: the distance as an inner product for faiss
  (:func:`reidlib.neighbours.faiss_index.embed`);
- :meth:`SelectionDistance.slot_rows` and :meth:`SelectionDistance.stripe_distances`: slot-to-slot
  rows for the per-epoch graph, and stripe-by-stripe distances for the part agreement check.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from reidlib.distances import candidate_distance, combined_distance
from reidlib.neighbours import exact
from reidlib.neighbours.faiss_index import SLOT_CHUNK, embed

DEBIAS = {"none": None, "mean": False, "mean_std": True}  # scl.camera_debias -> CameraDebias's scale


def bank_features(bank) -> Tensor:
    """A MemoryBank's buffer (read at each call, so in-place updates are seen) or a tensor."""
    return getattr(bank, "features", bank)


def scratch(buffers: dict[str, Tensor], name: str, shape, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A reused scratch tensor of ``shape`` from ``buffers`` (grown when too small).

    Fresh 100 MB allocations page-fault on every call, which costs more than the work done in them.
    """
    size = math.prod(shape)
    buf = buffers.get(name)
    if buf is None or buf.numel() < size or buf.dtype != dtype or buf.device != device:
        buf = buffers[name] = torch.empty(size, dtype=dtype, device=device)
    return buf[:size].view(shape)


def block_diagonal(p: Tensor) -> Tensor:
    """Stripes (B, P, d) as (B, P d, P) columns, stripe s in column s and zeros elsewhere: rows of
    concatenated stripes (B, R, P d) times it give each row's inner products stripe by stripe,
    (B, R, P), in one batched product over rows read once (an einsum over (B, R, P, d) copies
    them)."""
    num, parts, dim = p.shape
    out = p.new_zeros(num, parts, dim, parts, dtype=torch.float32)
    stripe = torch.arange(parts, device=p.device)
    out[:, stripe, :, stripe] = p.float().transpose(0, 1)
    return out.view(num, parts * dim, parts)


class CameraDebias:
    """Remove each camera's mean (and, with ``scale``, divide by its per-dimension spread) from
    unit features, then renormalise along the last dimension.

    The statistics are fitted once (:meth:`fit`, on the banks at the start of an epoch) and
    applied to the anchors and to the slots alike, each with its own camera's statistics.

    Shape:
        feats: (n, ..., d) with the last dimension normalised (a global bank (n, D), or a part
        bank (n, P, d), stripe by stripe); cams: (n,) (or any shape that indexes feats' rows).
    """

    def __init__(self, mean: Tensor, std: Tensor | None) -> None:
        self.mean, self.std = mean, std  # (C, ..., d)

    @classmethod
    @torch.no_grad()
    def fit(cls, feats: Tensor, cams: Tensor, num_cams: int, scale: bool = False) -> CameraDebias:
        feats = feats.float()
        counts = torch.bincount(cams, minlength=num_cams).clamp_min(1).to(feats.dtype)
        shape = (num_cams, *feats.shape[1:])
        view = (-1, *[1] * (feats.dim() - 1))
        mean = torch.zeros(shape, device=feats.device).index_add_(0, cams, feats) / counts.view(view)
        std = None
        if scale:
            var = torch.zeros(shape, device=feats.device).index_add_(0, cams, (feats - mean[cams]) ** 2) / counts.view(
                view
            )
            std = var.sqrt().clamp_min(1e-6)
        return cls(mean, std)

    @torch.no_grad()
    def __call__(self, feats: Tensor, cams: Tensor) -> Tensor:
        out = feats.float() - self.mean.to(feats.device)[cams]
        if self.std is not None:
            out = out / self.std.to(feats.device)[cams]
        return F.normalize(out, dim=-1)


class SelectionDistance:
    """The selection distance from anchors to the slots of the global and part banks.

    Args:
        global_bank: MemoryBank or (N, D) tensor; part_bank: MemoryBank or (N, P, d) tensor; both
            read at every call.
        camids: (N,) the slots' cameras.
        lambda_g: global share (``scl.lambda_g``); lambda_c: the camera penalty, as scheduled for
            the epoch (:func:`reidlib.methods.scl.miners.lambda_c_at`).
        debias: ``none`` | ``mean`` | ``mean_std`` (``scl.camera_debias``), fitted on the banks now.
        chunk: slots per block of the exact loop (a float16 bank is converted one block at a time,
            so a 1M-slot float16 bank never needs a full float32 copy).
    """

    def __init__(
        self,
        global_bank,
        part_bank,
        camids: Tensor,
        *,
        lambda_g: float,
        lambda_c: float,
        debias: str = "none",
        chunk: int = SLOT_CHUNK,
    ) -> None:
        self.global_bank, self.part_bank, self.camids = global_bank, part_bank, camids
        self.lambda_g, self.lambda_c, self.chunk = lambda_g, lambda_c, chunk
        self.num_cams = int(camids.max()) + 1 if len(camids) else 0
        self.debias_g = self.debias_p = None
        if DEBIAS[debias] is not None:
            scale = DEBIAS[debias]
            self.debias_g = CameraDebias.fit(bank_features(global_bank), camids, self.num_cams, scale=scale)
            self.debias_p = CameraDebias.fit(bank_features(part_bank), camids, self.num_cams, scale=scale)
        self._buffers: dict[str, Tensor] = {}

    def __len__(self) -> int:
        return len(self.camids)

    @property
    def device(self) -> torch.device:
        return bank_features(self.global_bank).device

    @property
    def dtype(self) -> torch.dtype:
        """The banks' dtype (float16 banks keep half the memory)."""
        return bank_features(self.global_bank).dtype

    @property
    def feat_dim(self) -> int:
        """D, the global feature's (and the concatenated stripes') dimension."""
        return bank_features(self.global_bank).shape[1]

    @property
    def num_parts(self) -> int:
        """P, the stripes of a slot."""
        return bank_features(self.part_bank).shape[1]

    # -- features as the distance sees them ---------------------------------------------------

    def anchors(self, g: Tensor, p: Tensor, cams: Tensor) -> tuple[Tensor, Tensor]:
        """Anchors' features as the distance sees them: (B, D), (B, P, d) float32."""
        if self.debias_g is None:
            return g.float(), p.float()
        return self.debias_g(g, cams), self.debias_p(p, cams)

    def _as_float(self, name: str, block: Tensor) -> Tensor:
        """A float32 view of a bank block: the block itself, or a float16 block copied into a
        reused buffer (a fresh 128 MB tensor per block page-faults, which costs more than the copy)."""
        if block.dtype == torch.float32:
            return block
        return scratch(self._buffers, name, block.shape, torch.float32, block.device).copy_(block)

    def slots(self, items: slice) -> tuple[Tensor, Tensor, bool]:
        """Slots ``items`` as the distance sees them: (i, D), (i, P, d) float32, and whether every
        row has unit norm (float32 slots, or renormalised by the debiasing; float16 slots are off
        by ~1e-3, so their norms must be computed)."""
        g = bank_features(self.global_bank)[items]
        p = bank_features(self.part_bank)[items]
        if self.debias_g is not None:
            cams = self.camids[items]
            return self.debias_g(g, cams), self.debias_p(p, cams), True
        return self._as_float("global", g), self._as_float("parts", p), g.dtype == torch.float32

    # -- distances ---------------------------------------------------------------------------

    def block(self, g: Tensor, p: Tensor, cams: Tensor, items: slice) -> Tensor:
        """(B, D), (B, P, d) as the distance sees them, (B,) -> (B, i) distances to slots ``items``."""
        bank_g, bank_p, unit = self.slots(items)
        return combined_distance(
            g,
            p,
            bank_g,
            bank_p,
            lambda_g=self.lambda_g,
            squared=True,
            unit_norm=unit,
            lambda_c=self.lambda_c,
            q_camids=cams,
            g_camids=self.camids[items],
        )

    @torch.no_grad()
    def to_slots(self, g: Tensor, p: Tensor, cams: Tensor) -> Tensor:
        """(B, D), (B, P, d), (B,) -> (B, N) distances to every slot (float32)."""
        g, p = self.anchors(g, p, cams)
        return exact.distance_matrix(
            lambda rows, items: self.block(g, p, cams, items), len(g), len(self), item_block=self.chunk
        )

    @torch.no_grad()
    def nearest(self, g: Tensor, p: Tensor, cams: Tensor, self_idx: Tensor, count: int) -> Tensor:
        """The ``count`` nearest slots per anchor, nearest first, own slot left out.

        Shape:
            g: (B, D), p: (B, P, d), cams: (B,), self_idx: (B,) -> (B, count) int64
        """
        g, p = self.anchors(g, p, cams)
        (found,) = exact.nearest(
            lambda rows, items: self.block(g, p, cams, items),
            len(g),
            len(self),
            count,
            item_block=self.chunk,
            exclude=self_idx,
        )
        return found.idx

    @torch.no_grad()
    def to_candidates(
        self, g: Tensor, p: Tensor, cams: Tensor, cand: Tensor, sq_norms: Tensor | None = None, *, stripes: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """The distance from each anchor to its own candidates ``cand`` (B, R) -> (B, R).

        ``sq_norms`` (N, 2), the slots' squared global and stripe norms if known (a faiss searcher
        caches them when it embeds a slot); computed from the gathered rows otherwise. With
        ``stripes``, also the distances stripe by stripe to the same candidates, (B, P, R), as
        :meth:`stripe_distances_to` gives them, from the rows gathered once.
        """
        rows = self.slot_features(cand.reshape(-1)).view(*cand.shape, 2 * self.feat_dim)  # (B, R, 2D)
        return self.to_rows(g, p, cams, cand, rows, sq_norms, stripes=stripes)

    def to_rows(
        self,
        g: Tensor,
        p: Tensor,
        cams: Tensor,
        cand: Tensor,
        rows: Tensor,
        sq_norms: Tensor | None = None,
        *,
        stripes: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """:meth:`to_candidates` from the candidates' rows as the distance sees them, gathered
        already: ``rows`` (B, R, 2D) float32, the global feature then the stripes side by side
        (:meth:`slot_features`). One batched product gives every inner product the distance and
        the stripe check need."""
        g, p = self.anchors(g, p, cams)
        dim = self.feat_dim
        columns = torch.zeros(len(g), 1 + p.shape[1], 2 * dim, device=rows.device)  # (B, 1+P, 2D)
        columns[:, 0, :dim] = g
        columns[:, 1:, dim:] = block_diagonal(p).transpose(1, 2)
        # (B, 1+P, R): g . G, then p_s . L_s stripe by stripe (this operand order: 4x faster than rows @ columns)
        dots = torch.bmm(columns, rows.transpose(1, 2))
        dist = candidate_distance(
            g,
            p,
            rows[..., :dim],
            rows[..., dim:],
            lambda_g=self.lambda_g,
            lambda_c=self.lambda_c,
            q_camids=cams.to(cand.device),
            c_camids=self.camids.to(cand.device)[cand],
            c_global_sq=None if sq_norms is None else sq_norms[:, 0][cand],
            c_parts_sq=None if sq_norms is None else sq_norms[:, 1][cand],
            global_dot=dots[:, 0],
            parts_dot=dots[:, 1:].sum(1),
        )
        if not stripes:
            return dist
        return dist, (2.0 - 2.0 * dots[:, 1:]).clamp_min_(0.0)

    def gather(self, bank: Tensor, cand: Tensor, name: str = "rows") -> Tensor:
        """Rows ``cand`` (B, R) of a (N, w) bank as a (B, R, w) float32 tensor (a reused buffer)."""
        shape, flat = (cand.numel(), bank.shape[1]), cand.reshape(-1)
        out = scratch(self._buffers, name, shape, torch.float32, bank.device)
        if bank.dtype == torch.float32:
            return torch.index_select(bank, 0, flat, out=out).view(*cand.shape, bank.shape[1])
        staged = scratch(self._buffers, "staging", shape, bank.dtype, bank.device)
        return out.copy_(torch.index_select(bank, 0, flat, out=staged)).view(*cand.shape, bank.shape[1])

    # -- the distance as an inner product (faiss) ---------------------------------------------

    def embed(self, g: Tensor, p: Tensor, cams: Tensor, *, query: bool) -> Tensor:
        """The inner-product embedding of anchors (``query=True``) or slots (E columns): for an
        anchor q and a slot x, ``d = 2 - 2 q . x`` (:func:`reidlib.neighbours.faiss_index.embed`)."""
        return embed(g, p, cams, lambda_g=self.lambda_g, lambda_c=self.lambda_c, num_cams=self.num_cams, query=query)

    def slot_features(self, rows: Tensor) -> Tensor:
        """Slots ``rows`` (n,) as the distance sees them, from the banks as they are now: the global
        feature then the stripes side by side, (n, 2D) float32 (debiased)."""
        rows = rows.to(self.device)
        g, p = bank_features(self.global_bank)[rows].float(), bank_features(self.part_bank)[rows].float()
        if self.debias_g is not None:
            cams = self.camids[rows]
            g, p = self.debias_g(g, cams), self.debias_p(p, cams)
        return torch.cat([g, p.flatten(1)], dim=1)

    def embed_slots(self, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Slots ``rows`` (n,) embedded from the banks as they are now, their squared global and
        stripe norms, and their :meth:`slot_features`: (n, E), (n, 2), (n, 2D)."""
        feats = self.slot_features(rows)
        g, p = feats[:, : self.feat_dim], feats[:, self.feat_dim :].unflatten(1, (self.num_parts, -1))
        norms = torch.stack([g.pow(2).sum(1), p.pow(2).sum((1, 2))], dim=1)
        return self.embed(g, p, self.camids[rows.to(self.device)], query=False), norms, feats

    # -- the per-epoch graph and the stripes ----------------------------------------------------

    def slot_rows(self):
        """Slot-to-slot distances over the banks as they are now, for the per-epoch rankings of
        :mod:`reidlib.neighbours.graph`: (b,) slot indices -> (b, N). The (debiased) banks are
        read once, here, not once per block."""
        bank_g, bank_p = bank_features(self.global_bank), bank_features(self.part_bank)
        if self.debias_g is None:
            bank_g, bank_p = bank_g.float(), bank_p.float()
        else:
            bank_g, bank_p = self.debias_g(bank_g, self.camids), self.debias_p(bank_p, self.camids)
        frozen = SelectionDistance(
            bank_g, bank_p, self.camids, lambda_g=self.lambda_g, lambda_c=self.lambda_c, chunk=self.chunk
        )
        return lambda rows: frozen.to_slots(bank_g[rows], bank_p[rows], self.camids[rows])

    @torch.no_grad()
    def stripe_distances(self, p: Tensor, cams: Tensor) -> Tensor:
        """(B, P, d), (B,) -> (B, P, N) squared distances stripe by stripe (unit stripes)."""
        bank_p = bank_features(self.part_bank).float()
        anchors = p.float()
        if self.debias_p is not None:
            bank_p, anchors = self.debias_p(bank_p, self.camids), self.debias_p(p, cams)
        return (2.0 - 2.0 * torch.einsum("bpd,npd->bpn", anchors, bank_p)).clamp_min_(0.0)

    @torch.no_grad()
    def stripe_distances_to(self, p: Tensor, cams: Tensor, slots: Tensor) -> Tensor:
        """:meth:`stripe_distances` to given slots only: stripe s of each anchor against stripe s
        of its slots ``slots[:, s]``, (B, P, d), (B,), (B, P, T) -> (B, P, T); no (B, P, N) row.

        The slots' stripes are gathered once, into reused buffers, and a camera mean is removed
        through its inner products rather than from each gathered row: with ``x`` a slot's
        stripe, ``mu`` its camera's mean and ``a`` the debiased anchor stripe,
        ``a . (x - mu) / |x - mu|`` needs ``a . x``, ``a . mu``, ``x . mu`` and ``|mu|``: no
        (B, P, T, d) tensor besides the gathered one. A spread (``mean_std``) is divided out of
        the rows."""
        num_parts = p.shape[1]
        stripe = torch.arange(num_parts, device=slots.device)[None, :, None]  # (1, P, 1)
        flat = bank_features(self.part_bank).flatten(0, 1)  # (N P, d): one gather for every stripe
        rows = self.gather(flat, (slots * num_parts + stripe).flatten(1), "stripes").view(*slots.shape, flat.shape[1])
        if self.debias_p is None:
            return (2.0 - 2.0 * torch.einsum("bpd,bptd->bpt", p.float(), rows)).clamp_min_(0.0)
        anchors = self.debias_p(p, cams)  # (B, P, d)
        cam = self.camids[slots]  # (B, P, T)
        if self.debias_p.std is not None:  # a spread too: out of the rows, each by its (camera, stripe)
            by_stripe = CameraDebias(self.debias_p.mean.flatten(0, 1), self.debias_p.std.flatten(0, 1))  # (C P, d)
            rows = by_stripe(rows, cam * num_parts + stripe)
            return (2.0 - 2.0 * torch.einsum("bpd,bptd->bpt", anchors, rows)).clamp_min_(0.0)
        mean = self.debias_p.mean.to(rows.device).transpose(0, 1)  # (P, C, d)
        queries = torch.cat([anchors[:, :, None], mean.expand(len(anchors), -1, -1, -1)], dim=2)  # (B, P, 1+C, d)
        dots = torch.matmul(rows, queries.transpose(2, 3))  # (B, P, T, 1+C): a . x, then each x . mu
        x_mu = dots[..., 1:].gather(3, cam[..., None]).squeeze(3)
        a_mu = torch.einsum("bpd,pcd->bpc", anchors, mean).gather(2, cam)
        mu_mu = (mean * mean).sum(-1)[stripe.expand_as(cam), cam]  # (B, P, T)
        norm = (torch.linalg.vector_norm(rows, dim=-1).square_() - 2.0 * x_mu + mu_mu).clamp_min_(1e-24).sqrt_()
        return (2.0 - 2.0 * (dots[..., 0] - a_mu) / norm).clamp_min_(0.0)
