"""Readers of the video (tracklet) re-ID layouts: MARS and DukeMTMC-VideoReID.

A *tracklet* is one person walking through one camera: its frames in time order, read as one
record (:func:`~reidlib.data.records.tracklet`, whose ``path`` is the middle frame). Each reader
returns a :class:`~reidlib.data.records.ReidData` of tracklets, camid counted from 0, in a fixed
order (MARS: the rows of its track files; DukeMTMC-VideoReID: sorted folder names), so each
training tracklet's memory slot is the same on every machine.

What is dropped, and only that: MARS's junk tracks (pid -1) everywhere, and its distractors
(pid 0) from train and query (they stay in the gallery), as the image readers do for Market-1501.
Anything else that does not fit (a name that does not parse, a frame filed under the wrong person
or camera, a row out of range, a stray file) is a :class:`~reidlib.errors.DataError` naming the
file and, where there is one, its line or row.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from scipy.io import loadmat

from reidlib.data.folders import IGNORED_FILES, image_extensions
from reidlib.data.records import ImageRecord, ReidData, tracklet
from reidlib.errors import DataError

# ---------------------------------------------------------------------------------------------
# MARS

MARS_NAME = re.compile(r"(\d{4}|00-1)C(\d)T(\d{4})F(\d{3})\.jpg")  # groups: pid, camera, tracklet, frame
MARS_NAME_TEXT = "PPPPCcTttttFfff.jpg, e.g. 0001C1T0001F001.jpg (PPPP is 00-1 for junk)"
MARS_INFO_FILES = ("train_name.txt", "test_name.txt", "tracks_train_info.mat", "tracks_test_info.mat", "query_IDX.mat")
MARS_EXPECTED = "MARS layout: bbox_train/, bbox_test/ and info/ with " + ", ".join(MARS_INFO_FILES)
TRACK_COLUMNS = "first frame, last frame, pid, camera"


def read_mars(root: str | Path) -> ReidData:
    """MARS (Zheng et al., *MARS: A Video Benchmark for Large-Scale Person Re-identification*, ECCV 2016).

    Frames ``bbox_train/PPPP/PPPPCcTttttFfff.jpg`` and ``bbox_test/PPPP/...`` (person PPPP,
    ``00-1`` for junk; camera c from 1; tracklet tttt; frame fff). The tracks are in ``info/``:
    ``train_name.txt`` and ``test_name.txt`` list one frame name a line; each row of
    ``tracks_train_info.mat`` (variable ``track_train_info``) and ``tracks_test_info.mat``
    (``track_test_info``) is one tracklet, ``first frame, last frame`` (1-based lines of the name
    list, inclusive), ``pid, camera`` (from 1); ``query_IDX.mat`` (``query_IDX``) lists the 1-based
    rows of the test tracks that are queries, and the other test tracks are the gallery.

    pid -1 (junk) is dropped everywhere; pid 0 (distractors) is kept in the gallery only. The
    frame files themselves are not looked at here (MARS has over a million): the bbox folders and
    each person's folder must exist, and a missing frame is named when it is decoded.

    Expected statistics (MARS, as torchreid reports them): train 625 ids / 8,298 tracklets;
    query 626 / 1,980; gallery 622 / 9,330 (incl. distractors, pid 0); 6 cameras.

    Raises:
        DataError naming the file (and its line or row): a missing folder or info file, an
        unreadable .mat file or a missing variable in it, a track row out of the name list's
        range or with first > last, a frame name that does not parse, a frame whose name's pid or
        camera disagrees with its track row, a query row out of range or listed twice, an
        empty split.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset root not found: {root}")
    info = _require(root / "info", folder=True)
    train_dir = _require(root / "bbox_train", folder=True)
    test_dir = _require(root / "bbox_test", folder=True)
    train = _read_mars_tracks(info / "train_name.txt", info / "tracks_train_info.mat", "track_train_info", train_dir)
    test_file = info / "tracks_test_info.mat"
    test = _read_mars_tracks(info / "test_name.txt", test_file, "track_test_info", test_dir)
    is_query = _read_query_rows(info / "query_IDX.mat", test_file, len(test))

    train = [r for r in train if r.pid > 0]  # neither junk (-1) nor distractors (0)
    query = [r for r, q in zip(test, is_query) if q and r.pid > 0]
    gallery = [r for r, q in zip(test, is_query) if not q and r.pid != -1]  # distractors stay
    for split, records, source in (
        ("training", train, train_dir),
        ("query", query, info / "query_IDX.mat"),
        ("gallery", gallery, test_file),
    ):
        if not records:
            raise DataError(f"{source}: no {split} tracklets (after dropping junk, pid -1, and distractors, pid 0)")
    return ReidData("mars", str(root), train, query, gallery)


