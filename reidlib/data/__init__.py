"""Data: dataset readers (Market-1501 layout and others), the torch Dataset, transforms.

The synthetic benchmark lives in :mod:`reidlib.data.synthetic` (``python -m reidlib synth``).
"""

from reidlib.data.dataset import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ReidDataset,
    build_transforms,
    check_images,
    load_images,
    read_image,
)
from reidlib.data.layouts import (
    ImageRecord,
    ReidData,
    format_summary,
    read_cuhk03,
    read_dataset,
    read_dukemtmc,
    read_market_layout,
    read_msmt17,
    summarize,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageRecord",
    "ReidData",
    "ReidDataset",
    "build_transforms",
    "check_images",
    "format_summary",
    "load_images",
    "read_cuhk03",
    "read_dataset",
    "read_dukemtmc",
    "read_image",
    "read_market_layout",
    "read_msmt17",
    "summarize",
]
