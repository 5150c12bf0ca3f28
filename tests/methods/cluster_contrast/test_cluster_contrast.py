"""Cluster Contrast as a training method: its loss and memory update against loops, outliers kept
out of every batch and the loss, a tiny run end to end (and from the command line), a resume equal
to an uninterrupted run, and two processes under torchrun that agree."""

import json

import pytest
import torch
import torch.nn.functional as F

import reidlib.methods.cluster_contrast.learner as cc_method
from reidlib.cli import main
from reidlib.config import METHODS, load_config
from reidlib.engine.trainer import train
from reidlib.methods import METHOD_CLASSES
from reidlib.methods.losses import cluster_contrast_loss
from reidlib.model import Features
from reidlib.utils import runs
from reidlib.utils.interrupts import Interrupted
from tests.helpers import CC, ROOT, TINY, sigterm_at_call, tiny_cfg

# clustering settings that give the tiny set's 59 images several clusters and some outliers


def cc_cfg(data_dir, **overrides):
    return tiny_cfg(data_dir, **{**CC, **overrides})


def test_every_method_has_a_class():
    assert set(METHOD_CLASSES) == set(METHODS)


# --- the loss and the memory, against loops -----------------------------------------------------


def test_loss_matches_loop():
    g = torch.Generator().manual_seed(0)
    feats = F.normalize(torch.randn(6, 8, generator=g, dtype=torch.float64), dim=1).requires_grad_()
    centroids = F.normalize(torch.randn(5, 8, generator=g, dtype=torch.float64), dim=1)
    labels = torch.tensor([0, 3, 3, 1, 4, 0])
    got = cluster_contrast_loss(feats, centroids, labels, temperature=0.05)
    want = 0.0
    for i in range(6):
        logits = [feats[i] @ centroids[c] / 0.05 for c in range(5)]
        want = want - (logits[labels[i]] - torch.logsumexp(torch.stack(logits), 0)) / 6
    assert torch.allclose(got, want, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda x: cluster_contrast_loss(x, centroids, labels, temperature=0.05), (feats,), eps=1e-6, atol=1e-5
    )
    with pytest.raises(IndexError):  # an outlier's -1 is refused, never read as the last cluster
        cluster_contrast_loss(feats, centroids, torch.tensor([0, -1, 3, 1, 4, 0]), temperature=0.05)


def test_memory_update_matches_loop():
    """After the step, each cluster of the batch moves to normalise(mu * old + (1 - mu) * mean of its
    images' features); the others stay; the loss read the memory before the write."""
    cfg = load_config(overrides={**CC, "feat_dim": 8, "num_parts": 2, "cluster_momentum": 0.1})
    method = METHOD_CLASSES["cluster_contrast"].build(
        cfg, torch.arange(10), torch.zeros(10, dtype=torch.long), torch.device("cpu")
    )
    method.labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 3, -1])
    method.memory = method._memory(4)
    old = F.normalize(torch.randn(4, 8), dim=1)
    method.memory.fill(old)
    idx = torch.tensor([0, 1, 6, 7, 8, 2])
    g = F.normalize(torch.randn(6, 8), dim=1).requires_grad_()
    out = Features(g, torch.zeros(6, 2, 4))
    labels = method.select(out, idx)
    loss = method.loss(out, labels).total
    loss.backward()
    grad = g.grad.clone()
    method.update(out, idx, labels, gather=lambda x: x)
    for c in range(4):
        rows = [b for b in range(6) if labels[b] == c]
        want = (
            old[c]
            if not rows
            else F.normalize(0.1 * old[c] + 0.9 * sum(g[b].detach() for b in rows) / len(rows), dim=0)
        )
        assert torch.allclose(method.memory.features[c], want, atol=1e-6), c
    assert torch.equal(grad, g.grad)


# --- a tiny run end to end ------------------------------------------------------------------------


