"""Readers of the public person re-ID datasets' folder layouts, and of unlabelled camera folders.

Every reader returns a :class:`ReidData` with ``train``, ``query`` and ``gallery`` lists of
:class:`ImageRecord` ``(path, pid, camid)``, camid counted from 0. Files are sorted, so the order
(and hence each training image's memory slot) is the same on every machine.

What is dropped, and only that: Market-1501's junk images (pid -1) everywhere, and its
distractors (pid 0) from the query (they stay in the gallery, as the protocol wants). Any other
file that is not an image (by extension) is an error, not silently skipped, so a stray file
or a typo in a name is found.

The video layouts, MARS and DukeMTMC-VideoReID (:mod:`reidlib.data.video`), give tracklets: records
whose ``frames`` are a person's images in one camera, in time order.

Camera folders (:mod:`reidlib.data.cameras`, layout ``cameras``), ``ROOT/<camera>/**/<image>``,
know only each image's camera: every pid is ``UNKNOWN_PID``, and query and gallery are empty.
:func:`detect_layout` says how ``auto`` tells them from the labelled layouts.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

from reidlib.data.cameras import format_cameras, layout_marker, read_camera_folders
from reidlib.data.folders import IGNORED_FILES
from reidlib.data.records import ImageRecord, ReidData, frame_paths, identities_known
from reidlib.data.video import MARS_INFO_FILES, read_duke_video, read_mars
from reidlib.errors import DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")  # of the labelled layouts; camera folders take any Pillow opens


# ---------------------------------------------------------------------------------------------
# Shared plumbing


def _require_dir(path: Path, expected: str) -> Path:
    if not path.is_dir():
        raise DataError(f"missing folder {path} (expected {expected})")
    return path


def _image_files(folder: Path) -> list[Path]:
    files = []
    for path in sorted(folder.iterdir()):
        if path.is_dir() or path.name in IGNORED_FILES:
            continue
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise DataError(f"{path}: not an image ({', '.join(IMAGE_EXTENSIONS)} expected); move it out of {folder}")
        files.append(path)
    return files


def _read_folder(
    folder: Path, pattern: re.Pattern, pattern_text: str, *, drop_distractors: bool, cam_base: int = 1
) -> list[ImageRecord]:
    """Parse every image name in ``folder`` with ``pattern`` (groups: pid, camera)."""
    records = []
    for path in _image_files(folder):
        match = pattern.fullmatch(path.name)
        if match is None:
            raise DataError(f"{path}: name does not parse; expected {pattern_text}")
        pid, cam = int(match.group(1)), int(match.group(2))
        if pid == -1 or (drop_distractors and pid == 0):
            continue  # junk everywhere; distractors only outside the gallery
        if cam < cam_base:
            raise DataError(f"{path}: camera {cam} is below {cam_base}, the first camera's number")
        records.append(ImageRecord(str(path), pid, cam - cam_base))
    if not records:
        raise DataError(f"{folder}: no usable images (expected names like {pattern_text})")
    return records


def _three_folders(root: Path, name: str, pattern: re.Pattern, pattern_text: str) -> ReidData:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset root not found: {root}")
    expected = "bounding_box_train/, query/ and bounding_box_test/"
    train = _read_folder(
        _require_dir(root / "bounding_box_train", expected), pattern, pattern_text, drop_distractors=True
    )
    query = _read_folder(_require_dir(root / "query", expected), pattern, pattern_text, drop_distractors=True)
    gallery = _read_folder(
        _require_dir(root / "bounding_box_test", expected), pattern, pattern_text, drop_distractors=False
    )
    return ReidData(name, str(root), train, query, gallery)


# ---------------------------------------------------------------------------------------------
# The datasets

MARKET_PATTERN = re.compile(r"(-?\d+)_c(\d+)s\d+_\d+_\d+\.(?:jpg|jpeg|png)", re.IGNORECASE)
DUKE_PATTERN = re.compile(r"(\d+)_c(\d+)_f\d+\.(?:jpg|jpeg|png)", re.IGNORECASE)
CUHK03_PATTERN = re.compile(r"(\d+)_c(\d+)_\d+\.(?:jpg|jpeg|png)", re.IGNORECASE)


def read_market_layout(root: str | Path) -> ReidData:
    """Market-1501 (Zheng et al., *Scalable Person Re-identification: A Benchmark*, ICCV 2015).

    Folders ``bounding_box_train/``, ``query/``, ``bounding_box_test/``; names
    ``PPPP_cCsS_FFFFFF_NN.jpg`` (pid, camera C from 1, sequence S, frame, box). pid -1 (junk) is
    dropped; pid 0 (distractors) is kept in the gallery only. The synthetic benchmark writes this
    layout too.

    Expected statistics (Market-1501): train 751 ids / 12,936 images; query 750 / 3,368;
    gallery 751 / 15,913 after junk removal (incl. distractors, pid 0); 6 cameras.
    """
    pattern_text = "PPPP_cCsS_FFFFFF_NN.jpg, e.g. 0002_c1s1_000451_03.jpg"
    return _three_folders(Path(root), "market1501", MARKET_PATTERN, pattern_text)


def read_dukemtmc(root: str | Path) -> ReidData:
    """DukeMTMC-reID (Zheng, Zheng, Yang, ICCV 2017; from Ristani et al., ECCV-W 2016).

    Same folders as Market-1501; names ``PPPP_cC_fFFFFFFF.jpg``. Expected statistics:
    train 702 ids / 16,522 images; query 702 / 2,228; gallery 1,110 / 17,661; 8 cameras.
    """
    return _three_folders(Path(root), "dukemtmc", DUKE_PATTERN, "PPPP_cC_fFFFFFFF.jpg, e.g. 0001_c2_f0046182.jpg")


def read_cuhk03(root: str | Path, variant: str = "detected") -> ReidData:
    """CUHK03 under the new protocol (Li et al., CVPR 2014; split of Zhong et al., CVPR 2017).

    ``root/detected/`` or ``root/labeled/`` (``variant``), each with the three Market-style
    folders and names ``PPPP_cC_NN.png``. Expected statistics (767/700 split): train 767 ids /
    7,365 (detected) or 7,368 (labeled) images; query 700 / 1,400; gallery 700 / 5,332; 2 cameras.
    """
    if variant not in ("detected", "labeled"):
        raise DataError(f"CUHK03 variant must be 'detected' or 'labeled', got {variant!r}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset root not found: {root}")
    sub = _require_dir(root / variant, "detected/ or labeled/ (CUHK03 new-protocol layout)")
    data = _three_folders(sub, f"cuhk03-{variant}", CUHK03_PATTERN, "PPPP_cC_NN.png, e.g. 0001_c1_01.png")
    return ReidData(data.name, str(root), data.train, data.query, data.gallery)


MSMT_CAMERA = re.compile(r"\d+_\d+_(\d+)_")


def _read_msmt_list(root: Path, list_file: Path, image_dir: Path) -> list[ImageRecord]:
    if not list_file.is_file():
        raise DataError(
            f"missing list file {list_file} (MSMT17 layout: list_train.txt, list_query.txt, list_gallery.txt)"
        )
    records = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"{list_file}:{number}: expected 'relative/path.jpg PID', got {line!r}")
        rel, pid = parts[0], int(parts[1])
        cam = MSMT_CAMERA.match(Path(rel).name)
        if cam is None:
            raise DataError(
                f"{list_file}:{number}: image name {Path(rel).name!r} does not parse; expected PPPP_NNN_CC_...jpg"
            )
        records.append(ImageRecord(str(image_dir / rel), pid, int(cam.group(1)) - 1))
    if not records:
        raise DataError(f"{list_file}: empty split")
    return records


def read_msmt17(root: str | Path) -> ReidData:
    """MSMT17 (Wei et al., *Person Transfer GAN to Bridge Domain Gap for Person Re-ID*, CVPR 2018).

    List files ``list_train.txt`` (+ ``list_val.txt`` if present, merged into train as is
    customary), ``list_query.txt``, ``list_gallery.txt``, lines ``relative/path PID``; images under
    ``train/`` and ``test/`` (or ``mask_train_v2/`` and ``mask_test_v2/`` for MSMT17_V2); camera
    from the name ``PPPP_NNN_CC_...jpg``. Expected statistics: train 1,041 ids / 32,621 images;
    query 3,060 / 11,659; gallery 3,060 / 82,161; 15 cameras.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset root not found: {root}")
    train_dir, test_dir = root / "train", root / "test"
    if not train_dir.is_dir() and (root / "mask_train_v2").is_dir():
        train_dir, test_dir = root / "mask_train_v2", root / "mask_test_v2"
    train = _read_msmt_list(root, root / "list_train.txt", train_dir)
    if (root / "list_val.txt").is_file():
        train += _read_msmt_list(root, root / "list_val.txt", train_dir)
    query = _read_msmt_list(root, root / "list_query.txt", test_dir)
    gallery = _read_msmt_list(root, root / "list_gallery.txt", test_dir)
    return ReidData("msmt17", str(root), train, query, gallery)


