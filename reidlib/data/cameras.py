"""Camera folders: unlabelled person crops sorted by camera, ``ROOT/<camera>/**/<image>``.

The layout for training on your own cameras: only each image's camera is known (the first
sub-folder below the root, as :func:`reidlib.data.folders.folder_cameras` says), every pid is
:data:`~reidlib.data.records.UNKNOWN_PID`, and there is no query or gallery, so a run evaluates
on a labelled set given apart (``train --eval-data``) or not at all. ``--layout auto`` reads a
root as camera folders only when it holds a sub-folder and none of :data:`LAYOUT_MARKERS`.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from reidlib.data.folders import IGNORED_FILES, folder_cameras, image_size, list_images
from reidlib.data.records import UNKNOWN_PID, ImageRecord, ReidData
from reidlib.errors import DataError

log = logging.getLogger(__name__)

# Any of these names in a root makes it a labelled layout, never camera folders: Market-1501's (and
# DukeMTMC-reID's) folders, also its original gt_bbox/ and gt_query/, CUHK03-NP's variants,
# MSMT17's list files and image folders, MARS's frame folders and DukeMTMC-VideoReID's split folders
# (train/, query/, gallery/).
LAYOUT_MARKERS = (
    "bounding_box_train",
    "bounding_box_test",
    "query",
    "gt_bbox",
    "gt_query",
    "detected",
    "labeled",
    "list_train.txt",
    "list_val.txt",
    "list_query.txt",
    "list_gallery.txt",
    "train",
    "test",
    "mask_train_v2",
    "mask_test_v2",
    "bbox_train",
    "bbox_test",
    "gallery",
)
MIN_CAMERAS = 2


def layout_marker(root: Path) -> str | None:
    """The first of :data:`LAYOUT_MARKERS` that ``root`` holds, or None."""
    return next((name for name in LAYOUT_MARKERS if (root / name).exists()), None)


def read_camera_folders(root: str | Path) -> ReidData:
    """Unlabelled crops sorted by camera: ``ROOT/<camera>/**/<image>``, any image type Pillow opens.

    Each sub-folder of ``root`` is one camera (``camid`` 0, 1, ... in sorted order of the names;
    deeper folders belong to it: :func:`~reidlib.data.folders.folder_cameras`); every pid is
    :data:`UNKNOWN_PID`; query and gallery are empty. Each image's header is read
    (:func:`crop_size`): sizes may differ (the transforms resize every crop), but a crop wider
    than tall is refused. Images are decoded only when a run checks them (``train``).

    Raises:
        DataError naming the path: a root in a labelled layout (:data:`LAYOUT_MARKERS`), a file
        directly in ``root``, an empty camera folder, fewer than :data:`MIN_CAMERAS` cameras, a
        file that is not an image, an empty or unreadable image, a crop wider than tall.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset root not found: {root}")
    marker = layout_marker(root)
    if marker is not None:
        raise DataError(f"{root / marker}: {root} is a labelled layout, not camera folders; read it with --layout auto")
    cameras = []
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            cameras.append(entry)
        elif entry.name not in IGNORED_FILES:
            raise DataError(f"{entry}: a file directly in {root}; camera folders hold every image in {root}/<camera>/")
    paths = []
    for folder in cameras:
        images = list_images(folder)
        if not images:
            raise DataError(f"{folder}: empty camera folder (no images in it or below it); fill it or move it out")
        paths += images
    if len(cameras) < MIN_CAMERAS:
        found = f"only one camera folder ({cameras[0].name})" if cameras else "no camera folder"
        raise DataError(
            f"{root}: {found}; camera folders need at least {MIN_CAMERAS} cameras "
            f"({root}/<camera>/...), since the methods learn to match people across cameras"
        )
    camids, _ = folder_cameras(root, paths)
    widths, heights = zip(*(crop_size(path) for path in paths))
    log.info(
        "%s: %d cameras, %d images, identities unknown; crops from %dx%d to %dx%d pixels (each is resized to "
        "data.height x data.width)",
        root,
        len(cameras),
        len(paths),
        min(widths),
        min(heights),
        max(widths),
        max(heights),
    )
    records = [ImageRecord(str(path), UNKNOWN_PID, int(camid)) for path, camid in zip(paths, camids)]
    return ReidData("cameras", str(root), records, [], [])


def crop_size(path: Path) -> tuple[int, int]:
    """(width, height) of a crop from its header; a DataError names an empty or unreadable file,
    or a crop wider than tall (a whole frame, say: camera folders hold upright people)."""
    width, height = image_size(path)
    if width > height:
        raise DataError(
            f"{path}: {width}x{height} pixels, wider than tall; camera folders hold person crops "
            "(taller than wide), not whole frames"
        )
    return width, height


def camera_names(data: ReidData) -> dict[int, str]:
    """Each camid's name: its folder's for camera folders, ``c1``, ``c2``, ... (camid + 1) otherwise."""
    records = data.train + data.query + data.gallery
    if data.name != "cameras":
        return {r.camid: f"c{r.camid + 1}" for r in records}
    camids, names = folder_cameras(data.root, [Path(r.path) for r in records])
    return dict(zip(camids.tolist(), names.tolist()))


def format_cameras(data: ReidData) -> str:
    """Images per camera of camera folders (identities unknown, no query or gallery)."""
    names = camera_names(data)
    counts = Counter(r.camid for r in data.train)
    width = max(8, *(len(name) for name in names.values()))
    rule = "  " + "-" * (width + 13)
    lines = [
        f"=> camera folders ({data.root}): identities unknown, no query or gallery",
        rule,
        f"  {'camera':<{width}} | # images",
        rule,
    ]
    lines += [f"  {names[camid]:<{width}} | {counts[camid]:8d}" for camid in sorted(names)]
    lines += [rule, f"  {'total':<{width}} | {len(data.train):8d}   ({len(names)} cameras)"]
    return "\n".join(lines)
