"""The training loop of selective contrastive learning, and evaluation of a trained model.

Shape letters: B batch, N training images (memory slots), D feature dim, P stripes, K positives,
M negatives.

One step, in the order the paper's method needs (and that ``train_one_epoch`` shows):

1. the model gives global features g (B, D) and stripes p (B, P, D/P);
2. under ``no_grad`` a selector picks positives and negatives from the global and part banks
   (random negatives during warm-up);
3. the loss reads the mixture bank at those indices; ``backward()``; the optimiser steps;
4. only then do the banks change: the own slots of G and L, and the mixture bank X at the own slot
   and the selected positives, written by g and then by the concatenated stripes
   (``mixture_writers`` can let only one of them write).

The loop owns epoch and step; every schedule is a function of them. Labels are never used to
train: the training identities only *measure* the selection (the diagnostics).
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from reidlib import runs
from reidlib.config import Config
from reidlib.data import ImageRecord, ReidData, ReidDataset, build_transforms, read_dataset
from reidlib.distances import combined_distance, query_gallery_distance
from reidlib.errors import ConfigError, ReidlibError
from reidlib.evaluation import evaluate
from reidlib.losses import scl_total_loss
from reidlib.memory import MemoryBank, build_banks
from reidlib.model import ReidModel, build_model
from reidlib.selection import Selection, select_neighbours, select_random

log = logging.getLogger(__name__)


class TrainingError(ReidlibError):
    """Training cannot go on (a NaN or Inf loss, say); the last good checkpoint is kept."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def learning_rate(cfg: Config, epoch: int) -> float:
    """The learning rate of ``epoch`` (a pure function of it)."""
    t = cfg.train
    if t.lr_schedule == "cosine" and t.epochs > 1:
        return 0.5 * t.lr * (1.0 + math.cos(math.pi * epoch / t.epochs))
    return t.lr


# ---------------------------------------------------------------------------------------------
# Features


@torch.no_grad()
def extract_features(
    model: ReidModel, records: list[ImageRecord], cfg: Config, device: torch.device, desc: str
) -> dict[str, np.ndarray]:
    """Run the model (eval mode, test transforms) over ``records``.

    Returns:
        ``global`` (n, D) and ``parts`` (n, P, D/P) float32, ``pids``, ``camids`` and ``paths``.
    """
    transform = build_transforms(cfg.data.height, cfg.data.width, train=False)
    loader = DataLoader(
        ReidDataset(records, transform),
        batch_size=cfg.eval.eval_batch_size,
        shuffle=False,
        num_workers=cfg.data.num_workers,
    )
    was_training = model.training
    model.eval()
    globals_, parts = [], []
    for batch in tqdm(loader, desc=desc, leave=False, unit="batch"):
        feats = model(batch["img"].to(device))
        globals_.append(feats.global_.float().cpu())
        parts.append(feats.parts.float().cpu())
    model.train(was_training)
    return {
        "global": torch.cat(globals_).numpy(),
        "parts": torch.cat(parts).numpy(),
        "pids": np.array([r.pid for r in records], dtype=np.int64),
        "camids": np.array([r.camid for r in records], dtype=np.int64),
        "paths": np.array([r.path for r in records]),
    }


FEATURE_SPACES = {"combined": None, "global": 1.0, "parts": 0.0}  # lambda_g forced, or None: config


