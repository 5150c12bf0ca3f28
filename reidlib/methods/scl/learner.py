"""Selective contrastive learning as a training method: its memory, selection, loss and updates.

Shape letters: B batch, N training images (memory slots), D feature dim, P stripes, d = D / P,
K positives, M negatives.

One step (the loop in :mod:`reidlib.engine.trainer` calls the hooks in this order):

1. the model gives global features g (B, D) and stripes p (B, P, d);
2. :meth:`SCL.select`, under ``no_grad``: the epoch's miner (:mod:`reidlib.methods.scl.miners`: random
   negatives during warm-up, then the configured positive rule over the epoch's selection distance,
   :class:`~reidlib.neighbours.selection_distance.SelectionDistance`) picks positives and negatives
   from the global and part banks;
3. :meth:`SCL.loss` reads the mixture bank at those indices (:func:`reidlib.methods.losses.scl_total_loss`);
4. the loop runs ``backward()`` and the optimiser step;
5. :meth:`SCL.update`, only then: the own slots of the global and part banks, and the mixture bank
   at the own slot and the kept positives (:mod:`reidlib.methods.memory` holds the mixture bank's rules).

Labels never reach the loss: the training identities only *measure* the selection
(:meth:`SCL.step_stats`). When they are unknown (camera folders, every pid
:data:`~reidlib.data.UNKNOWN_PID`), the figures that need them are None and the log says so.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from reidlib.config import Config, SCLConfig, SearchConfig, apply_overrides
from reidlib.data import ImageRecord, identities_known
from reidlib.data.batches import epoch_batches
from reidlib.errors import ConfigError
from reidlib.methods.hooks import Gather, TrainFeatures
from reidlib.methods.losses import SCLLosses, scl_total_loss
from reidlib.methods.memory import MemoryBank, build_banks, fill_mixture, mixture_slots, mixture_writes, part_features
from reidlib.methods.scl.diagnostics import IdentityTable, SelectionStats
from reidlib.methods.scl.miners import WarmupMiner, lambda_c_at, make_miner
from reidlib.methods.scl.selection import Selection, check_counts
from reidlib.model import Features
from reidlib.neighbours.selection_distance import SelectionDistance
from reidlib.utils import distributed as dist

log = logging.getLogger(__name__)

BANKS = ("global_bank", "part_bank", "mixture_bank")  # their names in a checkpoint
# how every log line, table and report names a run whose selection the identities made (scl.oracle)
ORACLE_LABELS = {
    "ceiling": "SUPERVISED CEILING (every true match a positive, none a negative)",
    "positives": "SUPERVISED HALF (every true match a positive, the rule's negatives)",
    "negatives": "SUPERVISED HALF (the rule's positives, no true match a negative)",
}


class SCL:
    """The SCL method over its three banks (:mod:`reidlib.methods.memory`).

    Args:
        scl_cfg: config section ``scl``; search_cfg: section ``search`` (the neighbour search).
        global_bank: (N, D); part_bank: (N, P, d); mixture_bank: (N, D).
        train_pids: (N,) identities, for the diagnostics only (all
            :data:`~reidlib.data.UNKNOWN_PID` when unknown); train_camids: (N,) cameras.
        epochs: the run's length (the lambda_c schedule reads it); seed: the run's seed (the
            faiss index build).
    """

    loss_names = SCLLosses._fields
    unused_parameters = False  # both feature spaces are trained

    def __init__(
        self,
        scl_cfg: SCLConfig,
        search_cfg: SearchConfig,
        global_bank: MemoryBank,
        part_bank: MemoryBank,
        mixture_bank: MemoryBank,
        train_pids: Tensor,
        train_camids: Tensor,
        *,
        epochs: int,
        seed: int = 0,
    ) -> None:
        self.cfg, self.search_cfg = scl_cfg, search_cfg
        self.global_bank, self.part_bank, self.mixture_bank = global_bank, part_bank, mixture_bank
        self.train_pids, self.train_camids = train_pids, train_camids
        self.identities_known = identities_known(train_pids)
        # each slot's true matches: the diagnostics measure with them, the oracle (scl.oracle) chooses
        self.identities = IdentityTable.build(train_pids) if self.identities_known else None
        self.epochs, self.seed = epochs, seed
        self.miner: Any = None  # the epoch's rule, built by start_epoch (not saved)

    @property
    def supervised(self) -> str | None:
        """The label of a run whose selection the identities make (``scl.oracle``), else None."""
        return ORACLE_LABELS.get(self.cfg.oracle)

    @classmethod
    def build(cls, cfg: Config, train_pids: Tensor, train_camids: Tensor, device: torch.device) -> SCL:
        """SCL as ``cfg`` sets it up, with three empty banks on ``device``."""
        s, m = cfg.scl, cfg.model
        banks = build_banks(len(train_pids), m.feat_dim, m.num_parts, s.bank_momentum, getattr(torch, s.bank_dtype))
        return cls(
            s,
            cfg.search,
            *(b.to(device) for b in banks),
            train_pids.to(device),
            train_camids.to(device),
            epochs=cfg.train.epochs,
            seed=cfg.train.seed,
        )

    @classmethod
    def fit(cls, cfg: Config, train: Sequence[ImageRecord]) -> Config:
        """``scl.m`` capped so that K positives, the band and M negatives fit the training split
        (N - 1 slots besides an anchor's own): a small folder of crops trains with the recipe's
        config, and the log says what changed. K itself is never changed (:meth:`check` refuses
        a K that does not fit, naming a value that does)."""
        s, others = cfg.scl, len(train) - 1
        if s.m is None or s.k + s.negative_band + s.m <= others or s.k + s.negative_band >= others:
            return cfg
        m = others - s.k - s.negative_band
        log.warning(
            "scl.m = %d does not fit the %d training images: capped to %d (k %d + negative_band %d + m %d = %d, "
            "the slots besides an anchor's own)",
            s.m,
            len(train),
            m,
            s.k,
            s.negative_band,
            m,
            others,
        )
        return apply_overrides(cfg, {"m": m})

    @classmethod
    def check(cls, cfg: Config, train: Sequence[ImageRecord]) -> None:
        s = cfg.scl
        check_counts(len(train), s.k, s.m, s.negative_band)
        if s.oracle != "none" and not identities_known(r.pid for r in train):
            raise ConfigError(
                f"scl.oracle={s.oracle!r} is a supervised ceiling: it needs the training identities, and this "
                "training split has none (camera folders); use scl.oracle=none"
            )

    # -- memory ---------------------------------------------------------------------------------

    def init_memory(self, features: TrainFeatures) -> None:
        """Fill the global and part banks with one pass of the model; start the mixture bank."""
        g, p = features("filling memory banks")  # (N, D), (N, P, d)
        self.global_bank.fill(g)
        self.part_bank.fill(p)
        fill_mixture(self.mixture_bank, self.cfg, g, p)

    def start_epoch(self, epoch: int, generator: torch.Generator, features: TrainFeatures, resumed: bool) -> None:
        """Build the epoch's miner: random negatives in warm-up; after it, the epoch's selection
        distance over the banks as they are now (lambda_c as scheduled, the camera statistics
        fitted), handed to the rule's miner (a faiss index refits its cells, a rule's per-epoch
        rankings are recomputed), resumed inside the epoch or not."""
        s = self.cfg
        if epoch < s.warmup_epochs:
            self.miner = WarmupMiner(len(self.train_camids), None if s.m is None else s.k + s.m, generator)
            return
        distance = SelectionDistance(
            self.global_bank,
            self.part_bank,
            self.train_camids,
            lambda_g=s.lambda_g,
            lambda_c=lambda_c_at(s, epoch, self.epochs),
            debias=s.camera_debias,
        )
        self.miner = make_miner(s, self.search_cfg, distance, identities=self.identities, seed=self.seed)

    def batches(self, epoch: int, batch_size: int, seed: int, ctx: dist.Context) -> list[list[int]]:
        """Every training image once an epoch, in a seeded shuffle (:func:`reidlib.data.batches.epoch_batches`)."""
        return epoch_batches(len(self.train_pids), batch_size, seed, epoch, ctx)

    # -- the step -------------------------------------------------------------------------------

    def select(self, out: Features, idx: Tensor) -> Selection:
        """Positives (B, 1+K), own slot first, with their mask, and negatives (B, M)."""
        return self.miner(out.global_.detach(), out.parts.detach(), self.train_camids[idx], idx)

    def loss(self, out: Features, sel: Selection) -> SCLLosses:
        return scl_total_loss(
            out.global_, part_features(self.cfg, out.parts, "loss"), self.mixture_bank.features, sel, self.cfg
        )

    @torch.no_grad()
    def update(self, out: Features, idx: Tensor, sel: Selection, gather: Gather) -> None:
        """Write every process's batch (in rank order) into the banks: own slots of the global and
        part banks, then the mixture bank at the slots :func:`reidlib.methods.memory.mixture_slots` names."""
        idx_all, g_all, p_all, pos_all, mask_all = (
            gather(x.detach()) for x in (idx, out.global_, out.parts, sel.pos_idx, sel.mask())
        )
        self.global_bank.update(idx_all, g_all)
        self.part_bank.update(idx_all, p_all)
        self.miner.refresh(idx_all)  # an index follows the slots just written
        slots = mixture_slots(self.cfg, pos_all, mask_all)
        for feats in mixture_writes(self.cfg, g_all, p_all):
            self.mixture_bank.update(slots, feats)

    # -- diagnostics ----------------------------------------------------------------------------

    def empty_stats(self) -> Tensor:
        return SelectionStats().as_tensor()

    def step_stats(self, sel: Selection, idx: Tensor) -> Tensor:
        stats = SelectionStats()
        stats.add(sel, idx, self.identities, self.train_camids)
        return stats.as_tensor()

    def summarize(self, epoch: int, stats: Tensor) -> dict[str, Any]:
        summary = SelectionStats.from_tensor(stats).summary(identities=self.identities_known)
        return {"warmup": epoch < self.cfg.warmup_epochs, **summary}

    def describe(self, row: dict[str, Any]) -> str:
        parts = []
        if row.get("pos_precision") is not None:
            parts.append(f"positive precision {100 * row['pos_precision']:.1f}%")
        if row.get("pos_recall") is not None:
            parts.append(f"recall {100 * row['pos_recall']:.1f}%")
        if row.get("pos_cross_camera_recall") is not None:
            parts.append(f"cross-camera recall {100 * row['pos_cross_camera_recall']:.1f}%")
        if row.get("pos_same_camera") is not None:
            parts.append(f"{row['pos_per_anchor']:.2f} positives per anchor")
            parts.append(f"same-camera positives {100 * row['pos_same_camera']:.1f}%")
        if row.get("neg_false_per_anchor") is not None:
            parts.append(f"{row['neg_false_per_anchor']:.2f} false negatives per anchor")
        text = ", ".join(parts) or "no selection"
        if self.supervised:
            text = f"{self.supervised}: {text}"
        if not self.identities_known:
            text = f"identities unknown (no precision, recall or false negatives); {text}"
        return text

    # -- checkpoints ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name).state_dict() for name in BANKS}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in BANKS:
            getattr(self, name).load_state_dict(state[name])

    def buffers(self) -> tuple[Tensor, ...]:
        return tuple(getattr(self, name).features for name in BANKS)