def _require(path: Path, *, folder: bool = False) -> Path:
    """``path``, or a DataError that names it and the MARS layout."""
    found = path.is_dir() if folder else path.is_file()
    if not found:
        raise DataError(f"missing {'folder' if folder else 'file'} {path} ({MARS_EXPECTED})")
    return path


def _load_mat(path: Path, variable: str) -> np.ndarray:
    """The whole numbers of MATLAB variable ``variable`` in ``path`` as int64."""
    _require(path)
    try:
        contents = loadmat(path)
    except Exception as err:  # a damaged file raises anything from IndexError to MatReadError
        raise DataError(f"{path}: unreadable .mat file ({type(err).__name__}: {err})") from err
    if variable not in contents:
        found = ", ".join(sorted(k for k in contents if not k.startswith("__"))) or "none"
        raise DataError(f"{path}: no MATLAB variable {variable!r} (found: {found})")
    values = np.asarray(contents[variable])
    if not np.issubdtype(values.dtype, np.number) or not np.array_equal(values, np.round(values)):
        raise DataError(f"{path}: {variable!r} must hold whole numbers, got {values.dtype} values")
    return values.astype(np.int64)


def _read_mars_tracks(names_file: Path, tracks_file: Path, variable: str, frames_dir: Path) -> list[ImageRecord]:
    """One tracklet per row of ``tracks_file``, in row order, junk and distractors included."""
    names = [line.strip() for line in _require(names_file).read_text().splitlines()]
    rows = _load_mat(tracks_file, variable)
    if rows.ndim != 2 or rows.shape[1] != 4:
        raise DataError(
            f"{tracks_file}: {variable!r} has shape {rows.shape}; expected one row per tracklet with 4 columns "
            f"({TRACK_COLUMNS})"
        )
    records, persons = [], {}
    for number, (first, last, pid, cam) in enumerate(rows.tolist(), start=1):
        where = f"{tracks_file}: row {number} ({TRACK_COLUMNS} = {first}, {last}, {pid}, {cam})"
        if not 1 <= first <= last <= len(names):
            raise DataError(
                f"{where}: frames {first} to {last} are not a range of lines 1 to {len(names)} of {names_file}"
            )
        if cam < 1:
            raise DataError(f"{where}: camera {cam}; cameras are counted from 1")
        for line in range(first, last + 1):
            name = names[line - 1]
            match = MARS_NAME.fullmatch(name)
            if match is None:
                raise DataError(f"{names_file}:{line}: frame name {name!r} does not parse; expected {MARS_NAME_TEXT}")
            name_pid = -1 if match[1] == "00-1" else int(match[1])
            if (name_pid, int(match[2])) != (pid, cam):
                raise DataError(
                    f"{names_file}:{line}: frame {name} is pid {name_pid}, camera {match[2]}, but its track, "
                    f"row {number} of {tracks_file}, says pid {pid}, camera {cam}"
                )
        persons.setdefault(names[first - 1][:4], (first, names[first - 1]))  # its frames' pids agree: one folder
        records.append(tracklet((str(frames_dir / name[:4] / name) for name in names[first - 1 : last]), pid, cam - 1))
    for person, (line, name) in persons.items():  # one look per person folder, not one per frame
        if not (frames_dir / person).is_dir():
            raise DataError(f"missing folder {frames_dir / person} (where {name}, {names_file}:{line}, should be)")
    return records


def _read_query_rows(query_file: Path, tracks_file: Path, num_tracks: int) -> list[bool]:
    """For each test track, whether ``query_IDX`` lists it (1-based rows) as a query."""
    rows = _load_mat(query_file, "query_IDX").ravel()
    is_query = [False] * num_tracks
    for row in rows.tolist():
        if not 1 <= row <= num_tracks:
            raise DataError(f"{query_file}: query row {row} is not one of the {num_tracks} rows of {tracks_file}")
        if is_query[row - 1]:
            raise DataError(f"{query_file}: query row {row} is listed twice")
        is_query[row - 1] = True
    return is_query


# ---------------------------------------------------------------------------------------------
# DukeMTMC-VideoReID

# Both spellings found in the wild, one per name (the backreference): 0001_C6_F0099_X30823.jpg
# and 0001C6F0099X30823.jpg. Groups: pid, separator, camera, frame in the tracklet, frame in the video.
DUKE_VIDEO_NAME = re.compile(r"(\d+)(_?)C(\d+)\2F(\d+)\2X(\d+)\.(?:jpg|jpeg|png)", re.IGNORECASE)
DUKE_VIDEO_NAME_TEXT = "PPPP_Cc_FFFF_XNNNNN.jpg or PPPPCcFFFFXNNNNN.jpg, e.g. 0001_C6_F0099_X30823.jpg"
DUKE_VIDEO_SPLITS = ("train", "query", "gallery")