def evaluate_features(
    query: dict[str, np.ndarray], gallery: dict[str, np.ndarray], cfg: Config
) -> dict[str, dict[str, Any]]:
    """Query -> gallery figures for the combined, global-only and part-only distances.

    The standard Market-1501 protocol, unless ``eval.camera_aware`` adds the training camera
    penalty to same-camera pairs (the original research code's test-time trick), in which case
    every figure is labelled with that protocol.
    """
    protocol = "market1501+camera-penalty" if cfg.eval.camera_aware else "market1501"
    out = {}
    for name, forced in FEATURE_SPACES.items():
        distmat = query_gallery_distance(
            query,
            gallery,
            lambda_g=cfg.scl.lambda_g if forced is None else forced,
            camera_penalty=cfg.scl.lambda_c if cfg.eval.camera_aware else 0.0,
        )
        res = evaluate(distmat, query["pids"], gallery["pids"], query["camids"], gallery["camids"])
        out[name] = {
            "mAP": float(res.mAP),
            "rank1": float(res.cmc[0]),
            "rank5": float(res.cmc[min(4, len(res.cmc) - 1)]),
            "rank10": float(res.cmc[min(9, len(res.cmc) - 1)]),
            "mINP": float(res.mINP),
            "skipped_queries": int(res.num_skipped_queries),
            "protocol": protocol,
        }
    return out


# ---------------------------------------------------------------------------------------------
# Selection diagnostics: the training identities measure the selection, never train it


@dataclass
class SelectionStats:
    """Running sums over an epoch of how good the selected positives and negatives are."""

    anchors: int = 0
    pos_true: float = 0.0  # neighbours (own slot excluded) sharing the anchor's identity
    pos_same_cam: float = 0.0  # neighbours from the anchor's camera
    pos_count: int = 0
    neg_false: float = 0.0  # negatives that are in fact the anchor's identity
    neg_count: int = 0

    @torch.no_grad()
    def add(self, sel: Selection, idx: Tensor, pids: Tensor, camids: Tensor) -> None:
        anchor_pid, anchor_cam = pids[idx][:, None], camids[idx][:, None]  # (B, 1)
        neighbours = sel.pos_idx[:, 1:]  # (B, K)
        self.anchors += len(idx)
        self.pos_true += (pids[neighbours] == anchor_pid).sum().item()
        self.pos_same_cam += (camids[neighbours] == anchor_cam).sum().item()
        self.pos_count += neighbours.numel()
        self.neg_false += (pids[sel.neg_idx] == anchor_pid).sum().item()
        self.neg_count += sel.neg_idx.numel()

    def summary(self) -> dict[str, float | None]:
        share = lambda a, b: a / b if b else None  # noqa: E731
        return {
            "pos_precision": share(self.pos_true, self.pos_count),
            "pos_same_camera": share(self.pos_same_cam, self.pos_count),
            "neg_false_rate": share(self.neg_false, self.neg_count),
            "neg_false_per_anchor": share(self.neg_false, self.anchors),
        }


# ---------------------------------------------------------------------------------------------
# The loop


@dataclass
class TrainState:
    """Everything a step reads or writes, and what a checkpoint saves."""

    model: ReidModel
    optimizer: torch.optim.Optimizer
    global_bank: MemoryBank
    part_bank: MemoryBank
    mixture_bank: MemoryBank
    train_pids: Tensor  # (N,) for the diagnostics only
    train_camids: Tensor  # (N,) for the camera penalty
    epoch: int = 0  # epochs completed

    def state_dict(self, cfg: Config) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "config": cfg.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "global_bank": self.global_bank.state_dict(),
            "part_bank": self.part_bank.state_dict(),
            "mixture_bank": self.mixture_bank.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.global_bank.load_state_dict(state["global_bank"])
        self.part_bank.load_state_dict(state["part_bank"])
        self.mixture_bank.load_state_dict(state["mixture_bank"])
        self.epoch = int(state["epoch"])


def _check_sizes(cfg: Config, num_train: int) -> None:
    s = cfg.scl
    if num_train < 2:
        raise ConfigError(f"the training split has {num_train} image(s); SCL needs at least 2")
    need = s.k + (s.m or 0)
    if need > num_train - 1:
        raise ConfigError(
            f"scl.k + scl.m = {need} must be below the {num_train} training images "
            f"(each anchor has {num_train - 1} other slots)"
        )
    if cfg.train.batch_size > num_train:
        raise ConfigError(
            f"train.batch_size ({cfg.train.batch_size}) is larger than the training split "
            f"({num_train} images)"
        )


