"""Tracklets (video re-ID) through training and evaluation: frame sampling, frame averaging in the
model and in feature extraction against loops, MARS-protocol evaluation against a naive loop, and
tiny runs of both methods on tracklets (one resumed mid-epoch, equal to an uninterrupted run).

The tracklets here are the tiny synthetic set's images grouped by (identity, camera), so these
tests need neither the video readers nor the synthetic ``tracklets`` preset."""

import itertools
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import reidlib.methods.scl.learner as scl_method
from reidlib.data import ImageRecord, ReidData, ReidDataset, read_dataset, tracklet
from reidlib.data.dataset import sample_frame_indices
from reidlib.engine.trainer import train
from reidlib.evaluation.evaluator import evaluate_features
from reidlib.evaluation.features import extract_features, tracklet_frames
from reidlib.model import Features, average_frames, build_model
from reidlib.utils import runs
from reidlib.utils.interrupts import Interrupted
from tests.helpers import CC, sigterm_at_call, tiny_cfg

VIDEO = {"k": 1, "m": 6, "batch_size": 4, "sample_frames": 2}  # 32 tracklets: 8 steps an epoch


def as_tracklets(records: list[ImageRecord]) -> list[ImageRecord]:
    """The images of each (pid, camera) as one tracklet, in file order."""
    key = lambda r: (r.pid, r.camid)  # noqa: E731
    return [tracklet([r.path for r in group], *k) for k, group in itertools.groupby(sorted(records, key=key), key)]


@pytest.fixture(scope="module")
def tiny_video(tiny_synthetic) -> ReidData:
    d = read_dataset(tiny_synthetic)
    return ReidData("tracklets", d.root, as_tracklets(d.train), as_tracklets(d.query), as_tracklets(d.gallery))


# --- frames: sampling and averaging ---------------------------------------------------------------


@pytest.mark.parametrize("length,count", [(1, 4), (3, 4), (4, 4), (10, 4), (61, 8)])
def test_sample_frame_indices_one_per_segment(length, count):
    generator = torch.Generator().manual_seed(length)
    seen = set()
    for _ in range(50):
        chosen = sample_frame_indices(length, count, generator).tolist()
        assert len(chosen) == count and chosen == sorted(chosen)
        for i, frame in enumerate(chosen):  # segment i of the walk, at least one frame wide
            low = int(np.floor(i * length / count))
            high = max(int(np.floor((i + 1) * length / count)), low + 1)
            assert low <= frame < high <= length
        seen.update(chosen)
    assert seen == set(range(length))  # every frame gets its turn


def test_average_frames_matches_loop():
    g = torch.Generator().manual_seed(0)
    feats = Features(
        F.normalize(torch.randn(11, 8, generator=g), dim=1), F.normalize(torch.randn(11, 2, 4, generator=g), dim=2)
    )
    owner = torch.tensor([0, 2, 2, 1, 0, 3, 3, 3, 1, 2, 0])
    out = average_frames(feats, owner, 4)
    for j in range(4):
        mine = owner == j
        assert torch.allclose(out.global_[j], F.normalize(feats.global_[mine].mean(0), dim=0), atol=1e-6)
        for p in range(2):
            assert torch.allclose(out.parts[j, p], F.normalize(feats.parts[mine, p].mean(0), dim=0), atol=1e-6)


def test_model_averages_a_tracklets_frames():
    model = build_model("resnet_mini", feat_dim=16, num_parts=2).eval()
    clips = torch.randn(3, 4, 3, 32, 16)  # 3 tracklets of 4 frames
    with torch.no_grad():
        out = model(clips)
        for j in range(3):
            frames = model(clips[j])
            assert torch.allclose(out.global_[j], F.normalize(frames.global_.mean(0), dim=0), atol=1e-5)
            assert torch.allclose(out.parts[j], F.normalize(frames.parts.mean(0), dim=1), atol=1e-5)


