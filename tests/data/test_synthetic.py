"""The synthetic benchmark: layout, guarantees, determinism, re-runs, and its baselines; the
``tracklets`` preset's video layout, its protocol, its counts and how alike a tracklet's frames are."""

import hashlib
import json
import re
from collections import Counter, defaultdict
from typing import NamedTuple

import numpy as np
import pytest

from reidlib.data import read_market_layout
from reidlib.data.synthetic import PRESETS, generate
from reidlib.errors import DataError


def digest(root):
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_layout_and_manifest(tiny_synthetic):
    manifest = json.loads((tiny_synthetic / "manifest.json").read_text())
    assert manifest["preset"] == "tiny" and manifest["seed"] == 0 and manifest["version"]
    assert manifest["params"]["num_cameras"] == PRESETS["tiny"].num_cameras
    data = read_market_layout(tiny_synthetic)
    counts = manifest["counts"]
    assert counts["train_images"] == len(data.train)
    assert counts["query_images"] == len(data.query)
    assert counts["gallery_images"] == len(data.gallery)
    assert counts["train_ids"] == len({r.pid for r in data.train}) == PRESETS["tiny"].num_train_ids


def test_protocol_guarantees(tiny_synthetic):
    data = read_market_layout(tiny_synthetic)
    train_ids = {r.pid for r in data.train}
    test_ids = {r.pid for r in data.query}
    assert train_ids.isdisjoint(test_ids) and 0 not in train_ids | test_ids
    cams = defaultdict(list)
    for r in data.query:
        cams[r.pid].append(r.camid)
    for pid, cs in cams.items():
        assert len(cs) >= 2, f"test id {pid} seen by one camera"
        assert len(cs) == len(set(cs)), f"test id {pid} has two queries from one camera"
    gallery_pairs = {(r.pid, r.camid) for r in data.gallery if r.pid}
    assert gallery_pairs == {(r.pid, r.camid) for r in data.query}  # the rest of each visit
    distractors = [r for r in data.gallery if r.pid == 0]
    assert len(distractors) == PRESETS["tiny"].num_distractors
    from PIL import Image

    assert Image.open(data.train[0].path).size == (64, 128)


def test_same_seed_same_bytes_other_seed_differs(tiny_synthetic, tmp_path):
    generate(tmp_path / "again", preset="tiny", seed=0)
    assert digest(tmp_path / "again") == digest(tiny_synthetic)
    generate(tmp_path / "other", preset="tiny", seed=1)
    assert digest(tmp_path / "other") != digest(tiny_synthetic)


def test_rerun_and_conflicts(tmp_path):
    out = tmp_path / "ds"
    first = generate(out, preset="tiny", seed=3)
    before = digest(out)
    assert generate(out, preset="tiny", seed=3) == first  # up to date: left as it is
    assert digest(out) == before
    with pytest.raises(DataError, match="does not hold this dataset"):
        generate(out, preset="tiny", seed=4)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        generate(tmp_path / "other", preset="tiny")
    with pytest.raises(DataError, match="unknown preset"):
        generate(tmp_path / "x", preset="huge")
    with pytest.raises(DataError, match="unknown synthetic parameter"):
        generate(tmp_path / "y", preset="tiny", num_legs=3)


def test_overrides_reach_the_manifest(tmp_path):
    m = generate(tmp_path / "ds", preset="tiny", num_cameras=4, num_test_ids=5)
    assert m["params"]["num_cameras"] == 4 and m["counts"]["query_ids"] == 5


def test_baselines_run(tiny_synthetic):
    from reidlib.evaluation.baselines import format_baselines, run_baselines

    rows = run_baselines(read_market_layout(tiny_synthetic), seed=0)
    assert {"raw pixels", "colour histogram", "random ResNet-18"} <= set(rows)
    for r in rows.values():
        assert 0.0 <= r.mAP <= 1.0 and np.all((0 <= r.cmc) & (r.cmc <= 1))
    assert "protocol: market1501" in format_baselines(rows)