def make_model(cfg: Config, device: torch.device, *, load_pretrained: bool = True) -> ReidModel:
    """The model of ``cfg.model`` on ``device``; ``load_pretrained=False`` skips the start weights
    (when a checkpoint will replace them anyway)."""
    m = cfg.model
    return build_model(
        m.arch,
        feat_dim=m.feat_dim,
        num_parts=m.num_parts,
        pretrained=m.pretrained if load_pretrained else None,
        last_stride=m.last_stride,
    ).to(device)


def build_state(cfg: Config, data: ReidData, device: torch.device) -> TrainState:
    """Model, optimiser and the three banks, the global and part banks filled by one pass."""
    m, s, t = cfg.model, cfg.scl, cfg.train
    model = make_model(cfg, device)
    if t.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay
        )
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    n = len(data.train)
    global_bank, part_bank, mixture_bank = (
        b.to(device) for b in build_banks(n, m.feat_dim, m.num_parts, s.bank_momentum)
    )
    return TrainState(
        model=model,
        optimizer=optimizer,
        global_bank=global_bank,
        part_bank=part_bank,
        mixture_bank=mixture_bank,
        train_pids=torch.tensor([r.pid for r in data.train], device=device),
        train_camids=torch.tensor([r.camid for r in data.train], device=device),
    )


def init_banks(state: TrainState, cfg: Config, data: ReidData, device: torch.device) -> None:
    """Fill the global and part banks with one pass of the model; set up the mixture bank."""
    feats = extract_features(state.model, data.train, cfg, device, desc="filling memory banks")
    g = torch.from_numpy(feats["global"]).to(device)
    p = torch.from_numpy(feats["parts"]).to(device)
    state.global_bank.fill(g)
    state.part_bank.fill(p)
    if cfg.scl.mixture_init == "features":  # as if every slot had seen its own writes once
        first, *rest = mixture_writes(cfg, g, p.flatten(1))
        state.mixture_bank.fill(first)
        every = torch.arange(len(g), device=device)
        for feats in rest:
            state.mixture_bank.update(every, feats)
    # "zeros" (the public code): the buffer already holds zeros


def mixture_writes(cfg: Config, g: Tensor, p_cat: Tensor) -> list[Tensor]:
    """The features that write the mixture bank, in order: g then the concatenated stripes
    (``mixture_writers: both``, the public code), or only one of them."""
    return {"both": [g, p_cat], "global": [g], "parts": [p_cat]}[cfg.scl.mixture_writers]


def select(
    state: TrainState, cfg: Config, epoch: int, g: Tensor, p: Tensor, idx: Tensor, cams: Tensor,
    generator: torch.Generator,
) -> Selection:
    """Warm-up epochs draw random negatives; later ones select by the combined distance."""
    s = cfg.scl
    if epoch < s.warmup_epochs:
        num_neg = None if s.m is None else s.k + s.m
        return select_random(idx, len(state.global_bank), num_neg, generator=generator)
    dist = combined_distance(
        g,
        p,
        state.global_bank.features,
        state.part_bank.features,
        lambda_g=s.lambda_g,
        squared=True,
        camera_penalty=s.lambda_c,
        q_camids=cams,
        g_camids=state.train_camids,
    )  # (B, N)
    return select_neighbours(dist, idx, s.k, s.m)


