"""What a run carries from step to step, and how it is built.

- :class:`TrainState`: the model, the optimiser, the method (with its memory), where the run
  stands; what a checkpoint saves; :func:`build_state` makes a new one for a config and a dataset;
- :class:`EpochProgress`: an epoch's running loss and diagnostic sums;
- the schedules and seeds: :func:`learning_rate`, :func:`epoch_seed`, :func:`rng_state`;
- :func:`train_features`: every training image's features, gathered over the processes.

Every schedule and every random seed is a function of the epoch (and the process's rank), so a run
resumed from a checkpoint draws what an uninterrupted one would.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from reidlib.config import Config, TrainConfig
from reidlib.data import ReidData
from reidlib.evaluation.features import extract_features
from reidlib.methods import Method, make_method
from reidlib.model import Features, ReidModel, make_model, memory_format
from reidlib.utils import distributed as dist


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of one epoch's random draws (augmentation, warm-up negatives) on one process."""
    return seed * 10_007 + epoch + 1_000_003 * rank


def learning_rate(train_cfg: TrainConfig, epoch: int) -> float:
    """The learning rate of ``epoch`` (a pure function of it)."""
    t = train_cfg
    if t.lr_schedule == "cosine" and t.epochs > 1:
        return 0.5 * t.lr * (1.0 + math.cos(math.pi * epoch / t.epochs))
    if t.lr_schedule == "step" and epoch >= round(t.lr_step * t.epochs):
        return t.lr * t.lr_gamma
    return t.lr


def build_optimizer(model: torch.nn.Module, train_cfg: TrainConfig) -> torch.optim.Optimizer:
    t = train_cfg
    if t.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """This process's random generators: torch's (augmentation), Python's, NumPy's, the method's."""
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


@dataclass
class TrainState:
    """Everything a step reads or writes, and what a checkpoint saves."""

    model: ReidModel
    optimizer: torch.optim.Optimizer
    method: Method  # its memory is saved beside the model (reidlib.methods.hooks)
    memory_format: torch.memory_format = torch.contiguous_format  # of the training batches (channels_last)
    epoch: int = 0  # epochs completed
    step: int = 0  # steps completed in the epoch under way
    progress: list[dict[str, Any]] | None = None  # per process, when resuming inside an epoch
    images: dict[str, torch.Tensor] | None = None  # decoded crops by path (data.cache_images; not saved)

    def state_dict(self, cfg: Config, world: int = 1) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "progress": self.progress,
            "world_size": world,
            "config": cfg.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            **self.method.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.method.load_state_dict(state)
        self.epoch = int(state["epoch"])
        self.step = int(state.get("step", 0))
        self.progress = state.get("progress")


@dataclass
class EpochProgress:
    """Where this process stands in an epoch: steps done, running loss sums, diagnostic sums."""

    loss_keys: list[str]
    stats: torch.Tensor  # float64, the method's step_stats summed (its empty_stats to start)
    step: int = 0
    totals: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.totals = {key: self.totals.get(key, 0.0) for key in self.loss_keys}

    def add(self, losses, stats: torch.Tensor) -> None:
        """One step's losses (a NamedTuple in ``loss_keys`` order) and diagnostic sums."""
        for key, value in zip(self.loss_keys, losses):
            self.totals[key] += value.item()
        self.stats = self.stats + stats
        self.step += 1

    def saved(self) -> dict[str, Any]:
        return {"totals": dict(self.totals), "stats": self.stats.tolist()}

    @classmethod
    def restore(cls, loss_keys: list[str], step: int, saved: dict[str, Any], empty: torch.Tensor) -> EpochProgress:
        """The progress a checkpoint saved inside an epoch; ``empty``, the method's empty sums, gives
        their length (a checkpoint of an older version may hold fewer sums: the rest start at 0)."""
        stats = saved["stats"]
        if isinstance(stats, dict):  # written before 2026-12 as a dict of the sums, in order
            stats = list(stats.values())
        sums = empty.clone()
        sums[: len(stats)] = torch.tensor(stats, dtype=torch.float64)
        return cls(loss_keys, sums, step, dict(saved["totals"]))


def build_state(cfg: Config, data: ReidData, device: torch.device) -> TrainState:
    """Model, optimiser and the method with its (empty) memory."""
    model = make_model(cfg, device)
    pids = torch.tensor([r.pid for r in data.train], device=device)
    camids = torch.tensor([r.camid for r in data.train], device=device)
    return TrainState(
        model,
        build_optimizer(model, cfg.train),
        make_method(cfg, pids, camids, device),
        memory_format=memory_format(cfg),
    )


def train_features(state: TrainState, cfg: Config, data: ReidData, ctx: dist.Context, desc: str) -> Features:
    """Every training image's features in slot order, (N, D) and (N, P, d), on every process: each
    extracts a contiguous share of the training set and the shares are gathered."""
    sizes = [len(a) for a in np.array_split(np.arange(len(data.train)), ctx.world)]
    start = sum(sizes[: ctx.rank])
    records = data.train[start : start + sizes[ctx.rank]]
    feats = extract_features(state.model, records, cfg, ctx.device, desc=desc, progress=ctx.main, images=state.images)
    return Features(
        dist.all_gather_rows(ctx, torch.from_numpy(feats["global"]).to(ctx.device)),
        dist.all_gather_rows(ctx, torch.from_numpy(feats["parts"]).to(ctx.device)),
    )
