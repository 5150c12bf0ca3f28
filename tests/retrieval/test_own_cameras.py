"""Training on your own camera folders (ROOT/<camera>/**/*): the layout and how `auto` finds it,
diagnostics that need identities reported as unavailable, not faked, evaluation skipped (and said)
or on a labelled set given apart, and describe / sheet / compare / report / evaluate on such a run.
The bad inputs are in tests/test_bad_inputs.py."""

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from reidlib.cli import main
from reidlib.data import UNKNOWN_PID, camera_names, format_summary, read_camera_folders, read_dataset, summarize
from reidlib.data.layouts import detect_layout
from reidlib.engine.trainer import train
from reidlib.methods.cluster_contrast import clustering
from reidlib.methods.cluster_contrast.learner import ClusterContrast
from reidlib.methods.scl import Selection, SelectionStats
from reidlib.methods.scl.diagnostics import IdentityTable
from reidlib.methods.scl.learner import SCL
from reidlib.utils import runs
from tests.helpers import MARKET, TINY, camera_folders, tiny_cfg, write_jpeg, write_tree


@pytest.fixture(scope="module")
def cams(tiny_synthetic, tmp_path_factory):
    """The tiny set's 59 training crops as camera folders cam-1/day-1/, cam-2/day-1/, cam-3/day-1/."""
    return camera_folders(tiny_synthetic, tmp_path_factory.mktemp("own") / "cams")


def test_camera_folders_layout(tmp_path):
    """Any image type Pillow opens, at any depth below its camera, any size taller than wide."""
    write_jpeg(tmp_path / "north" / "a.jpg", size=(128, 48))
    write_jpeg(tmp_path / "north" / "2026" / "05" / "b.jpg", size=(60, 30))  # deeper: still camera 'north'
    (tmp_path / "gate").mkdir()
    Image.new("RGB", (40, 90), "red").save(tmp_path / "gate" / "c.png")
    Image.new("RGB", (32, 32), "blue").save(tmp_path / "gate" / "d.bmp")  # square: allowed
    (tmp_path / "gate" / "Thumbs.db").write_bytes(b"x")  # a known non-image, passed over
    data = read_dataset(tmp_path)
    assert data.name == "cameras" and data.query == [] and data.gallery == []
    assert [(r.path[len(str(tmp_path)) + 1 :], r.pid, r.camid) for r in data.train] == [
        ("gate/c.png", UNKNOWN_PID, 0),
        ("gate/d.bmp", UNKNOWN_PID, 0),
        ("north/2026/05/b.jpg", UNKNOWN_PID, 1),
        ("north/a.jpg", UNKNOWN_PID, 1),
    ]
    assert not data.identities_known and not data.has_test_split and data.num_cameras == 2
    assert camera_names(data) == {0: "gate", 1: "north"}
    assert read_camera_folders(tmp_path) == data
    assert {r["split"]: r["ids"] for r in summarize(data)} == {"train": None, "query": 0, "gallery": 0}
    text = format_summary(data)
    assert "identities unknown" in text and "gate     |        2" in text and "(2 cameras)" in text


def test_auto_detection_is_unambiguous(tmp_path):
    """Camera folders only when the root holds a sub-folder and no labelled layout's marker."""
    market = write_tree(tmp_path / "market", MARKET)
    (market / "extra").mkdir()
    assert detect_layout(market) == "market1501"
    for marker in ("query", "bounding_box_test", "gt_bbox", "train"):  # a damaged or partial labelled root
        (tmp_path / marker / marker).mkdir(parents=True)
        (tmp_path / marker / "cam-1").mkdir()
        assert detect_layout(tmp_path / marker) == "market1501", marker
    (tmp_path / "lists" / "cam-1").mkdir(parents=True)
    (tmp_path / "lists" / "list_query.txt").write_text("")
    assert detect_layout(tmp_path / "lists") == "market1501"
    (tmp_path / "cams" / "a").mkdir(parents=True)
    assert detect_layout(tmp_path / "cams") == "cameras"
    (tmp_path / "empty").mkdir()
    assert detect_layout(tmp_path / "empty") == "market1501"  # its reader names the missing folder


def test_selection_stats_without_identities():
    """Without identities the figures that need them are None; the others equal the labelled ones."""
    g = torch.Generator().manual_seed(0)
    n, b, k, m = 30, 6, 4, 5
    pids, cams = torch.randint(0, 6, (n,), generator=g), torch.randint(0, 2, (n,), generator=g)
    idx = torch.randperm(n, generator=g)[:b]
    order = torch.stack([row[row != i][: k + m] for row, i in zip(torch.rand(b, n, generator=g).argsort(1), idx)])
    sel = Selection(torch.cat([idx[:, None], order[:, :k]], 1), order[:, k:])
    known, unknown = SelectionStats(), SelectionStats()
    known.add(sel, idx, IdentityTable.build(pids), cams)
    unknown.add(sel, idx, None, cams)
    labelled, blind = known.summary(), unknown.summary(identities=False)
    assert blind.keys() == labelled.keys()
    for key in ("pos_per_anchor", "pos_same_camera"):
        assert blind[key] == labelled[key] is not None
    for key in (
        "pos_precision",
        "pos_recall",
        "pos_cross_camera_precision",
        "pos_cross_camera_recall",
        "neg_false_rate",
        "neg_false_per_anchor",
        "true_kept",
        "true_negative",
    ):
        assert blind[key] is None and labelled[key] is not None, key


