"""The training images of one epoch: which slots each step sees on each process, and their loader."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

from reidlib.config import DataConfig
from reidlib.data import ImageRecord, ReidDataset, build_transforms
from reidlib.utils import distributed as dist


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
    data_cfg: DataConfig,
    records: list[ImageRecord],
    batches: list[list[int]],
    seed: int,
    images: dict[str, Tensor] | None,
) -> DataLoader:
    """Augmented training crops of ``records`` in ``batches`` (slot indices), each batch a dict
    with ``img`` (B, 3, H, W), or (B, S, 3, H, W) for tracklets (``data.sample_frames`` frames
    each), and ``index`` (B,); ``images`` holds decoded crops (cache_images)."""
    d = data_cfg
    transform = build_transforms(d, train=True, from_cache=images is not None)
    return DataLoader(
        ReidDataset(records, transform, images, sample_frames=d.sample_frames),
        batch_sampler=batches,
        num_workers=d.num_workers,
        generator=torch.Generator().manual_seed(seed),  # workers' seeds; keeps torch's own stream untouched
    )


def to_device(img: Tensor, device: torch.device, memory_format: torch.memory_format) -> Tensor:
    """A batch of images (B, 3, H, W), or of tracklets' frames (B, S, 3, H, W), on ``device`` in
    ``memory_format``; a 5-d batch is laid out frame by frame, as the model flattens it."""
    if img.dim() == 5:
        return img.flatten(0, 1).to(device, memory_format=memory_format).unflatten(0, img.shape[:2])
    return img.to(device, memory_format=memory_format)