def train_one_epoch(
    state: TrainState, cfg: Config, loader: DataLoader, epoch: int, device: torch.device
) -> dict[str, Any]:
    s = cfg.scl
    lr = learning_rate(cfg, epoch)
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    generator = torch.Generator(device=device).manual_seed(cfg.train.seed * 10_007 + epoch)
    stats = SelectionStats()
    totals = {"loss": 0.0, "loss_part": 0.0, "loss_global": 0.0}
    steps = 0
    state.model.train()
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", leave=False, unit="batch")
    for step, batch in enumerate(bar):
        img, idx = batch["img"].to(device), batch["index"].to(device)
        cams = state.train_camids[idx]
        feats = state.model(img)
        g, p = feats.global_, feats.parts  # (B, D), (B, P, D/P)
        p_cat = p.flatten(1)  # (B, D)
        with torch.no_grad():
            sel = select(state, cfg, epoch, g.detach(), p.detach(), idx, cams, generator)
        loss, loss_part, loss_global = scl_total_loss(
            g,
            p_cat,
            state.mixture_bank.features,
            sel.pos_idx,
            sel.neg_idx,
            lambda_p=s.lambda_p,
            temperature=s.temperature,
            lambda_t=s.lambda_t,
            alpha=s.alpha,
        )
        if not torch.isfinite(loss):
            raise TrainingError(
                f"loss is {loss.item()} at epoch {epoch + 1}, step {step + 1}; "
                "the last good checkpoint is kept (try a lower lr or a higher temperature)"
            )
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        with torch.no_grad():  # the banks change only after the step has read them
            state.global_bank.update(idx, g.detach())
            state.part_bank.update(idx, p.detach())
            writes = sel.pos_idx if s.mixture_update == "positives" else sel.pos_idx[:, :1]
            for feats in mixture_writes(cfg, g.detach(), p_cat.detach()):
                state.mixture_bank.update(writes, feats)
        stats.add(sel, idx, state.train_pids, state.train_camids)
        totals["loss"] += loss.item()
        totals["loss_part"] += loss_part.item()
        totals["loss_global"] += loss_global.item()
        steps += 1
        bar.set_postfix(loss=f"{totals['loss'] / steps:.3f}")
    row = {k: v / max(steps, 1) for k, v in totals.items()}
    row.update(lr=lr, warmup=epoch < s.warmup_epochs, **stats.summary())
    return row


def _train_loader(cfg: Config, data: ReidData, epoch: int) -> DataLoader:
    d = cfg.data
    transform = build_transforms(
        d.height,
        d.width,
        train=True,
        flip=d.flip,
        pad=d.pad,
        random_erasing=d.random_erasing,
        color_jitter=d.color_jitter,
    )
    return DataLoader(
        ReidDataset(data.train, transform),
        batch_size=cfg.train.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=d.num_workers,
        generator=torch.Generator().manual_seed(cfg.train.seed * 10_007 + epoch),
    )


def setup_torch(cfg: Config) -> torch.device:
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    torch.use_deterministic_algorithms(t.deterministic)
    try:
        return torch.device(t.device)
    except RuntimeError as err:
        raise ConfigError(f"config key 'train.device': {err}") from err


def evaluate_model(
    model: ReidModel, cfg: Config, data: ReidData, device: torch.device
) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray], dict[str, np.ndarray]]:
    query = extract_features(model, data.query, cfg, device, desc="query features")
    gallery = extract_features(model, data.gallery, cfg, device, desc="gallery features")
    return evaluate_features(query, gallery, cfg), query, gallery


def final_metrics(results: dict[str, dict[str, Any]], epochs: int) -> dict[str, Any]:
    """``metrics.json``: the combined figures on top, each feature space beside them."""
    top = results["combined"]
    return {
        "mAP": top["mAP"],
        "rank1": top["rank1"],
        "rank5": top["rank5"],
        "rank10": top["rank10"],
        "mINP": top["mINP"],
        "protocol": top["protocol"],
        "epochs": epochs,
        "by_feature": results,
    }