def test_label_stats_without_identities():
    labels = torch.tensor([0, 0, 0, 1, 1, -1, 2, 2, 2, 2, -1, 1])
    s = clustering.label_stats(labels, None)
    assert (s.clusters, s.largest_cluster, s.outlier_share) == (3, 4, pytest.approx(2 / 12))
    assert (s.cluster_ari, s.cluster_nmi, s.pair_precision, s.pair_recall) == (None, None, None, None)
    labelled = clustering.label_stats(labels, torch.tensor([5, 5, 6, 6, 6, 5, 7, 7, 7, 8, 8, 6]))
    assert labelled[:3] == s[:3]


def test_methods_say_identities_unknown():
    cfg = tiny_cfg("unused")
    unknown = torch.full((10,), UNKNOWN_PID)
    cams = torch.arange(10) % 2
    scl = SCL.build(cfg, unknown, cams, torch.device("cpu"))
    row = {
        "pos_precision": None,
        "pos_recall": None,
        "pos_per_anchor": 2.0,
        "pos_same_camera": 0.25,
        "neg_false_rate": None,
    }
    assert scl.describe(row).startswith("identities unknown") and "2.00 positives per anchor" in scl.describe(row)
    labelled = SCL.build(cfg, torch.arange(10), cams, torch.device("cpu"))
    assert "identities unknown" not in labelled.describe({**row, "pos_precision": 0.5, "pos_recall": 0.4})
    cc = ClusterContrast.build(cfg, unknown, cams, torch.device("cpu"))
    cc.labels = torch.tensor([0, 0, 1, 1, 1, -1, 2, 2, 2, -1])
    row = cc.summarize(0, cc.empty_stats())
    assert row["cluster_ari"] is None and row["pair_precision"] is None and row["clusters"] == 3
    assert cc.describe(row).startswith("identities unknown") and "3 clusters" in cc.describe(row)


def test_train_without_evaluation(cams, tmp_path, capsys, caplog):
    """SCL trains on camera folders; evaluation is skipped, said once, and recorded with its reason;
    compare, report and evaluate handle the run."""
    run_dir = tmp_path / "run"
    sets = [f"{k}={v}" for k, v in TINY.items()]
    with caplog.at_level(logging.INFO, logger="reidlib"):
        assert main(["train", "--data", str(cams), "--run-dir", str(run_dir), "--set", *sets, "eval_every=1"]) == 0
    out = capsys.readouterr().out
    assert "not evaluated" in out and "--eval-data" in out
    assert sum("evaluation skipped" in r.message for r in caplog.records) == 1
    epochs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert len(epochs) == 3 and all("identities unknown" in line for line in epochs)  # no per-epoch evaluation
    metrics = json.loads((run_dir / runs.METRICS).read_text())
    assert metrics["evaluated"] is False and metrics["epochs"] == 3 and str(cams) in metrics["reason"]
    assert not (run_dir / runs.FEATURES).exists() and (run_dir / runs.CHECKPOINT).exists()
    rows = runs.read_jsonl(run_dir / runs.METRICS_LOG)
    assert [r["epoch"] for r in rows] == [1, 2, 3] and not any("eval" in r for r in rows)
    for r in rows[1:]:  # after warm-up: what needs no identities is measured, the rest is None
        assert r["pos_per_anchor"] == 2.0 and 0.0 <= r["pos_same_camera"] <= 1.0
        assert r["pos_precision"] is r["pos_recall"] is r["neg_false_rate"] is None

    assert main(["compare", str(run_dir)]) == 0
    assert "not evaluated:" in capsys.readouterr().out
    assert main(["report", "--run-dir", str(run_dir)]) == 2
    assert "was not evaluated" in capsys.readouterr().err
    assert main(["evaluate", "--run-dir", str(run_dir)]) == 2
    assert "no query and gallery to evaluate on" in capsys.readouterr().err


def test_train_with_eval_data(cams, tiny_synthetic, tmp_path, capsys):
    """eval.eval_data evaluates on a labelled set's query and gallery, every epoch and at the end."""
    metrics = train(tiny_cfg(cams, epochs=2, eval_every=1, eval_data=str(tiny_synthetic)), tmp_path / "run")
    assert metrics["protocol"] == "market1501" and 0.0 <= metrics["mAP"] <= 1.0
    assert metrics["eval_data"] == str(tiny_synthetic) and "evaluated" not in metrics
    feats = np.load(tmp_path / "run" / runs.FEATURES)
    assert len(feats["query_pids"]) == 23 and len(feats["gallery_pids"]) == 29
    assert "eval" in runs.read_jsonl(tmp_path / "run" / runs.METRICS_LOG)[0]
    sessions = json.loads((tmp_path / "run" / "provenance.json").read_text())["sessions"]
    assert sessions[-1]["eval_data"]["root"] == str(tiny_synthetic)
    assert main(["evaluate", "--run-dir", str(tmp_path / "run"), "--data", str(tiny_synthetic)]) == 0
    assert f"{metrics['mAP'] * 100:.1f}" in capsys.readouterr().out


def test_describe_and_sheet(cams, tmp_path, capsys):
    assert main(["describe", str(cams)]) == 0
    out = capsys.readouterr().out
    assert "identities unknown" in out and "cam-1" in out and "59" in out
    sheet = tmp_path / "sheet.png"
    assert main(["sheet", str(cams), str(sheet), "--ids", "3"]) == 0
    from reidlib.data.sheets import CELL_H, CELL_W, GAP, HEADER_H

    assert Image.open(sheet).size == (GAP + 3 * (CELL_W + GAP), HEADER_H + 3 * (CELL_H + GAP))  # cameras x crops
    capsys.readouterr()
    assert main(["sheet", str(cams), str(tmp_path / "q.png"), "--split", "query"]) == 2
    assert "camera folders have no query split" in capsys.readouterr().err
