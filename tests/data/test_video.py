"""The video (tracklet) layouts, MARS and DukeMTMC-VideoReID, on trees the tests build, and the real
mini_mars sample: records, frame order, the split rules, auto detection, the summary, bad inputs."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from reidlib.cli import main
from reidlib.data import format_summary, read_camera_folders, read_dataset, read_duke_video, read_mars, summarize
from reidlib.data.layouts import detect_layout
from reidlib.errors import DataError
from tests.helpers import write_jpeg, write_tree

# --- MARS ------------------------------------------------------------------------------------------

# (person as in the name, camera from 1, tracklet number, frames), one track row each, in row order
MARS_TRAIN = [("0001", 1, 1, 3), ("0001", 2, 2, 2), ("0002", 3, 1, 2), ("00-1", 1, 1, 2), ("0000", 4, 1, 1)]
MARS_TEST = [
    ("0005", 1, 1, 2),
    ("0005", 2, 2, 3),
    ("0006", 6, 1, 2),
    ("0000", 3, 1, 2),
    ("00-1", 5, 1, 1),
    ("0006", 1, 2, 2),
    ("0000", 2, 2, 1),
]
MARS_QUERY = [1, 3, 4]  # 1-based test rows: 0005 in c1, 0006 in c6, and a distractor (dropped: no query, no gallery)
MARS_VARIABLES = {"train": "track_train_info", "test": "track_test_info"}


def mars_pid(person: str) -> int:
    return -1 if person == "00-1" else int(person)


def write_mars(root: Path, train=MARS_TRAIN, test=MARS_TEST, query=MARS_QUERY) -> Path:
    """A tiny MARS tree: frames (tiny JPEGs) in bbox_{train,test}/PPPP/, name lists and .mat files in info/."""
    (root / "info").mkdir(parents=True)
    for split, tracks in (("train", train), ("test", test)):
        names, rows = [], []
        for person, cam, number, length in tracks:
            first = len(names) + 1
            names += [f"{person}C{cam}T{number:04d}F{frame:03d}.jpg" for frame in range(1, length + 1)]
            rows.append([first, len(names), mars_pid(person), cam])
        for i, name in enumerate(names):
            write_jpeg(root / f"bbox_{split}" / name[:4] / name, seed=i)
        (root / "info" / f"{split}_name.txt").write_text("".join(f"{name}\n" for name in names))
        save_mat(root, split, rows)
    scipy.io.savemat(root / "info" / "query_IDX.mat", {"query_IDX": np.array([query], dtype=float)})
    return root


def save_mat(root: Path, split: str, rows) -> None:
    """Write a track file as MARS does: doubles, one row per track."""
    scipy.io.savemat(root / "info" / f"tracks_{split}_info.mat", {MARS_VARIABLES[split]: np.array(rows, dtype=float)})


def edit_rows(root: Path, split: str, edit) -> None:
    """Change the rows of a track file in place with ``edit(rows)`` (a list of [first, last, pid, cam])."""
    rows = scipy.io.loadmat(root / "info" / f"tracks_{split}_info.mat")[MARS_VARIABLES[split]].astype(int).tolist()
    edit(rows)
    save_mat(root, split, rows)


def edit_line(root: Path, split: str, line: int, text: str) -> None:
    """Replace the 1-based ``line`` of a name list."""
    path = root / "info" / f"{split}_name.txt"
    lines = path.read_text().splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n")


def frame_number(path: str) -> int:
    return int(re.search(r"F(\d+)", Path(path).name)[1])


def test_mars_records_and_split_rules(tmp_path):
    root = write_mars(tmp_path / "mars")
    data = read_mars(root)
    assert data.name == "mars" and data.is_video
    # train: junk (00-1) and the distractor (0000) dropped; camid counted from 0
    assert [(r.pid, r.camid, len(r.frames)) for r in data.train] == [(1, 0, 3), (1, 1, 2), (2, 2, 2)]
    # query: rows 1 and 3; row 4, a distractor, is dropped
    assert [(r.pid, r.camid) for r in data.query] == [(5, 0), (6, 5)]
    # gallery: every other row but the junk one, the distractor kept
    assert [(r.pid, r.camid) for r in data.gallery] == [(5, 1), (6, 0), (0, 1)]
    first = data.train[0]
    assert [Path(p).name for p in first.frames] == ["0001C1T0001F001.jpg", "0001C1T0001F002.jpg", "0001C1T0001F003.jpg"]
    assert first.frames[0] == str(root / "bbox_train" / "0001" / "0001C1T0001F001.jpg")
    assert first.path == first.frames[1]  # the middle frame stands for the tracklet
    assert all(Path(p).is_file() for r in data.train + data.query + data.gallery for p in r.frames)
    assert data.gallery[2].frames == (str(root / "bbox_test" / "0000" / "0000C2T0002F001.jpg"),)


def test_mars_summary(tmp_path):
    data = read_mars(write_mars(tmp_path / "mars"))
    rows = {r["split"]: r for r in summarize(data)}
    assert rows["train"] == {"split": "train", "ids": 2, "images": 3, "cameras": 3, "frames": 7}
    assert rows["gallery"] == {"split": "gallery", "ids": 3, "images": 3, "cameras": 2, "frames": 6}
    text = format_summary(data)
    assert "subset   | # ids | # tracklets | # frames | # cameras" in text
    assert "  train    |     2 |           3 |        7 |         3" in text
    assert "  query    |     2 |           2 |        4 |         2" in text
    assert "frames per tracklet: 1 to 3, mean 2.1" in text  # 7 + 4 + 6 frames in 8 tracklets
    assert "(gallery includes 1 distractor tracklets, pid 0)" in text


def missing(*parts):
    return lambda root: (shutil.rmtree if root.joinpath(*parts).is_dir() else Path.unlink)(root.joinpath(*parts))


def garbage(path):
    return lambda root: root.joinpath(path).write_bytes(b"\x00 not a MATLAB file " * 30)


def renamed_variable(root):
    rows = scipy.io.loadmat(root / "info" / "tracks_train_info.mat")["track_train_info"]
    scipy.io.savemat(root / "info" / "tracks_train_info.mat", {"trackinfo": rows})


def set_row(split, row, column, value):
    def damage(root):
        edit_rows(root, split, lambda rows: rows[row - 1].__setitem__(column, value))

    return damage


MARS_CASES = {  # name: (damage, the message, with {root} for the root)
    "missing info folder": (missing("info"), "missing folder {root}/info"),
    "missing train_name.txt": (missing("info", "train_name.txt"), "missing file {root}/info/train_name.txt"),
    "missing test_name.txt": (missing("info", "test_name.txt"), "missing file {root}/info/test_name.txt"),
    "missing train tracks": (
        missing("info", "tracks_train_info.mat"),
        "missing file {root}/info/tracks_train_info.mat",
    ),
    "missing test tracks": (missing("info", "tracks_test_info.mat"), "missing file {root}/info/tracks_test_info.mat"),
    "missing query_IDX.mat": (missing("info", "query_IDX.mat"), "missing file {root}/info/query_IDX.mat"),
    "missing bbox_train": (missing("bbox_train"), "missing folder {root}/bbox_train"),
    "missing bbox_test": (missing("bbox_test"), "missing folder {root}/bbox_test"),
    "missing person folder": (
        missing("bbox_test", "0006"),
        "missing folder {root}/bbox_test/0006 (where 0006C6T0001F001.jpg, {root}/info/test_name.txt:6",
    ),
    "unreadable .mat": (garbage("info/tracks_test_info.mat"), "{root}/info/tracks_test_info.mat: unreadable .mat file"),
    "missing variable": (
        renamed_variable,
        "{root}/info/tracks_train_info.mat: no MATLAB variable 'track_train_info' (found: trackinfo)",
    ),
    "missing query variable": (
        lambda root: scipy.io.savemat(root / "info" / "query_IDX.mat", {"query": np.array([[1.0]])}),
        "{root}/info/query_IDX.mat: no MATLAB variable 'query_IDX'",
    ),
    "wrong shape": (
        lambda root: edit_rows(root, "train", lambda rows: [r.pop() for r in rows]),
        "{root}/info/tracks_train_info.mat: 'track_train_info' has shape (5, 3); expected one row",
    ),
    "not whole numbers": (
        lambda root: save_mat(root, "test", np.full((7, 4), 0.5)),
        "{root}/info/tracks_test_info.mat: 'track_test_info' must hold whole numbers",
    ),
    "last frame past the list": (
        set_row("train", 5, 1, 11),
        "{root}/info/tracks_train_info.mat: row 5 (first frame, last frame, pid, camera = 10, 11, 0, 4): "
        "frames 10 to 11 are not a range of lines 1 to 10 of {root}/info/train_name.txt",
    ),
    "first frame 0": (set_row("test", 1, 0, 0), "{root}/info/tracks_test_info.mat: row 1 .* frames 0 to 2 are not"),
    "first after last": (
        set_row("train", 2, 0, 6),
        "{root}/info/tracks_train_info.mat: row 2 .* frames 6 to 5 are not a range",
    ),
    "camera 0 in a row": (
        set_row("train", 1, 3, 0),
        "{root}/info/tracks_train_info.mat: row 1 .* camera 0; cameras are counted from 1",
    ),
    "name does not parse": (
        lambda root: edit_line(root, "train", 2, "0001_c1_f002.jpg"),
        "{root}/info/train_name.txt:2: frame name '0001_c1_f002.jpg' does not parse",
    ),
    "pid disagrees with the row": (
        set_row("train", 3, 2, 7),
        "{root}/info/train_name.txt:6: frame 0002C3T0001F001.jpg is pid 2, camera 3, but its track, row 3 of "
        "{root}/info/tracks_train_info.mat, says pid 7, camera 3",
    ),
    "camera disagrees with the row": (
        set_row("test", 2, 3, 4),
        "{root}/info/test_name.txt:3: frame 0005C2T0002F001.jpg is pid 5, camera 2, but its track, row 2 of "
        "{root}/info/tracks_test_info.mat, says pid 5, camera 4",
    ),
    "query row out of range": (
        lambda root: scipy.io.savemat(root / "info" / "query_IDX.mat", {"query_IDX": np.array([[1.0, 8.0]])}),
        "{root}/info/query_IDX.mat: query row 8 is not one of the 7 rows of {root}/info/tracks_test_info.mat",
    ),
    "query row twice": (
        lambda root: scipy.io.savemat(root / "info" / "query_IDX.mat", {"query_IDX": np.array([[1.0, 3.0, 1.0]])}),
        "{root}/info/query_IDX.mat: query row 1 is listed twice",
    ),
}


@pytest.mark.parametrize("case", MARS_CASES, ids=list(MARS_CASES))
def test_mars_errors_name_the_file(tmp_path, case):
    damage, message = MARS_CASES[case]
    root = write_mars(tmp_path / "mars")
    damage(root)
    pattern = re.escape(message.format(root=root)).replace(re.escape(".*"), ".*")
    with pytest.raises(DataError, match=pattern):
        read_dataset(root)  # auto finds MARS even when a part is missing


@pytest.mark.parametrize(
    "tracks, message",
    [
        (dict(train=[("00-1", 1, 1, 2), ("0000", 2, 1, 1)]), "{root}/bbox_train: no training tracklets"),
        (dict(query=[4, 5]), "{root}/info/query_IDX.mat: no query tracklets"),
        (
            dict(test=[("0005", 1, 1, 2), ("00-1", 2, 1, 1)], query=[1]),
            "{root}/info/tracks_test_info.mat: no gallery tracklets",
        ),
    ],
    ids=["train", "query", "gallery"],
)
def test_mars_empty_split(tmp_path, tracks, message):
    root = write_mars(tmp_path / "mars", **tracks)
    with pytest.raises(DataError, match=re.escape(message.format(root=root))):
        read_mars(root)


def test_mars_root_not_found(tmp_path):
    with pytest.raises(DataError, match=re.escape(f"dataset root not found: {tmp_path / 'nowhere'}")):
        read_mars(tmp_path / "nowhere")


# --- DukeMTMC-VideoReID -----------------------------------------------------------------------------

DUKE_VIDEO = {  # both naming forms; the first tracklet mixes them, so name order is not frame order
    "train/0001/0001": ["0001C6F0002X30835.jpg", "0001_C6_F0001_X30823.jpg", "0001_C6_F0003_X30847.jpg"],
    "train/0001/0002": ["0001C2F0001X10001.jpg", "0001C2F0002X10013.jpg"],
    "train/0003/0001": ["0003_C1_F0001_X00100.jpg"],
    "query/0005/0001": ["0005_C2_F0001_X05000.jpg", "0005_C2_F0002_X05012.jpg"],
    "gallery/0005/0002": ["0005_C5_F0001_X07000.jpg"],
    "gallery/0009/0001": ["0009_C8_F0001_X09000.jpg", "0009_C8_F0002_X09012.jpg"],
}


def test_duke_video_records(tmp_path):
    root = write_tree(tmp_path / "duke", DUKE_VIDEO)
    (root / "train" / "0001" / "0001" / "Thumbs.db").write_bytes(b"")  # a known non-image, ignored
    data = read_duke_video(root)
    assert data.name == "duke_video" and data.is_video
    assert [(r.pid, r.camid, len(r.frames)) for r in data.train] == [(1, 5, 3), (1, 1, 2), (3, 0, 1)]
    assert [(r.pid, r.camid) for r in data.query] == [(5, 1)]
    assert [(r.pid, r.camid) for r in data.gallery] == [(5, 4), (9, 7)]
    first = data.train[0]
    assert [frame_number(p) for p in first.frames] == [1, 2, 3]  # by frame number, not by name
    assert first.frames[0] == str(root / "train" / "0001" / "0001" / "0001_C6_F0001_X30823.jpg")
    assert Path(first.path).name == "0001C6F0002X30835.jpg"
    rows = {r["split"]: r for r in summarize(data)}
    assert rows["gallery"] == {"split": "gallery", "ids": 2, "images": 2, "cameras": 2, "frames": 3}
    text = format_summary(data)
    assert "  train    |     2 |           3 |        6 |         3" in text and "distractor" not in text


def add(rel, content=None):
    """Damage: a JPEG (or a file with ``content``) at ``rel`` below the root."""

    def damage(root):
        path = root / rel
        if content is None:
            write_jpeg(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)

    return damage


def folder(rel):
    return lambda root: (root / rel).mkdir(parents=True)


DUKE_VIDEO_CASES = {  # name: (damage, the message, with {root} for the root)
    "missing gallery": (lambda root: shutil.rmtree(root / "gallery"), "missing folder {root}/gallery"),
    "empty tracklet folder": (folder("train/0003/0002"), "{root}/train/0003/0002: empty tracklet folder"),
    "name does not parse": (
        add("train/0001/0001/frame_4.jpg"),
        "{root}/train/0001/0001/frame_4.jpg: name does not parse",
    ),
    "pid disagrees with its folder": (
        add("train/0001/0002/0002C2F0003X10025.jpg"),
        "{root}/train/0001/0002/0002C2F0003X10025.jpg: pid 2 in the name, but it lies in person folder "
        "{root}/train/0001",
    ),
    "two cameras in one tracklet": (
        add("gallery/0009/0001/0009_C7_F0003_X09024.jpg"),
        "{root}/gallery/0009/0001/0009_C7_F0003_X09024.jpg: camera 7, but 0009_C8_F0001_X09000.jpg in the same "
        "tracklet folder is camera 8",
    ),
    "camera 0": (
        lambda root: (root / "train/0003/0001/0003_C1_F0001_X00100.jpg").rename(
            root / "train/0003/0001/0003_C0_F0001_X00100.jpg"
        ),
        "{root}/train/0003/0001/0003_C0_F0001_X00100.jpg: camera 0; cameras are counted from 1",
    ),
    "not an image": (add("query/0005/0001/notes.csv", content="x"), "{root}/query/0005/0001/notes.csv: not an image"),
    "frame where a tracklet folder belongs": (
        add("train/0001/0001C6F0004X30859.jpg"),
        "{root}/train/0001/0001C6F0004X30859.jpg: a file where tracklet folders belong",
    ),
    "file where a person folder belongs": (
        add("gallery/readme.md", content="x"),
        "{root}/gallery/readme.md: a file where person folders belong",
    ),
    "person folder not a number": (
        add("train/bob/0001/0001C1F0001X1.jpg"),
        "{root}/train/bob: person folder name is not a number",
    ),
    "person folder with no tracklet": (folder("query/0007"), "{root}/query/0007: no tracklet folders"),
    "folder inside a tracklet": (
        folder("train/0001/0002/crops"),
        "{root}/train/0001/0002/crops: a folder inside tracklet folder",
    ),
    "empty split": (lambda root: shutil.rmtree(root / "query" / "0005"), "{root}/query: no tracklets"),
}


@pytest.mark.parametrize("case", DUKE_VIDEO_CASES, ids=list(DUKE_VIDEO_CASES))
def test_duke_video_errors_name_the_path(tmp_path, case):
    damage, message = DUKE_VIDEO_CASES[case]
    root = write_tree(tmp_path / "duke", DUKE_VIDEO)
    damage(root)
    with pytest.raises(DataError, match=re.escape(message.format(root=root))):
        read_dataset(root)  # auto finds DukeMTMC-VideoReID even when a split is missing


# --- auto detection and the command line -------------------------------------------------------------


def test_auto_detection(tmp_path):
    assert detect_layout(write_mars(tmp_path / "mars")) == "mars"
    assert detect_layout(write_tree(tmp_path / "duke", DUKE_VIDEO)) == "duke_video"
    (tmp_path / "info_only" / "info").mkdir(parents=True)  # a partial MARS root: its reader names what is missing
    (tmp_path / "info_only" / "info" / "tracks_train_info.mat").write_bytes(b"")
    assert detect_layout(tmp_path / "info_only") == "mars"
    (tmp_path / "bbox_only" / "bbox_train" / "0001").mkdir(parents=True)
    assert detect_layout(tmp_path / "bbox_only") == "mars"
    (tmp_path / "gallery_only" / "gallery" / "0001" / "0001").mkdir(parents=True)
    assert detect_layout(tmp_path / "gallery_only") == "duke_video"
    msmt_like = write_tree(tmp_path / "msmt_like", {"train/0000": ["0000_000_01_0303morning_0015_0.jpg"]})
    assert detect_layout(msmt_like) == "market1501"  # train/PPPP/ with images, no TTTT folders: not Duke video
    market_like = write_tree(tmp_path / "market_like", {"query": ["0010_c1s1_001000_00.jpg"]})
    assert detect_layout(market_like) == "market1501"


@pytest.mark.parametrize(
    "make", [lambda root: write_mars(root), lambda root: write_tree(root, DUKE_VIDEO)], ids=["mars", "duke_video"]
)
def test_video_roots_are_never_camera_folders(tmp_path, make):
    root = make(tmp_path / "data")
    (root / "cam-1").mkdir()
    assert detect_layout(root) != "cameras"
    with pytest.raises(DataError, match=re.escape(f"{root}/") + ".*is a labelled layout, not camera folders"):
        read_camera_folders(root)
    for name in ("bbox_train", "bbox_test", "gallery"):  # any one keeps a damaged root from being read as cameras
        lone = tmp_path / f"lone_{name}"
        (lone / name).mkdir(parents=True)
        (lone / "cam-1").mkdir()
        assert detect_layout(lone) != "cameras", name


def test_describe_a_video_set(tmp_path, capsys):
    root = write_tree(tmp_path / "duke", DUKE_VIDEO)
    assert main(["describe", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"=> duke_video ({root})" in out and "# tracklets" in out
    shutil.rmtree(root / "gallery" / "0009" / "0001")
    assert main(["describe", str(root)]) == 2
    assert f"error: {root}/gallery/0009: no tracklet folders" in capsys.readouterr().err


# --- the real sample ---------------------------------------------------------------------------------


def test_real_mini_mars(shared_data):
    root = shared_data / "mini_mars"
    if not root.is_dir():
        pytest.skip(f"mini_mars not present at {root}")
    data = read_dataset(root)
    assert data.name == "mars"
    rows = {r["split"]: r for r in summarize(data)}
    assert (rows["train"]["images"], rows["train"]["ids"], rows["train"]["frames"]) == (32, 16, 1719)
    assert (rows["query"]["images"], rows["gallery"]["images"]) == (32, 32)
    assert rows["query"]["frames"] + rows["gallery"]["frames"] == 3853
    test_ids = {r.pid for r in data.query}
    assert len(test_ids) == 16 and {r.pid for r in data.gallery} == test_ids
    assert test_ids.isdisjoint(r.pid for r in data.train)
    assert {r.camid for r in data.train + data.query + data.gallery} == set(range(6))
    for r in data.train + data.query + data.gallery:
        assert [frame_number(p) for p in r.frames] == sorted(frame_number(p) for p in r.frames)  # time order
        assert all(Path(p).is_file() for p in r.frames)
