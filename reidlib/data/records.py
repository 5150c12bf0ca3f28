"""What every reader returns: records of images (or tracklets) and the three splits of a dataset.

An :class:`ImageRecord` is ``(path, pid, camid)``, camid counted from 0. A *tracklet* (video
re-ID: one person walking through one camera, :mod:`reidlib.data.video`) is the same record with
its ``frames``, the paths of its images in time order; its ``path`` is its middle frame, the one
picture that stands for it on a contact sheet or in a retrieval grid. A tracklet is one memory
slot in training and one query or gallery item in evaluation.

A :class:`ReidData` holds the ``train``, ``query`` and ``gallery`` lists. Identities may be
unknown: camera folders (:mod:`reidlib.data.cameras`) give every image :data:`UNKNOWN_PID` and
have no query or gallery.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

UNKNOWN_PID = -1  # every image of camera folders: identities unknown


class ImageRecord(NamedTuple):
    path: str  # the image; for a tracklet, its middle frame
    pid: int
    camid: int  # counted from 0
    frames: tuple[str, ...] = ()  # a tracklet's frames in time order; () for a still image


def tracklet(frames: Iterable[str], pid: int, camid: int) -> ImageRecord:
    """The record of a tracklet: ``frames`` in time order (at least one), its middle frame as ``path``."""
    frames = tuple(frames)
    return ImageRecord(frames[len(frames) // 2], pid, camid, frames)


def evenly_spaced(length: int, count: int) -> list[int]:
    """Indices of at most ``count`` of ``length`` frames, evenly spaced from the first to the last
    (all of them when ``count`` is 0 or ``length <= count``); the one rule for a tracklet's frames
    in feature extraction and on a contact sheet."""
    if not count or length <= count:
        return list(range(length))
    return [round(i * (length - 1) / max(count - 1, 1)) for i in range(count)]


def frame_paths(records: Iterable[ImageRecord]) -> list[str]:
    """Every image file the records use: each tracklet's frames, each still image's path."""
    return [path for r in records for path in (r.frames or (r.path,))]


@dataclass(frozen=True)
class ReidData:
    """The three splits of a re-ID dataset."""

    name: str
    root: str
    train: list[ImageRecord]
    query: list[ImageRecord]
    gallery: list[ImageRecord]

    @property
    def num_train_pids(self) -> int:
        return len({r.pid for r in self.train})

    @property
    def num_cameras(self) -> int:
        return len({r.camid for r in self.train + self.query + self.gallery})

    @property
    def identities_known(self) -> bool:
        """False for camera folders, whose training images have no identity (:data:`UNKNOWN_PID`)."""
        return identities_known(r.pid for r in self.train)

    @property
    def is_video(self) -> bool:
        """Whether the records are tracklets (:func:`tracklet`) rather than still images."""
        return any(r.frames for r in self.train + self.query + self.gallery)

    @property
    def has_test_split(self) -> bool:
        """Whether there is a query and a gallery to evaluate on (camera folders have neither)."""
        return bool(self.query) and bool(self.gallery)


def identities_known(pids: Iterable[int]) -> bool:
    """False when any identity is :data:`UNKNOWN_PID` (camera folders give it to every image); a
    method then reports the diagnostics that need identities as unavailable (None)."""
    values = pids.tolist() if hasattr(pids, "tolist") else pids
    return UNKNOWN_PID not in set(values)