def test_dataset_draws_frames_of_a_tracklet(tiny_video):
    record = max(tiny_video.train, key=lambda r: len(r.frames))
    item = ReidDataset([record], lambda img: torch.zeros(3, 4, 2), sample_frames=3)[0]
    assert item["img"].shape == (3, 3, 4, 2) and item["path"] == record.path
    assert record.path == record.frames[len(record.frames) // 2]


# --- features and evaluation ----------------------------------------------------------------------


def test_tracklet_frames_caps_evenly():
    record = tracklet([f"f{i}.jpg" for i in range(10)], 3, 1)
    frames, owner = tracklet_frames([ImageRecord("x.jpg", 1, 0), record], max_frames=4)
    assert [f.path for f in frames] == ["x.jpg", "f0.jpg", "f3.jpg", "f6.jpg", "f9.jpg"]
    assert owner.tolist() == [0, 1, 1, 1, 1] and {(f.pid, f.camid) for f in frames[1:]} == {(3, 1)}
    assert len(tracklet_frames([record], max_frames=0)[0]) == 10


def naive_tracklet_map(query, gallery, q_frames, g_frames) -> float:
    """mAP from frame features: each tracklet the normalised mean of its frames, Euclidean
    distance, junk = same identity seen by the query's camera (the MARS rule), one query at a time."""

    def tracklet_feature(frames):
        mean = np.mean(frames, axis=0)
        return mean / np.linalg.norm(mean)

    qf = [tracklet_feature(f) for f in q_frames]
    gf = [tracklet_feature(f) for f in g_frames]
    aps = []
    for i, q in enumerate(qf):
        dist = [np.linalg.norm(q - g) for g in gf]
        keep = [
            j
            for j in range(len(gf))
            if not (gallery["pids"][j] == query["pids"][i] and gallery["camids"][j] == query["camids"][i])
        ]
        keep.sort(key=lambda j: dist[j])
        hits, precisions = 0, []
        for rank, j in enumerate(keep, start=1):
            if gallery["pids"][j] == query["pids"][i]:
                hits += 1
                precisions.append(hits / rank)
        if hits:
            aps.append(np.mean(precisions))
    return float(np.mean(aps))


def test_tracklet_evaluation_matches_a_naive_loop(tiny_video):
    cfg = tiny_cfg(tiny_video.root, eval_batch_size=5, max_frames=3)  # batches cut across tracklets
    model = build_model("resnet_mini", feat_dim=16, num_parts=2)
    query = extract_features(model, tiny_video.query, cfg, torch.device("cpu"), "query", progress=False)
    gallery = extract_features(model, tiny_video.gallery, cfg, torch.device("cpu"), "gallery", progress=False)
    assert query["global"].shape == (len(tiny_video.query), 16) and gallery["parts"].shape == (
        len(tiny_video.gallery),
        2,
        8,
    )
    results = evaluate_features(query, gallery, tiny_cfg(tiny_video.root, lambda_g=1.0), tracklets=True)
    assert results["combined"]["protocol"] == "mars"

    def frames_of(records):  # each frame's global feature, one image at a time
        out = []
        for record in records:
            frames, _ = tracklet_frames([record], max_frames=3)
            feats = extract_features(model, frames, cfg, torch.device("cpu"), "frames", progress=False)
            out.append(feats["global"])
        return out

    expected = naive_tracklet_map(query, gallery, frames_of(tiny_video.query), frames_of(tiny_video.gallery))
    assert results["combined"]["mAP"] == pytest.approx(expected, abs=1e-5)


# --- training ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["scl", "cluster_contrast"])
def test_tiny_run_on_tracklets(tiny_video, tmp_path, method):
    extra = (
        {**CC, "num_instances": 2, "cluster_k1": 4, "cluster_k2": 2, "min_samples": 2}
        if method == "cluster_contrast"
        else {}
    )
    metrics = train(
        tiny_cfg(tiny_video.root, epochs=2, cache_images=True, **VIDEO, **extra), tmp_path / "run", data=tiny_video
    )
    assert metrics["protocol"] == "mars" and 0.0 < metrics["mAP"] <= 1.0
    features = np.load(tmp_path / "run" / "features.npz")
    assert len(features["query_global"]) == len(tiny_video.query)  # one row per tracklet
    rows = runs.read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert len(rows) == 2 and all(np.isfinite(r["loss"]) for r in rows)


@pytest.mark.slow
def test_resume_on_tracklets_is_exact(tiny_video, tmp_path, monkeypatch):
    cfg = tiny_cfg(tiny_video.root, epochs=2, deterministic=True, **VIDEO)
    whole = train(cfg, tmp_path / "whole", data=tiny_video)
    real = scl_method.scl_total_loss
    monkeypatch.setattr(scl_method, "scl_total_loss", sigterm_at_call(real, 11))  # epoch 2, step 3 (8 steps an epoch)
    with pytest.raises(Interrupted, match=r"stopped at epoch 2, step 3 of 8"):
        train(cfg, tmp_path / "cut", data=tiny_video)
    monkeypatch.setattr(scl_method, "scl_total_loss", real)
    assert train(cfg, tmp_path / "cut", data=tiny_video) == whole


@pytest.mark.slow
def test_real_mars_sample_trains_and_scores(shared_data, tmp_path):
    """The real MARS sample (../shared/data/mini_mars) end to end: read by ``auto``, one epoch on
    its 32 training tracklets, scored tracklet against tracklet (skipped when absent)."""
    root = shared_data / "mini_mars"
    if not root.is_dir():
        pytest.skip(f"mini_mars not present at {root}")
    cfg = tiny_cfg(root, epochs=1, warmup_epochs=1, max_frames=6, **VIDEO)
    metrics = train(cfg, tmp_path / "run")
    combined = metrics["by_feature"]["combined"]
    assert metrics["protocol"] == "mars" and 0.0 < metrics["mAP"] <= 1.0
    # a query whose identity the gallery holds only in the query's own camera has no valid match
    assert combined["valid_queries"] + combined["skipped_queries"] == 32 and combined["valid_queries"] >= 16
    assert json_counts(tmp_path / "run") == {"train": 32, "query": 32, "gallery": 32}


def json_counts(run_dir) -> dict:
    return json.loads((run_dir / "provenance.json").read_text())["sessions"][0]["data"]["counts"]