def test_tiny_run_outliers_never_reach_the_loss(tiny_synthetic, tmp_path, monkeypatch):
    seen = {"batches": [], "labels": [], "loss": []}
    real_batches, real_loss = cc_method.ClusterContrast.batches, cc_method.cluster_contrast_loss

    def batches(self, *args):
        drawn = real_batches(self, *args)
        seen["batches"].append(drawn)
        seen["labels"].append(self.labels.clone())
        return drawn

    def loss(feats, centroids, labels, **kwargs):
        seen["loss"].append(labels.clone())
        return real_loss(feats, centroids, labels, **kwargs)

    monkeypatch.setattr(cc_method.ClusterContrast, "batches", batches)
    monkeypatch.setattr(cc_method, "cluster_contrast_loss", loss)
    metrics = train(cc_cfg(tiny_synthetic, cache_images=True), tmp_path / "run")

    rows = runs.read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert r["clusters"] >= 2 and 1 <= r["largest_cluster"] <= 59
        for key in ("outlier_share", "cluster_ari", "cluster_nmi", "pair_precision", "pair_recall"):
            assert 0.0 <= r[key] <= 1.0, key
        assert torch.isfinite(torch.tensor(r["loss"]))
    assert any(r["outlier_share"] > 0 for r in rows)  # there were outliers to keep out
    for drawn, labels in zip(seen["batches"], seen["labels"]):
        assert len(drawn) == 59 // 8 and all(len(b) == 8 for b in drawn)  # an SCL epoch's steps
        assert (labels[torch.tensor(drawn)] >= 0).all()  # no outlier in any batch
    assert len(seen["loss"]) == 3 * 7 and all((labels >= 0).all() for labels in seen["loss"])
    assert set(metrics["by_feature"]) == {"combined", "global", "parts"} and 0.0 <= metrics["mAP"] <= 1.0
    state = runs.load_checkpoint(tmp_path / "run")
    assert torch.equal(state["cluster_labels"], seen["labels"][-1])
    assert len(state["cluster_memory"]["features"]) == rows[-1]["clusters"]


def test_cli_trains_cluster_contrast_from_its_config(tiny_synthetic, tmp_path, capsys):
    """configs/cluster-contrast-cpu.yaml through the command line, sized down to the tiny set."""
    sets = {**TINY, **CC, "epochs": 1, "pretrained": "null"}
    argv = [
        "train",
        "--data",
        str(tiny_synthetic),
        "--run-dir",
        str(tmp_path / "run"),
        "--config",
        str(ROOT / "configs" / "cluster-contrast-cpu.yaml"),
        "--set",
        *(f"{k}={v}" for k, v in sets.items()),
    ]
    assert main(argv) == 0, capsys.readouterr().err
    (row,) = runs.read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert row["clusters"] >= 1 and "pair_precision" in row
    assert runs.read_run_config(tmp_path / "run").train.method == "cluster_contrast"


# --- resuming ------------------------------------------------------------------------------------


def same_checkpoints(a, b) -> bool:
    x, y = runs.load_checkpoint(a), runs.load_checkpoint(b)
    return (
        all(torch.equal(u, v) for u, v in zip(x["model"].values(), y["model"].values()))
        and torch.equal(x["cluster_labels"], y["cluster_labels"])
        and torch.equal(x["cluster_memory"]["features"], y["cluster_memory"]["features"])
    )


@pytest.mark.slow
def test_sigterm_mid_epoch_resume_is_exact(tiny_synthetic, tmp_path, monkeypatch):
    """Stopped inside epoch 2, the resumed run keeps the checkpoint's pseudo-labels and memory
    (no re-clustering) and ends bit for bit where an uninterrupted run ends."""
    cfg = cc_cfg(tiny_synthetic, deterministic=True)
    whole = train(cfg, tmp_path / "whole")
    real = cc_method.cluster_contrast_loss
    monkeypatch.setattr(
        cc_method, "cluster_contrast_loss", sigterm_at_call(real, 10)
    )  # epoch 2, step 3 (7 steps an epoch)
    with pytest.raises(Interrupted, match=r"stopped at epoch 2, step 3 of 7"):
        train(cfg, tmp_path / "cut")
    checkpoint = runs.load_checkpoint(tmp_path / "cut")
    assert (checkpoint["epoch"], checkpoint["step"]) == (1, 3)
    monkeypatch.setattr(cc_method, "cluster_contrast_loss", real)
    clustered = {"n": 0}
    real_pairs = cc_method.clustering.jaccard_pairs

    def counting_pairs(*args, **kwargs):
        clustered["n"] += 1
        return real_pairs(*args, **kwargs)

    monkeypatch.setattr(cc_method.clustering, "jaccard_pairs", counting_pairs)
    assert train(cfg, tmp_path / "cut") == whole
    assert clustered["n"] == 1  # epoch 3 only: epoch 2 went on with the checkpoint's labels
    assert same_checkpoints(tmp_path / "whole", tmp_path / "cut")
    strip = lambda d: [{k: v for k, v in r.items() if k != "seconds"} for r in runs.read_jsonl(d / "metrics.jsonl")]  # noqa: E731
    assert strip(tmp_path / "whole") == strip(tmp_path / "cut")


@pytest.mark.slow
@pytest.mark.slow
def test_two_processes_agree(tiny_synthetic, tmp_path):
    """Under torchrun (two CPU processes) the pseudo-labels, the cluster memory and the weights end
    identical everywhere (the untrained stripe heads are DistributedDataParallel's unused parameters)."""
    from tests.engine.test_distributed import torchrun

    torchrun(tiny_synthetic, tmp_path / "run", *(f"{k}={v}" for k, v in CC.items()))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["replicas"]["world_size"] == 2 and metrics["replicas"]["identical"]
    rows = runs.read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert len(rows) == 3 and all(r["clusters"] >= 1 for r in rows)
