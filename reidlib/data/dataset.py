"""The torch ``Dataset`` of person crops, and the train / test transforms.

An item is a dict ``{"img", "pid", "camid", "index", "path"}``; ``index`` is the record's
position, which for the training split is the image's memory slot.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import transforms as T
from tqdm.auto import tqdm

from reidlib.data.layouts import ImageRecord
from reidlib.errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def read_image(path: str) -> Image.Image:
    """Open an image as RGB; a missing, empty or corrupt file is a DataError naming it."""
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise DataError(f"{path}: empty image file (0 bytes)")
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except FileNotFoundError as err:
        raise DataError(f"{path}: image file not found") from err
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f"{path}: unreadable image ({err})") from err


def check_images(records: Sequence[ImageRecord], desc: str = "checking images") -> None:
    """Decode every image once, so that a corrupt, truncated or empty file stops a run before it
    writes anything (and not an hour into training); the DataError names the first bad file."""
    for record in tqdm(records, desc=desc, unit="img", leave=False, mininterval=1.0):
        read_image(record.path)


class ReidDataset(Dataset):
    """Person crops from a list of records.

    Args:
        records: ImageRecord list (a split of :class:`~reidlib.data.ReidData`).
        transform: applied to the PIL image (e.g. :func:`build_transforms`).
    """

    def __init__(self, records: Sequence[ImageRecord], transform: Callable | None = None) -> None:
        self.records = list(records)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        img = read_image(record.path)
        if self.transform is not None:
            img = self.transform(img)
        return {"img": img, "pid": record.pid, "camid": record.camid, "index": index, "path": record.path}


def build_transforms(
    height: int = 256,
    width: int = 128,
    *,
    train: bool,
    flip: bool = True,
    pad: int = 10,
    random_erasing: float = 0.5,
    color_jitter: float = 0.0,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> T.Compose:
    """Test: resize, to tensor, normalise. Train adds flip, pad-and-crop and random erasing.

    Args:
        height, width: the network's input size.
        train: build the training (augmenting) pipeline.
        flip: random horizontal flip (train).
        pad: pad by this many pixels, then crop back at random (train; 0 disables).
        random_erasing: probability of erasing a random rectangle (train; 0 disables).
        color_jitter: strength s of brightness / contrast / saturation jitter (each by up to s)
            and hue jitter (up to s / 10), train only; 0 (the paper) disables. It teaches
            invariance to the cameras' colour casts.
    """
    steps: list[Callable] = [T.Resize((height, width), interpolation=T.InterpolationMode.BILINEAR)]
    if train:
        if flip:
            steps.append(T.RandomHorizontalFlip())
        if pad:
            steps += [T.Pad(pad), T.RandomCrop((height, width))]
        if color_jitter > 0:
            steps.append(T.ColorJitter(color_jitter, color_jitter, color_jitter, min(0.5, color_jitter / 10)))
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    if train and random_erasing > 0:
        steps.append(T.RandomErasing(p=random_erasing, value=0))
    return T.Compose(steps)
