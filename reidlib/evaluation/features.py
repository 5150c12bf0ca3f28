"""Features of a model over records: the test transforms, tracklets' frames averaged, flip test.

Shape letters: n images (or tracklets), F frames, D feature dim, P stripes.

Used by evaluation, by the bank filling of training, by ``embed`` and by the analysis notebooks.
A tracklet's feature averages its frames' (:func:`reidlib.model.average_frames`), summed batch by
batch; ``eval.flip_test`` also embeds each crop mirrored (:func:`view_features`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from reidlib.config import Config
from reidlib.data import ImageRecord, ReidDataset, build_transforms
from reidlib.data.records import evenly_spaced
from reidlib.model import Features, ReidModel, frame_sums, memory_format, normalize_features


def tracklet_frames(records: list[ImageRecord], max_frames: int) -> tuple[list[ImageRecord], torch.Tensor]:
    """The frames whose features make each record's: every frame of a tracklet (at most
    ``max_frames``, evenly spaced; 0: all), a still image itself.

    Returns:
        one record per frame (the tracklet's pid and camid) and ``owner`` (F,), the position in
        ``records`` of each frame's tracklet.
    """
    frames, owner = [], []
    for position, record in enumerate(records):
        paths = record.frames or (record.path,)
        paths = [paths[i] for i in evenly_spaced(len(paths), max_frames)]
        frames += [ImageRecord(path, record.pid, record.camid) for path in paths]
        owner += [position] * len(paths)
    return frames, torch.tensor(owner, dtype=torch.int64)


@torch.no_grad()
def extract_features(
    model: ReidModel,
    records: list[ImageRecord],
    cfg: Config,
    device: torch.device,
    desc: str,
    *,
    progress: bool = True,
    images: Mapping[str, torch.Tensor] | None = None,
    flip: bool = False,
) -> dict[str, np.ndarray]:
    """Run the model (eval mode, test transforms) over ``records``.

    ``flip`` (``eval.flip_test``) also runs each crop mirrored left to right and takes the
    normalised sum of the two features (:func:`view_features`).

    A tracklet's feature averages its frames' (at most ``data.max_frames``,
    :func:`tracklet_frames`), summed batch by batch, so a long video never sits in memory.
    ``images`` (:func:`reidlib.data.load_images`) supplies decoded crops instead of the files.

    Returns:
        ``global`` (n, D) and ``parts`` (n, P, D/P) float32, ``pids``, ``camids`` and ``paths``
        (a tracklet's: its middle frame).
    """
    video = any(r.frames for r in records)
    frames, owner = tracklet_frames(records, cfg.data.max_frames) if video else (records, None)
    transform = build_transforms(cfg.data, train=False, from_cache=images is not None)
    loader = DataLoader(
        ReidDataset(frames, transform, images),
        batch_size=cfg.eval.eval_batch_size,
        shuffle=False,
        num_workers=cfg.data.num_workers,
    )
    was_training = model.training
    model.eval()
    globals_, parts = [], []
    sums, start = None, 0  # tracklets: running sums of their frames' features
    for batch in tqdm(loader, desc=desc, leave=False, unit="batch", disable=not progress):
        feats = view_features(model, batch["img"].to(device, memory_format=memory_format(cfg)), flip)
        if owner is None:
            globals_.append(feats.global_)
            parts.append(feats.parts)
        else:
            sums = frame_sums(feats, owner[start : start + len(feats.global_)], len(records), sums)
            start += len(feats.global_)
    model.train(was_training)
    if sums is not None:
        mean = normalize_features(sums)  # the mean of each tracklet's frame features, normalised
        globals_, parts = [mean.global_], [mean.parts]
    return {
        "global": torch.cat(globals_).numpy(),
        "parts": torch.cat(parts).numpy(),
        "pids": np.array([r.pid for r in records], dtype=np.int64),
        "camids": np.array([r.camid for r in records], dtype=np.int64),
        "paths": np.array([r.path for r in records]),
    }


def view_features(model: ReidModel, images: torch.Tensor, flip: bool) -> Features:
    """The model's features of ``images`` (B, 3, H, W) on the CPU in float32; with ``flip``, the
    normalised sum of the features of the crops and of their mirror images (the stripes are
    horizontal, so mirroring keeps each stripe's rows and the sum stays stripe by stripe)."""
    feats = model(images)
    if flip:
        mirrored = model(images.flip(3))  # flip keeps the batch's memory format (channels-last too)
        feats = normalize_features(Features(feats.global_ + mirrored.global_, feats.parts + mirrored.parts))
    return Features(feats.global_.float().cpu(), feats.parts.float().cpu())
