"""The synthetic benchmark: layout, guarantees, determinism, re-runs, and its baselines."""

import hashlib
import json
from collections import defaultdict

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
    from reidlib.baselines import format_baselines, run_baselines

    rows = run_baselines(read_market_layout(tiny_synthetic), seed=0)
    assert {"raw pixels", "colour histogram", "random ResNet-18"} <= set(rows)
    for r in rows.values():
        assert 0.0 <= r.mAP <= 1.0 and np.all((0 <= r.cmc) & (r.cmc <= 1))
    assert "protocol: market1501" in format_baselines(rows)


def test_identity_sheet_cli(tiny_synthetic, tmp_path, capsys):
    from PIL import Image

    from reidlib.cli import main
    from reidlib.viz import CELL_H, HEADER_H, GAP

    out = tmp_path / "sheet.png"
    assert main(["sheet", str(tiny_synthetic), str(out), "--ids", "3"]) == 0
    img = Image.open(out)
    assert img.size[1] == HEADER_H + 3 * (CELL_H + GAP)
    colours = {tuple(c) for c in np.asarray(img.convert("RGB")).reshape(-1, 3)}
    assert len(colours) > 100  # pictures were pasted, not an empty white grid
    assert main(["sheet", str(tmp_path / "missing"), str(tmp_path / "x.png")]) == 2
    assert "missing" in capsys.readouterr().err and not (tmp_path / "x.png").exists()