def test_identity_sheet_cli(tiny_synthetic, tmp_path, capsys):
    from PIL import Image

    from reidlib.cli import main
    from reidlib.data.sheets import CELL_H, GAP, HEADER_H

    out = tmp_path / "sheet.png"
    assert main(["sheet", str(tiny_synthetic), str(out), "--ids", "3"]) == 0
    img = Image.open(out)
    assert img.size[1] == HEADER_H + 3 * (CELL_H + GAP)
    colours = {tuple(c) for c in np.asarray(img.convert("RGB")).reshape(-1, 3)}
    assert len(colours) > 100  # pictures were pasted, not an empty white grid
    assert main(["sheet", str(tmp_path / "missing"), str(tmp_path / "x.png")]) == 2
    assert "missing" in capsys.readouterr().err and not (tmp_path / "x.png").exists()


# --- the tracklets preset (video re-ID, DukeMTMC-VideoReID layout) --------------------------------

FRAME_NAME = re.compile(r"(\d{4})_C(\d)_F(\d{4})_X(\d{5})\.jpg")  # pid, camera from 1, frame from 1, tracklet
SMALL_TRACKLETS = {"num_train_ids": 4, "num_test_ids": 3, "num_distractors": 2, "num_cameras": 3}


class Track(NamedTuple):
    split: str
    pid: int
    cam: int  # from 1, as in the names
    number: int  # the X field: the tracklet's number in the dataset
    frames: list  # paths in frame order


def list_tracklets(root):
    """Every tracklet folder, checked against the layout: SPLIT/PPPP/TTTT/PPPP_Cc_FFFF_XNNNNN.jpg."""
    tracks = []
    for split in ("train", "query", "gallery"):
        for person in sorted((root / split).iterdir()):
            folders = sorted(person.iterdir())
            assert [f.name for f in folders] == [f"{n:04d}" for n in range(1, len(folders) + 1)], person
            for folder in folders:
                names = sorted(p.name for p in folder.iterdir())
                fields = [FRAME_NAME.fullmatch(name) for name in names]
                assert all(fields), f"{folder}: {names}"
                assert {m[1] for m in fields} == {person.name}  # the person folder's pid
                assert len({(m[2], m[4]) for m in fields}) == 1  # one camera, one tracklet
                assert [int(m[3]) for m in fields] == list(range(1, len(names) + 1))  # frames 1..n
                m = fields[0]
                tracks.append(Track(split, int(m[1]), int(m[2]), int(m[4]), [folder / n for n in names]))
    return tracks


