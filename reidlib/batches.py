"""The training images of one epoch: which slots each step sees on each process, and their loader."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

from reidlib import distributed as dist
from reidlib.config import DataConfig
from reidlib.data import ImageRecord, ReidDataset, build_transforms


def epoch_batches(num_train: int, batch_size: int, seed: int, epoch: int, ctx: dist.Context) -> list[list[int]]:
    """This process's batches of slot indices for ``epoch``: a seeded shuffle of the training set,
    split between the processes by torch's ``DistributedSampler`` (one process: all of it), then
    cut into full batches; the tail that does not fill a batch on every process is dropped."""
    sampler = DistributedSampler(
        range(num_train), num_replicas=ctx.world, rank=ctx.rank, shuffle=True, seed=seed * 10_007, drop_last=True
    )
    sampler.set_epoch(epoch)
    return list(BatchSampler(sampler, batch_size, drop_last=True))


def train_loader(
    data_cfg: DataConfig, records: list[ImageRecord], batches: list[list[int]], seed: int,
    images: dict[str, Tensor] | None,
) -> DataLoader:
    """Augmented training crops of ``records`` in ``batches`` (slot indices), each batch a dict
    with ``img`` (B, 3, H, W) and ``index`` (B,); ``images`` holds decoded crops (cache_images)."""
    d = data_cfg
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
        ReidDataset(records, transform, images),
        batch_sampler=batches,
        num_workers=d.num_workers,
        generator=torch.Generator().manual_seed(seed),  # workers' seeds; keeps torch's own stream untouched
    )
