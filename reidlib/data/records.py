"""What every reader returns: records of images and the three splits of a dataset.

An :class:`ImageRecord` is ``(path, pid, camid)``, camid counted from 0. A :class:`ReidData`
holds the ``train``, ``query`` and ``gallery`` lists. Identities may be unknown: camera folders
(:mod:`reidlib.data.cameras`) give every image :data:`UNKNOWN_PID` and have no query or gallery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, NamedTuple

UNKNOWN_PID = -1  # every image of camera folders: identities unknown


class ImageRecord(NamedTuple):
    path: str
    pid: int
    camid: int  # counted from 0


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
    def has_test_split(self) -> bool:
        """Whether there is a query and a gallery to evaluate on (camera folders have neither)."""
        return bool(self.query) and bool(self.gallery)


def identities_known(pids: Iterable[int]) -> bool:
    """False when any identity is :data:`UNKNOWN_PID` (camera folders give it to every image); a
    method then reports the diagnostics that need identities as unavailable (None)."""
    values = pids.tolist() if hasattr(pids, "tolist") else pids
    return UNKNOWN_PID not in set(values)