@pytest.fixture(scope="module")
def small_tracklets(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "tracklets"
    generate(out, preset="tracklets", seed=0, **SMALL_TRACKLETS)
    return out


def test_tracklets_layout_and_names(small_tracklets):
    from PIL import Image

    assert sorted(p.name for p in small_tracklets.iterdir()) == ["gallery", "manifest.json", "query", "train"]
    tracks = list_tracklets(small_tracklets)
    lo, hi = PRESETS["tracklets"].frames_per_tracklet
    assert all(lo <= len(t.frames) <= hi for t in tracks)
    assert sorted(t.number for t in tracks) == list(range(1, len(tracks) + 1))  # one number per tracklet
    assert {t.cam for t in tracks} == {1, 2, 3}
    assert Image.open(tracks[0].frames[0]).size == (64, 128)


def test_tracklets_protocol_guarantees(small_tracklets):
    tracks = list_tracklets(small_tracklets)
    by_split = defaultdict(list)
    for t in tracks:
        by_split[t.split].append(t)
    train_ids = {t.pid for t in by_split["train"]}
    query_ids = {t.pid for t in by_split["query"]}
    assert len(train_ids) == 4 and len(query_ids) == 3
    assert train_ids.isdisjoint(query_ids) and 0 not in train_ids | query_ids
    per_camera = Counter((t.pid, t.cam) for t in by_split["train"])
    low, high = PRESETS["tracklets"].tracklets_per_camera
    assert all(low <= n <= high for n in per_camera.values())
    for pid in train_ids:
        assert len({cam for p, cam in per_camera if p == pid}) >= 2
    query_pairs = [(t.pid, t.cam) for t in by_split["query"]]
    assert len(query_pairs) == len(set(query_pairs))  # one query tracklet per identity per camera
    for pid in query_ids:
        assert sum(p == pid for p, _ in query_pairs) >= 2, f"test id {pid} seen by one camera"
    assert {(t.pid, t.cam) for t in by_split["gallery"] if t.pid} == set(query_pairs)  # the rest of each visit
    assert sum(t.pid == 0 for t in by_split["gallery"]) == SMALL_TRACKLETS["num_distractors"]


def test_tracklets_manifest_counts(small_tracklets, tiny_synthetic):
    manifest = json.loads((small_tracklets / "manifest.json").read_text())
    assert manifest["preset"] == "tracklets" and manifest["params"]["num_train_ids"] == 4
    assert manifest["params"]["frames_per_tracklet"] == list(PRESETS["tracklets"].frames_per_tracklet)
    assert "train_images_per_id" not in manifest["params"]  # tracklets count per camera instead
    tracks = list_tracklets(small_tracklets)
    expected = {"distractor_tracklets": 2, "cameras": 3}
    for split in ("train", "query", "gallery"):
        rows = [t for t in tracks if t.split == split]
        expected[f"{split}_ids"] = len({t.pid for t in rows if t.pid})
        expected[f"{split}_tracklets"] = len(rows)
        expected[f"{split}_frames"] = sum(len(t.frames) for t in rows)
    assert manifest["counts"] == expected
    still = json.loads((tiny_synthetic / "manifest.json").read_text())["params"]
    assert "walk" not in still and "frames_per_tracklet" not in still  # still-image manifests as before


def test_tracklets_same_seed_same_bytes(small_tracklets, tmp_path):
    generate(tmp_path / "again", preset="tracklets", seed=0, **SMALL_TRACKLETS)
    assert digest(tmp_path / "again") == digest(small_tracklets)
    generate(tmp_path / "other", preset="tracklets", seed=1, **SMALL_TRACKLETS)
    assert digest(tmp_path / "other") != digest(small_tracklets)
    # every draw is seeded by what it draws: one more distractor (drawn last) changes no other frame
    generate(tmp_path / "more", preset="tracklets", seed=0, **{**SMALL_TRACKLETS, "num_distractors": 3})
    for split in ("train", "query"):
        assert digest(tmp_path / "more" / split) == digest(small_tracklets / split)


def test_frames_of_a_tracklet_alike_cameras_apart(small_tracklets):
    """Consecutive frames of a tracklet differ far less than a person's tracklets in two cameras."""
    from PIL import Image

    def pixels(path):
        return np.asarray(Image.open(path), dtype=np.float64)

    def diff(a, b):
        return np.abs(pixels(a) - pixels(b)).mean()

    train = [t for t in list_tracklets(small_tracklets) if t.split == "train"]
    for pid in {t.pid for t in train}:
        mine = [t for t in train if t.pid == pid]
        within = np.mean([diff(a, b) for t in mine for a, b in zip(t.frames, t.frames[1:])])
        across = np.mean(
            [
                diff(s.frames[len(s.frames) // 2], t.frames[len(t.frames) // 2])
                for s in mine
                for t in mine
                if s.cam < t.cam
            ]
        )
        assert 0 < within < 0.5 * across, (pid, within, across)


def test_tracklet_knobs_act_on_tracklets_only(tmp_path):
    with pytest.raises(DataError, match="walk acts on tracklets only"):
        generate(tmp_path / "a", preset="tiny", walk=0.2)
    with pytest.raises(DataError, match="at least one frame"):
        generate(tmp_path / "b", preset="tracklets", frames_per_tracklet=(0, 4))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    from reidlib.cli import build_parser

    assert build_parser().parse_args(["synth", "out", "--preset", "tracklets"]).preset == "tracklets"


def test_tracklets_read_by_the_duke_video_reader(small_tracklets):
    from reidlib.data.video import read_duke_video

    data = read_duke_video(small_tracklets)
    counts = json.loads((small_tracklets / "manifest.json").read_text())["counts"]
    for split in ("train", "query", "gallery"):
        records = getattr(data, split)
        assert len(records) == counts[f"{split}_tracklets"]
        assert sum(len(r.frames) for r in records) == counts[f"{split}_frames"]
    assert data.is_video and data.num_cameras == 3
    for r in data.train + data.query + data.gallery:
        m = FRAME_NAME.fullmatch(r.frames[0].rsplit("/", 1)[-1])
        assert (r.pid, r.camid) == (int(m[1]), int(m[2]) - 1)
