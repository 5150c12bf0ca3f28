"""Data: dataset readers (Market-1501 layout and others, and unlabelled camera folders), the torch
Dataset, transforms.

The synthetic benchmark lives in :mod:`reidlib.data.synthetic` (``python -m reidlib synth``).
"""

from reidlib.data.cameras import camera_names, read_camera_folders
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
from reidlib.data.records import UNKNOWN_PID, frame_paths, identities_known, tracklet
from reidlib.data.video import read_duke_video, read_mars

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "UNKNOWN_PID",
    "ImageRecord",
    "ReidData",
    "ReidDataset",
    "build_transforms",
    "camera_names",
    "check_images",
    "format_summary",
    "frame_paths",
    "identities_known",
    "load_images",
    "read_camera_folders",
    "read_cuhk03",
    "read_dataset",
    "read_duke_video",
    "read_dukemtmc",
    "read_image",
    "read_market_layout",
    "read_mars",
    "read_msmt17",
    "summarize",
    "tracklet",
]
