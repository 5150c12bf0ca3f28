"""The torch ``Dataset`` of person crops, the train / test transforms and the decoded-image cache.

An item is a dict ``{"img", "pid", "camid", "index", "path"}``; ``index`` is the record's
position, which for the training split is the image's memory slot. A tracklet's item holds
``sample_frames`` of its frames, ``img`` (S, 3, H, W), one drawn at random from each of S equal
segments of the tracklet (:func:`sample_frame_indices`), so a step sees the whole walk.

With ``data.cache_images`` every crop is decoded and resized once (:func:`load_images`) and held
as a uint8 tensor (3, H, W); the transforms then start from that tensor instead of the file
(``build_transforms(data_cfg, ..., from_cache=True)``), so an epoch costs no JPEG decoding or resizing.
At 128x64 a crop takes 24 KiB: 7,000 training images plus a 20,000-image test split fit in
650 MiB.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import transforms as T
from tqdm.auto import tqdm

from reidlib.config import DataConfig
from reidlib.data.layouts import ImageRecord
from reidlib.data.records import frame_paths
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
    for path in tqdm(frame_paths(records), desc=desc, unit="img", leave=False, mininterval=1.0):
        read_image(path)


def load_images(
    records: Sequence[ImageRecord], height: int, width: int, desc: str = "decoding images"
) -> dict[str, Tensor]:
    """Decode and resize every image (every frame of a tracklet) once: ``{path: uint8 tensor (3, height, width)}``.

    It checks the images as :func:`check_images` does (the DataError names the first bad file),
    so a run that caches needs no separate check.
    """
    resize = T.Resize((height, width), interpolation=T.InterpolationMode.BILINEAR)
    images: dict[str, Tensor] = {}
    for path in tqdm(frame_paths(records), desc=desc, unit="img", leave=False, mininterval=1.0):
        if path not in images:
            images[path] = T.functional.pil_to_tensor(resize(read_image(path)))
    return images


def sample_frame_indices(length: int, count: int, generator: torch.Generator | None = None) -> Tensor:
    """``count`` frame indices of a tracklet of ``length`` frames, in time order: the tracklet is
    cut into ``count`` equal segments and one frame is drawn from each (restricted random
    sampling), so the frames spread over the whole walk; a tracklet shorter than ``count`` repeats
    frames. Shape (count,), int64, each in [0, length)."""
    edges = torch.arange(count + 1, dtype=torch.float64) * (length / count)
    low = edges[:-1].floor()
    width = (edges[1:].floor() - low).clamp(min=1)
    return (low + (torch.rand(count, generator=generator, dtype=torch.float64) * width).floor()).long()


class ReidDataset(Dataset):
    """Person crops from a list of records.

    Args:
        records: ImageRecord list (a split of :class:`~reidlib.data.ReidData`).
        transform: applied to the PIL image (e.g. :func:`build_transforms`), or to the cached
            uint8 tensor when ``images`` is given (``build_transforms(data_cfg, ..., from_cache=True)``).
        images: decoded crops by path (:func:`load_images`); None reads each file when asked.
        sample_frames: frames drawn from a tracklet at each access (:func:`sample_frame_indices`),
            each transformed on its own; a tracklet needs it (still images ignore it).
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        transform: Callable | None = None,
        images: Mapping[str, Tensor] | None = None,
        sample_frames: int = 0,
    ) -> None:
        self.records = list(records)
        self.transform = transform
        self.images = images
        self.sample_frames = sample_frames

    def __len__(self) -> int:
        return len(self.records)

    def _load(self, path: str) -> Tensor | Image.Image:
        img = read_image(path) if self.images is None else self.images[path]
        return img if self.transform is None else self.transform(img)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        if record.frames:
            if not self.sample_frames:
                raise DataError(f"{record.path}: a tracklet's frames are drawn with sample_frames > 0")
            chosen = sample_frame_indices(len(record.frames), self.sample_frames)
            img = torch.stack([self._load(record.frames[i]) for i in chosen.tolist()])  # (S, 3, H, W)
        else:
            img = self._load(record.path)
        return {"img": img, "pid": record.pid, "camid": record.camid, "index": index, "path": record.path}


def build_transforms(data_cfg: DataConfig, *, train: bool, from_cache: bool = False) -> T.Compose:
    """Test: resize, to tensor, normalise (ImageNet statistics). Train adds flip, pad-and-crop and
    random erasing.

    Args:
        data_cfg: config section ``data``: ``height`` and ``width`` (the network's input size), and
            for training ``flip`` (random horizontal flip), ``pad`` (pad by this many pixels, then
            crop back at random; 0 disables), ``random_erasing`` (probability of erasing a random
            rectangle; 0 disables) and ``color_jitter`` (strength s of brightness / contrast /
            saturation jitter, each by up to s, and hue jitter up to s / 10; 0, the paper's,
            disables: it teaches invariance to the cameras' colour casts).
        train: build the training (augmenting) pipeline.
        from_cache: the input is a uint8 tensor already resized to (height, width)
            (:func:`load_images`), so the pipeline skips the resize and converts instead of
            ``ToTensor``; the augmentations are the same operations on the tensor.
    """
    d, size = data_cfg, (data_cfg.height, data_cfg.width)
    steps: list[Callable] = [] if from_cache else [T.Resize(size, interpolation=T.InterpolationMode.BILINEAR)]
    if train:
        if d.flip:
            steps.append(T.RandomHorizontalFlip())
        if d.pad:
            steps += [T.Pad(d.pad), T.RandomCrop(size)]
        if d.color_jitter > 0:
            jitter = d.color_jitter
            steps.append(T.ColorJitter(jitter, jitter, jitter, min(0.5, jitter / 10)))
    steps += [
        T.ConvertImageDtype(torch.float32) if from_cache else T.ToTensor(),
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ]
    if train and d.random_erasing > 0:
        steps.append(T.RandomErasing(p=d.random_erasing, value=0))
    return T.Compose(steps)