def train(cfg: Config, run_dir: str | Path, data: ReidData | None = None) -> dict[str, Any]:
    """Train SCL with ``cfg`` into ``run_dir`` (resuming it if it holds a checkpoint).

    Args:
        cfg: the resolved config; ``cfg.data.data_dir`` names the dataset unless ``data`` is given.
        run_dir: where config.yaml, metrics, checkpoints and features go.
        data: an already read dataset (optional).

    Returns:
        The final metrics (as written to ``metrics.json``).
    """
    run_dir = Path(run_dir)
    if data is None:
        data = read_dataset(cfg.data.data_dir, layout=cfg.data.layout)
    _check_sizes(cfg, len(data.train))
    resumable = runs.prepare_run_dir(run_dir, cfg)
    device = setup_torch(cfg)
    seed_everything(cfg.train.seed)
    state = build_state(cfg, data, device)
    checkpoint = runs.load_checkpoint(run_dir) if resumable else None
    if checkpoint is not None:
        state.load_state_dict(checkpoint)
        log.info("resuming %s after epoch %d of %d", run_dir, state.epoch, cfg.train.epochs)
    else:
        init_banks(state, cfg, data, device)
        runs.save_checkpoint(run_dir, state.state_dict(cfg))

    eval_every = cfg.eval.eval_every
    while state.epoch < cfg.train.epochs:
        epoch = state.epoch
        seed_everything(cfg.train.seed * 10_007 + epoch)  # augmentation draws, per epoch
        start = time.perf_counter()
        row = {"epoch": epoch + 1, **train_one_epoch(state, cfg, _train_loader(cfg, data, epoch), epoch, device)}
        row["seconds"] = round(time.perf_counter() - start, 2)
        state.epoch = epoch + 1
        last = state.epoch == cfg.train.epochs
        if eval_every and state.epoch % eval_every == 0 and not last:
            results, _, _ = evaluate_model(state.model, cfg, data, device)
            row["eval"] = results
            log.info("epoch %d: mAP %.1f%%", state.epoch, 100 * results["combined"]["mAP"])
        log.info(
            "epoch %d/%d: loss %.4f, %s (%.0fs)",
            state.epoch,
            cfg.train.epochs,
            row["loss"],
            _describe_selection(row),
            row["seconds"],
        )
        runs.save_checkpoint(run_dir, state.state_dict(cfg))
        runs.append_jsonl(run_dir / runs.METRICS_LOG, row)

    results, query, gallery = evaluate_model(state.model, cfg, data, device)
    metrics = final_metrics(results, state.epoch)
    runs.save_features(
        run_dir / runs.FEATURES,
        **{f"query_{k}": v for k, v in query.items()},
        **{f"gallery_{k}": v for k, v in gallery.items()},
    )
    runs.write_json(run_dir / runs.METRICS, metrics)
    return metrics


def _describe_selection(row: dict[str, Any]) -> str:
    parts = []
    if row.get("pos_precision") is not None:
        parts.append(f"positive precision {100 * row['pos_precision']:.1f}%")
        parts.append(f"same-camera positives {100 * row['pos_same_camera']:.1f}%")
    if row.get("neg_false_rate") is not None:
        parts.append(f"false negatives {100 * row['neg_false_rate']:.2f}%")
    return ", ".join(parts) or "no selection"


def evaluate_run(run_dir: str | Path, data_dir: str | None = None, camera_aware: bool = False) -> dict[str, Any]:
    """Evaluate the checkpoint of ``run_dir`` on its (or another) dataset's test split."""
    from dataclasses import replace

    cfg = runs.read_run_config(run_dir)
    if camera_aware:
        cfg = replace(cfg, eval=replace(cfg.eval, camera_aware=True))
    checkpoint = runs.load_checkpoint(Path(run_dir))
    if checkpoint is None:
        raise ReidlibError(f"{run_dir} holds no checkpoint ({runs.CHECKPOINT}); train first")
    data = read_dataset(data_dir or cfg.data.data_dir, layout=cfg.data.layout)
    device = setup_torch(cfg)
    model = make_model(cfg, device, load_pretrained=False)
    model.load_state_dict(checkpoint["model"])
    results, _, _ = evaluate_model(model, cfg, data, device)
    return final_metrics(results, int(checkpoint["epoch"]))