def read_duke_video(root: str | Path) -> ReidData:
    """DukeMTMC-VideoReID (Wu et al., *Exploit the Unknown Gradually: One-Shot Video-Based Person
    Re-Identification by Stepwise Learning*, CVPR 2018; from Ristani et al., ECCV-W 2016).

    Folders ``train/``, ``query/`` and ``gallery/``, each ``PPPP/TTTT/<frames>`` (person, tracklet),
    frame names ``PPPP_Cc_FFFF_XNNNNN.jpg`` or ``PPPPCcFFFFXNNNNN.jpg`` (pid, camera c from 1, frame
    FFFF within the tracklet, frame NNNNN of the camera's video). One tracklet per TTTT folder, its
    frames sorted by FFFF. Nothing is dropped: the gallery's 408 distractor identities have ids of
    their own.

    Expected statistics: train 702 ids / 2,196 tracklets; query 702 / 702; gallery 1,110 / 2,636
    (702 + 408 distractor ids); 8 cameras.

    Raises:
        DataError naming the path: a missing split folder, a file where a person or tracklet
        folder belongs, a folder name that is not a number, a person folder with no tracklet,
        an empty tracklet folder, a file that is not an image, a frame name that does not parse,
        a frame whose pid is not its person folder's, frames of one tracklet from different cameras.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset root not found: {root}")
    expected = "DukeMTMC-VideoReID layout: train/, query/ and gallery/, each PPPP/TTTT/<frames>.jpg"
    for split in DUKE_VIDEO_SPLITS:
        if not (root / split).is_dir():
            raise DataError(f"missing folder {root / split} ({expected})")
    known = image_extensions()
    train, query, gallery = (_read_tracklet_split(root / split, known) for split in DUKE_VIDEO_SPLITS)
    return ReidData("duke_video", str(root), train, query, gallery)


def _numbered_folders(folder: Path, kind: str) -> list[Path]:
    """The sub-folders of ``folder`` (sorted), each named by a number; any other file is an error."""
    folders = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        path = Path(entry.path)
        if not entry.is_dir():
            if entry.name in IGNORED_FILES:
                continue
            raise DataError(f"{path}: a file where {kind} folders belong; {folder} should hold only {kind} folders")
        if not entry.name.isdigit():
            raise DataError(f"{path}: {kind} folder name is not a number (expected e.g. 0001)")
        folders.append(path)
    return folders


def _read_tracklet_split(split_dir: Path, known: frozenset[str]) -> list[ImageRecord]:
    """Every ``PPPP/TTTT/`` tracklet of one split, in sorted order."""
    records = []
    for person in _numbered_folders(split_dir, "person"):
        tracks = _numbered_folders(person, "tracklet")
        if not tracks:
            raise DataError(
                f"{person}: no tracklet folders (expected {person}/TTTT/<frames>.jpg); fill it or move it out"
            )
        records += [_read_duke_tracklet(track, int(person.name), known) for track in tracks]
    if not records:
        raise DataError(f"{split_dir}: no tracklets (expected {split_dir}/PPPP/TTTT/<frames>.jpg)")
    return records


def _read_duke_tracklet(folder: Path, pid: int, known: frozenset[str]) -> ImageRecord:
    """One tracklet folder: its frames sorted by their number within the tracklet.

    The folder is listed with ``os.scandir``, which tells files from folders without a stat per
    frame (DukeMTMC-VideoReID has nearly a million); the rule for non-images is
    :func:`reidlib.data.folders.list_images`'s.
    """
    frames = []  # (frame number, name, camera)
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        path = Path(entry.path)
        if entry.is_dir():
            raise DataError(f"{path}: a folder inside tracklet folder {folder}, which should hold only frames")
        if entry.name in IGNORED_FILES:
            continue
        if path.suffix.lower() not in known:
            raise DataError(f"{path}: not an image (by its extension); move it out of {folder}")
        match = DUKE_VIDEO_NAME.fullmatch(entry.name)
        if match is None:
            raise DataError(f"{path}: name does not parse; expected {DUKE_VIDEO_NAME_TEXT}")
        if int(match[1]) != pid:
            raise DataError(f"{path}: pid {int(match[1])} in the name, but it lies in person folder {folder.parent}")
        frames.append((int(match[4]), entry.name, int(match[3])))
    if not frames:
        raise DataError(f"{folder}: empty tracklet folder (no frames); fill it or move it out")
    frames.sort()  # time order
    camera = frames[0][2]
    for _, name, cam in frames:
        if cam != camera:
            raise DataError(
                f"{folder / name}: camera {cam}, but {frames[0][1]} in the same tracklet folder is camera "
                f"{camera}; a tracklet is one person in one camera"
            )
    if camera < 1:
        raise DataError(f"{folder / frames[0][1]}: camera {camera}; cameras are counted from 1")
    return tracklet((str(folder / name) for _, name, _ in frames), pid, camera - 1)
