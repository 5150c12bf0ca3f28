"""The training loop of selective contrastive learning: steps, epochs, checkpoints, resuming.

Shape letters: B batch, N training images (memory slots), D feature dim, P stripes, K positives,
M negatives.

One step, in the order the paper's method needs (and that ``train_one_epoch`` shows):

1. the model gives global features g (B, D) and stripes p (B, P, D/P);
2. under ``no_grad`` the epoch's selector (:mod:`reidlib.selectors`: random negatives during
   warm-up, then the configured positive rule) picks positives and negatives from the global and
   part banks;
3. the loss reads the mixture bank at those indices; ``backward()``; the optimiser steps;
4. only then do the banks change: the own slots of G and L, and the mixture bank X at the own slot
   and the kept positives, written by g and then by the concatenated stripes
   (``mixture_writers`` can let only one of them write, or both in one combined write).

The loop owns epoch and step; every schedule and every random seed is a function of them. Labels
are never used to train: the training identities only *measure* the selection (the diagnostics).

A checkpoint is written at the end of every epoch and, with ``checkpoint_every``, every N steps;
one written inside an epoch also holds the step reached, the epoch's running sums and the random
generators' states, so that resuming it under ``deterministic=true`` gives the same result, bit
for bit, as a run never stopped (on a CPU, with ``num_workers=0``). SIGINT and SIGTERM save one
and stop (:mod:`reidlib.interrupts`). Under ``torchrun`` every process runs this loop on its
share of each epoch and the banks stay identical everywhere (:mod:`reidlib.distributed`).
"""

from __future__ import annotations

import logging
import math
import random
import signal
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

from reidlib import distributed as dist
from reidlib import provenance, runs
from reidlib.config import Config
from reidlib.data import ReidData, ReidDataset, build_transforms, check_images, load_images, read_dataset
from reidlib.errors import ConfigError, ReidlibError, RunDirError
from reidlib.inference import evaluate_model, extract_features, final_metrics, make_model, memory_format, setup_torch
from reidlib.interrupts import Interrupted, StopSignals
from reidlib.losses import SCLLosses, scl_total_loss
from reidlib.memory import MemoryBank, build_banks
from reidlib.model import ReidModel
from reidlib.selection import Selection, SelectionStats
from reidlib.selectors import make_selector

log = logging.getLogger(__name__)


class TrainingError(ReidlibError):
    """Training cannot go on (a NaN or Inf loss, say); the last good checkpoint is kept."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of one epoch's random draws (augmentation, warm-up negatives) on one process."""
    return seed * 10_007 + epoch + 1_000_003 * rank


def learning_rate(cfg: Config, epoch: int) -> float:
    """The learning rate of ``epoch`` (a pure function of it)."""
    t = cfg.train
    if t.lr_schedule == "cosine" and t.epochs > 1:
        return 0.5 * t.lr * (1.0 + math.cos(math.pi * epoch / t.epochs))
    if t.lr_schedule == "step" and epoch >= round(t.lr_step * t.epochs):
        return t.lr * t.lr_gamma
    return t.lr


# ---------------------------------------------------------------------------------------------
# State


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
    step: int = 0  # steps completed in the epoch under way
    progress: list[dict[str, Any]] | None = None  # per process, when resuming inside an epoch
    selector: Any = None  # the epoch's rule (reidlib.selectors), built from the banks (not saved)
    images: dict[str, Tensor] | None = None  # decoded crops by path (data.cache_images; not saved)

    def state_dict(self, cfg: Config, world: int = 1) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "progress": self.progress,
            "world_size": world,
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
        self.step = int(state.get("step", 0))
        self.progress = state.get("progress")


@dataclass
class EpochProgress:
    """Where this process stands in an epoch: steps done and the running sums of its row."""

    step: int = 0
    totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("loss", "loss_part", "loss_global"), 0.0))
    stats: SelectionStats = field(default_factory=SelectionStats)


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """This process's random generators: torch's (augmentation), Python's, NumPy's, selection's."""
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "selection": generator.get_state(),
    }


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    generator.set_state(state["selection"])


# ---------------------------------------------------------------------------------------------
# Building blocks


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