READERS: dict[str, Callable[[Path], ReidData]] = {
    "market1501": read_market_layout,
    "dukemtmc": read_dukemtmc,
    "msmt17": read_msmt17,
    "cuhk03": read_cuhk03,
    "mars": read_mars,
    "duke_video": read_duke_video,
    "cameras": read_camera_folders,
}


def detect_layout(root: Path) -> str:
    """Guess the layout of ``root`` from its files.

    ``list_train.txt``: MSMT17; ``detected/`` or ``labeled/``: CUHK03-NP; ``bbox_train/``,
    ``bbox_test/`` or an ``info/`` holding one of MARS's info files: MARS; a ``train/``, ``query/``
    or ``gallery/`` holding ``PPPP/TTTT/`` folders: DukeMTMC-VideoReID (a partial root of either is
    read by its reader, which names what is missing); ``bounding_box_train/`` with DukeMTMC-reID
    names: DukeMTMC-reID. Otherwise, a root that holds a sub-folder and none of
    :data:`reidlib.data.cameras.LAYOUT_MARKERS` is camera folders (so a Market-1501 root, or a
    damaged one, never is); anything else is read as Market-1501, whose reader names what is missing.
    """
    if (root / "list_train.txt").is_file():
        return "msmt17"
    if (root / "detected").is_dir() or (root / "labeled").is_dir():
        return "cuhk03"
    if any((root / name).is_dir() for name in ("bbox_train", "bbox_test")) or any(
        (root / "info" / name).is_file() for name in MARS_INFO_FILES
    ):
        return "mars"
    if any(_holds_tracklet_folders(root / split) for split in ("train", "query", "gallery")):
        return "duke_video"
    train = root / "bounding_box_train"
    if train.is_dir():
        first = next((p.name for p in sorted(train.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS), "")
        if DUKE_PATTERN.fullmatch(first):
            return "dukemtmc"
    if layout_marker(root) is None and any(p.is_dir() for p in root.iterdir()):
        return "cameras"
    return "market1501"


def _holds_tracklet_folders(split: Path) -> bool:
    """Whether the first sub-folder of ``split`` has sub-folders itself (``PPPP/TTTT/``), as
    DukeMTMC-VideoReID's do and MSMT17's ``train/PPPP/`` and Market-1501's ``query/`` do not."""
    if not split.is_dir():
        return False
    person = next((p for p in sorted(split.iterdir()) if p.is_dir()), None)
    return person is not None and any(p.is_dir() for p in person.iterdir())


def read_dataset(root: str | Path, layout: str = "auto") -> ReidData:
    """Read a dataset by layout name, or detect it (``"auto"``)."""
    root = Path(root)
    if layout != "auto" and layout not in READERS:
        raise DataError(f"unknown layout {layout!r}; known: auto, {', '.join(READERS)}")
    if not str(root) or not root.is_dir():
        raise DataError(f"dataset root not found: {root}")
    name = detect_layout(root) if layout == "auto" else layout
    log.debug("reading %s as %s", root, name)
    return READERS[name](root)


def summarize(data: ReidData) -> list[dict[str, int | str | None]]:
    """ids / images / cameras per split; ids None when identities are unknown (camera folders).

    For a video set (:attr:`ReidData.is_video`) ``images`` counts the records, which are
    tracklets, and each row has ``frames`` too, the frames of those tracklets.
    """
    rows = []
    for split, records in (("train", data.train), ("query", data.query), ("gallery", data.gallery)):
        row = {
            "split": split,
            "ids": len({r.pid for r in records}) if identities_known(r.pid for r in records) else None,
            "images": len(records),
            "cameras": len({r.camid for r in records}),
        }
        if data.is_video:
            row["frames"] = len(frame_paths(records))
        rows.append(row)
    return rows


def format_summary(data: ReidData) -> str:
    """The table re-ID users expect (as torchreid prints it): ids / images / cameras per split, or
    for a video set ids / tracklets / frames / cameras and the range of frames per tracklet; for
    camera folders, the images of each camera."""
    if data.name == "cameras":
        return format_cameras(data)
    rows = summarize(data)
    if data.is_video:
        rule = "  " + "-" * 53
        lines = [f"=> {data.name} ({data.root})", rule, "  subset   | # ids | # tracklets | # frames | # cameras", rule]
        lines += [
            f"  {r['split']:<8} | {r['ids']:5d} | {r['images']:11d} | {r['frames']:8d} | {r['cameras']:9d}"
            for r in rows
        ]
        lengths = [len(r.frames) for r in data.train + data.query + data.gallery]
        mean = sum(lengths) / len(lengths)
        lines += [rule, f"  frames per tracklet: {min(lengths)} to {max(lengths)}, mean {mean:.1f}"]
        unit = "tracklets"
    else:
        lines = [
            f"=> {data.name} ({data.root})",
            "  ----------------------------------------",
            "  subset   | # ids | # images | # cameras",
            "  ----------------------------------------",
        ]
        lines += [f"  {r['split']:<8} | {r['ids']:5d} | {r['images']:8d} | {r['cameras']:9d}" for r in rows]
        lines.append("  ----------------------------------------")
        unit = "images"
    distractors = sum(r.pid == 0 for r in data.gallery)
    if distractors:
        lines.append(f"  (gallery includes {distractors} distractor {unit}, pid 0)")
    return "\n".join(lines)