def build_state(cfg: Config, data: ReidData, device: torch.device) -> TrainState:
    """Model, optimiser and the three (empty) banks."""
    m, s, t = cfg.model, cfg.scl, cfg.train
    model = make_model(cfg, device)
    if t.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay
        )
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    n = len(data.train)
    dtype = getattr(torch, s.bank_dtype)
    global_bank, part_bank, mixture_bank = (
        b.to(device) for b in build_banks(n, m.feat_dim, m.num_parts, s.bank_momentum, dtype)
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


def init_banks(state: TrainState, cfg: Config, data: ReidData, ctx: dist.Context) -> None:
    """Fill the global and part banks with one pass of the model; set up the mixture bank.

    Each process extracts a contiguous share of the training set and the shares are gathered,
    so every process ends with the same N slots.
    """
    sizes = [len(a) for a in np.array_split(np.arange(len(data.train)), ctx.world)]
    start = sum(sizes[: ctx.rank])
    records = data.train[start : start + sizes[ctx.rank]]
    feats = extract_features(
        state.model, records, cfg, ctx.device, desc="filling memory banks", progress=ctx.main, images=state.images
    )
    g = dist.all_gather_rows(ctx, torch.from_numpy(feats["global"]).to(ctx.device))  # (N, D)
    p = dist.all_gather_rows(ctx, torch.from_numpy(feats["parts"]).to(ctx.device))  # (N, P, D/P)
    state.global_bank.fill(g)
    state.part_bank.fill(p)
    if cfg.scl.mixture_init == "features":  # as if every slot had seen its own writes once
        first, *rest = mixture_writes(cfg, g, p)
        state.mixture_bank.fill(first)
        every = torch.arange(len(g), device=ctx.device)
        for feats_ in rest:
            state.mixture_bank.update(every, feats_)
    # "zeros" (the public code): the buffer already holds zeros


UNIT_STRIPES_IN = {"sqrt_p": (), "unit": ("write", "loss"), "unit_writes": ("write",), "unit_loss": ("loss",)}


def part_features(scl_cfg, p: Tensor, use: str) -> Tensor:
    """The concatenated stripes (B, P, d) -> (B, D) as they meet the mixture bank in ``use``
    (``write`` or ``loss``): as they are (norm sqrt(P)), or divided by sqrt(P) (unit norm) where
    ``scl.part_scale`` asks for it there."""
    p_cat = p.flatten(1)
    return p_cat / math.sqrt(p.shape[1]) if use in UNIT_STRIPES_IN[scl_cfg.part_scale] else p_cat


def mixture_writes(cfg: Config, g: Tensor, p: Tensor) -> list[Tensor]:
    """The features that write the mixture bank, in order (``scl.mixture_writers``): g then the
    concatenated stripes (``both``, the public code), one combined write ``normalise(g + stripes)``,
    or only one of them. ``p`` is (B, P, d); ``scl.part_scale`` sets the stripes' scale."""
    s = cfg.scl
    p_cat = part_features(s, p, "write")
    if s.mixture_writers == "combined":
        return [torch.nn.functional.normalize(g + p_cat, dim=1)]
    return {"both": [g, p_cat], "global": [g], "parts": [p_cat]}[s.mixture_writers]


def epoch_batches(num_train: int, batch_size: int, seed: int, epoch: int, ctx: dist.Context) -> list[list[int]]:
    """This process's batches of slot indices for ``epoch``: a seeded shuffle of the training set,
    split between the processes by torch's ``DistributedSampler`` (one process: all of it), then
    cut into full batches; the tail that does not fill a batch on every process is dropped."""
    sampler = DistributedSampler(
        range(num_train), num_replicas=ctx.world, rank=ctx.rank, shuffle=True, seed=seed * 10_007, drop_last=True
    )
    sampler.set_epoch(epoch)
    return list(BatchSampler(sampler, batch_size, drop_last=True))


def _train_loader(
    cfg: Config, data: ReidData, batches: list[list[int]], seed: int, images: dict[str, Tensor] | None
) -> DataLoader:
    d = cfg.data
    transform = build_transforms(
        d.height,
        d.width,
        train=True,
        flip=d.flip,
        pad=d.pad,
        random_erasing=d.random_erasing,
        color_jitter=d.color_jitter,
        from_cache=images is not None,
    )
    return DataLoader(
        ReidDataset(data.train, transform, images),
        batch_sampler=batches,
        num_workers=d.num_workers,
        generator=torch.Generator().manual_seed(seed),  # workers' seeds; keeps torch's own stream untouched
    )


# ---------------------------------------------------------------------------------------------
# The loop


def save_checkpoint(
    state: TrainState, cfg: Config, ctx: dist.Context, run_dir: Path,
    progress: EpochProgress | None = None, generator: torch.Generator | None = None,
) -> None:
    """Rank 0 writes ``last.pt``; inside an epoch every process first hands it its progress."""
    state.step = progress.step if progress is not None else 0
    state.progress = None
    if progress is not None:
        mine = {"totals": dict(progress.totals), "stats": asdict(progress.stats), "rng": rng_state(generator)}
        state.progress = dist.all_gather_objects(ctx, mine)
    if ctx.main:
        runs.save_checkpoint(run_dir, state.state_dict(cfg, world=ctx.world))
    dist.barrier(ctx)


def train_step(
    state: TrainState, net: nn.Module, cfg: Config, ctx: dist.Context, batch: dict[str, Any],
    where: str,
) -> tuple[Selection, Tensor, SCLLosses]:
    """One SCL step, in the order of the module docstring; ``where`` names it in errors.

    Returns:
        The selection, the batch's slot indices (B,), and the losses.
    """
    s, device = cfg.scl, ctx.device
    img, idx = batch["img"].to(device, memory_format=memory_format(cfg)), batch["index"].to(device)
    cams = state.train_camids[idx]
    feats = net(img)
    g, p = feats.global_, feats.parts  # (B, D), (B, P, D/P)
    with torch.no_grad():
        sel = state.selector(g.detach(), p.detach(), cams, idx)
    losses = scl_total_loss(
        g,
        part_features(s, p, "loss"),  # (B, D)
        state.mixture_bank.features,
        sel.pos_idx,
        sel.neg_idx,
        lambda_p=s.lambda_p,
        temperature=s.temperature,
        lambda_t=s.lambda_t,
        alpha=s.alpha,
        pos_mask=sel.pos_mask,
    )
    loss = losses.total
    (not_finite,) = dist.any_flags(ctx, not bool(torch.isfinite(loss)))  # every process stops here
    if not_finite:
        value = loss.item() if not torch.isfinite(loss) else "not finite on another process"
        raise TrainingError(
            f"the loss is {value} at {where}; the last good checkpoint is kept "
            "(try a lower lr or a higher temperature)"
        )
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    state.optimizer.step()
    with torch.no_grad():  # the banks change only after the step has read them
        gather = partial(dist.all_gather_rows, ctx)  # every process's batch, in rank order
        idx_all, g_all, p_all, pos_all, mask_all = (
            gather(x.detach()) for x in (idx, g, p, sel.pos_idx, sel.mask())
        )
        state.global_bank.update(idx_all, g_all)
        state.part_bank.update(idx_all, p_all)
        state.selector.refresh(idx_all)  # an index follows the slots just written
        # dropped candidates point at the anchor's own slot, so they write nothing new
        writes = torch.where(mask_all, pos_all, pos_all[:, :1])
        writes = writes if s.mixture_update == "positives" else writes[:, :1]
        for feats_ in mixture_writes(cfg, g_all, p_all):
            state.mixture_bank.update(writes, feats_)
    return sel, idx, losses


def train_one_epoch(
    state: TrainState, net: nn.Module, cfg: Config, data: ReidData, ctx: dist.Context, *,
    run_dir: Path, stop: StopSignals,
) -> dict[str, Any]:
    """Run the epoch ``state.epoch`` from step ``state.step`` to its end; return its metrics row.

    Args:
        net: ``state.model``, or its ``DistributedDataParallel`` wrapper under torchrun.
        run_dir: where mid-epoch checkpoints go (``checkpoint_every``, or a stop request).
        stop: the signal handler; a request saves a checkpoint and raises :class:`Interrupted`.
    """
    s, t = cfg.scl, cfg.train
    epoch, device = state.epoch, ctx.device
    lr = learning_rate(cfg, epoch)
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    seed = epoch_seed(t.seed, epoch, ctx.rank)
    generator = torch.Generator(device=device)
    batches = epoch_batches(len(data.train), t.batch_size, t.seed, epoch, ctx)
    if state.step:  # resuming inside this epoch
        mine = state.progress[ctx.rank]
        progress = EpochProgress(state.step, mine["totals"], SelectionStats(**mine["stats"]))
        set_rng_state(mine["rng"], generator)
    else:
        progress = EpochProgress()
        seed_everything(seed)
        generator.manual_seed(seed)
    # Built anew each epoch from the banks as they are now (a faiss index refits its cells, a
    # rule's per-epoch rankings are recomputed).
    state.selector = make_selector(
        s, epoch, t.epochs, state.global_bank, state.part_bank, state.train_camids, generator, seed=t.seed
    )
    loader = _train_loader(cfg, data, batches[progress.step :], seed, state.images)
    state.model.train()
    bar = dist.progress_bar(ctx, loader, initial=progress.step, total=len(batches), desc=f"epoch {epoch + 1}/{t.epochs}")
    for batch in bar:
        where = f"epoch {epoch + 1}, step {progress.step + 1}"
        sel, idx, losses = train_step(state, net, cfg, ctx, batch, where)
        progress.stats.add(sel, idx, state.train_pids, state.train_camids)
        for key, value in (("loss", losses.total), ("loss_part", losses.part), ("loss_global", losses.global_)):
            progress.totals[key] += value.item()
        progress.step += 1
        bar.set_postfix(loss=f"{progress.totals['loss'] / progress.step:.3f}")
        (stop_now,) = dist.any_flags(ctx, stop.requested)
        unfinished = progress.step < len(batches)
        if unfinished and (stop_now or (t.checkpoint_every and progress.step % t.checkpoint_every == 0)):
            save_checkpoint(state, cfg, ctx, run_dir, progress, generator)
            if stop_now:
                raise Interrupted(
                    stop.signum or signal.SIGTERM,
                    f"{stop.signal_name} received: stopped at epoch {epoch + 1}, step {progress.step} "
                    f"of {len(batches)}; checkpoint saved in {run_dir / runs.CHECKPOINT}",
                )
    sums = dist.all_reduce_sum(ctx, torch.tensor([*progress.totals.values(), progress.step], dtype=torch.float64))
    stats = SelectionStats.from_tensor(dist.all_reduce_sum(ctx, progress.stats.as_tensor()))
    steps = max(sums[-1].item(), 1.0)
    row = {key: value / steps for key, value in zip(progress.totals, sums.tolist())}
    row.update(lr=lr, warmup=epoch < s.warmup_epochs, **stats.summary())
    return row


def _start(
    state: TrainState, cfg: Config, data: ReidData, ctx: dist.Context, run_dir: Path, resumable: bool,
    stop: StopSignals,
) -> dict[str, Any] | None:
    """Load the newest complete checkpoint, or fill the banks and write the first one."""
    path = dist.on_main(ctx, lambda: runs.latest_checkpoint(run_dir)) if resumable else None
    if path is None:
        with stop.at_once():
            init_banks(state, cfg, data, ctx)
        save_checkpoint(state, cfg, ctx, run_dir)
        return None
    checkpoint = runs.read_checkpoint(path)
    if checkpoint.get("step", 0) and checkpoint.get("world_size", 1) != ctx.world:
        raise RunDirError(
            f"{path} was saved inside epoch {checkpoint['epoch'] + 1} by {checkpoint['world_size']} "
            f"process(es); resume it with as many (torchrun --nproc_per_node {checkpoint['world_size']}), "
            f"not {ctx.world}"
        )
    state.load_state_dict(checkpoint)
    if ctx.main:
        runs.truncate_metrics_log(run_dir, state.epoch)
    log.info("resuming %s at epoch %d, step %d (%s)", run_dir, state.epoch + 1, state.step, path.name)
    return {"epoch": state.epoch, "step": state.step, "checkpoint": path.name}


def train(cfg: Config, run_dir: str | Path, data: ReidData | None = None) -> dict[str, Any] | None:
    """Train SCL with ``cfg`` into ``run_dir`` (resuming it if it holds a checkpoint).

    Every input is checked before anything is written: the config against the data's size, and
    every image, decoded once.

    Args:
        cfg: the resolved config; ``cfg.data.data_dir`` names the dataset unless ``data`` is given.
        run_dir: where config.yaml, metrics, checkpoints, features and provenance go.
        data: an already read dataset (optional).

    Returns:
        The final metrics (as written to ``metrics.json``); None on the processes other than
        rank 0 under torchrun.

    Raises:
        Interrupted: SIGINT or SIGTERM stopped the run (after saving a checkpoint).
        TrainingError: the loss became NaN or Inf.
    """
    run_dir = Path(run_dir)
    if data is None:
        data = read_dataset(cfg.data.data_dir, layout=cfg.data.layout)
    _check_sizes(cfg, len(data.train))
    everything = data.train + data.query + data.gallery
    if cfg.data.cache_images:  # decoding checks every image, as check_images does
        images = load_images(everything, cfg.data.height, cfg.data.width, desc="decoding images")
    else:
        images = None
        check_images(everything)
    ctx = dist.setup(setup_torch(cfg))
    try:
        dist.check_world(ctx, cfg.train.batch_size, len(data.train))
        return _train(cfg, run_dir, data, ctx, images)
    finally:
        dist.teardown(ctx)


def _train(
    cfg: Config, run_dir: Path, data: ReidData, ctx: dist.Context, images: dict[str, Tensor] | None
) -> dict[str, Any] | None:
    resumable = dist.on_main(ctx, lambda: runs.prepare_run_dir(run_dir, cfg))
    seed_everything(cfg.train.seed)
    state = build_state(cfg, data, ctx.device)
    state.images = images
    with StopSignals() as stop:
        resumed = _start(state, cfg, data, ctx, run_dir, resumable, stop)
        if ctx.main:
            session = {"resumed_from": resumed, "world_size": ctx.world, "threads": torch.get_num_threads()}
            runs.append_provenance(run_dir, provenance.session({**session, "data": provenance.data_fingerprint(data)}))
        net: nn.Module = state.model
        if ctx.distributed:
            net = DistributedDataParallel(state.model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
        eval_every = cfg.eval.eval_every
        while state.epoch < cfg.train.epochs:
            start = time.perf_counter()
            row = {"epoch": state.epoch + 1, **train_one_epoch(state, net, cfg, data, ctx, run_dir=run_dir, stop=stop)}
            row["seconds"] = round(time.perf_counter() - start, 2)
            state.epoch, state.step, state.progress = state.epoch + 1, 0, None
            if ctx.main:
                if eval_every and state.epoch % eval_every == 0 and state.epoch < cfg.train.epochs:
                    results, _, _ = evaluate_model(state.model, cfg, data, ctx.device, state.images)
                    row["eval"] = results
                    log.info("epoch %d: mAP %.1f%%", state.epoch, 100 * results["combined"]["mAP"])
                log.info(
                    "epoch %d/%d: loss %.4f, %s (%.0fs)",
                    state.epoch, cfg.train.epochs, row["loss"], _describe_selection(row), row["seconds"],
                )
                runs.append_jsonl(run_dir / runs.METRICS_LOG, row)  # before the checkpoint: see runs.truncate_metrics_log
            save_checkpoint(state, cfg, ctx, run_dir)
            (stop_now,) = dist.any_flags(ctx, stop.requested)
            if stop_now:
                raise Interrupted(
                    stop.signum or signal.SIGTERM,
                    f"{stop.signal_name} received: stopped after epoch {state.epoch}; "
                    f"checkpoint saved in {run_dir / runs.CHECKPOINT}",
                )
        with stop.at_once():
            digests = dist.all_gather_objects(ctx, replica_digest(state))
            if not ctx.main:
                return None
            results, query, gallery = evaluate_model(state.model, cfg, data, ctx.device, state.images)
            metrics = final_metrics(results, state.epoch)
            if ctx.distributed:
                metrics["replicas"] = {"world_size": ctx.world, "digests": digests, "identical": len(set(digests)) == 1}
                if len(set(digests)) > 1:
                    log.error("the processes' banks or weights differ at the end: %s", digests)
            runs.save_features(
                run_dir / runs.FEATURES,
                **{f"query_{k}": v for k, v in query.items()},
                **{f"gallery_{k}": v for k, v in gallery.items()},
            )
            runs.write_json(run_dir / runs.METRICS, metrics)
            return metrics


def replica_digest(state: TrainState) -> str:
    """A sha256 of the three banks and the model's parameters (not its BatchNorm statistics,
    which each process updates from its own batch between DistributedDataParallel's broadcasts)."""
    banks = (state.global_bank.features, state.part_bank.features, state.mixture_bank.features)
    return dist.replica_digest(*banks, *state.model.parameters())


def _describe_selection(row: dict[str, Any]) -> str:
    parts = []
    if row.get("pos_precision") is not None:
        parts.append(f"positive precision {100 * row['pos_precision']:.1f}%")
        parts.append(f"recall {100 * row['pos_recall']:.1f}%")
        parts.append(f"{row['pos_per_anchor']:.2f} positives per anchor")
        parts.append(f"same-camera positives {100 * row['pos_same_camera']:.1f}%")
    if row.get("neg_false_rate") is not None:
        parts.append(f"false negatives {100 * row['neg_false_rate']:.2f}%")
    return ", ".join(parts) or "no selection"
