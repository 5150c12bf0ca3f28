"""Cluster Contrast's clustering step on a CPU (k-reciprocal Jaccard distance + DBSCAN), per epoch,
at several training-set sizes, and its share of an epoch.

    .venv/bin/python -m benchmarks.bench_cluster [--config configs/cluster-contrast-cpu.yaml]
        [--sizes 2000 7000 13000] [--repeat 2] [--threads 2] [--batches 4] [--step-seconds S --image-ms M]

**The clustering step** is timed through the library's own calls, as
:class:`reidlib.methods.cluster_contrast.learner.ClusterContrast` makes them at every epoch's start:
:func:`reidlib.methods.cluster_contrast.clustering.jaccard_pairs` (rankings, k-reciprocal sets, sparse
Jaccard distance) and :func:`reidlib.methods.cluster_contrast.clustering.pseudo_labels` (DBSCAN), with
the config's k1, k2, eps and min_samples.
Its input is random clustered unit features (N, D), D the config's ``feat_dim``: identities of
8-24 images (16 on average, Market-1501 has 17), each image a latent identity centre z ~ N(0, I_r)
plus a view variation N(0, 0.6^2 I_r) (r = 16), mapped to D dims by one Gaussian matrix, plus
isotropic noise, normalised. The pairs kept by the sparse distance, the peak RSS (it grows with the
pairs; the sizes run in ascending order) and the labels' quality against the identities are printed;
each size runs ``--repeat`` times and the fastest run counts (other jobs' load only slows a run).

**The rest of an epoch** is measured as ``benchmarks/bench_epoch.py`` measures it, on random images of
the config's input size (no dataset needed): forward, backward and Adam step of the config's model on
``--batches`` batches of ``batch_size`` (train mode, NHWC if the config asks), and the eval-mode pass
over the training split that gives the clustering its features (``eval_batch_size`` images a batch).
An epoch of N images is N / B steps plus that pass plus the clustering; loading the crops from the
cache (``cache_images``) is left out (bench_epoch.py measures it: a few percent of the step).
``--step-seconds`` and ``--image-ms`` take those two costs from a measured run instead (on a machine
that other jobs share, the timings here vary with their load; the load average is printed).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from benchmarks.memory_usage import reset_peak, rss_gib
from reidlib.config import load_config
from reidlib.methods.cluster_contrast import clustering
from reidlib.model import make_model, memory_format


def clustered_features(
    num: int, dim: int, seed: int = 0, latent: int = 16, noise: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) unit features of identities of 8-24 images, and the identities (N,)."""
    gen = torch.Generator().manual_seed(seed)
    sizes = torch.randint(8, 25, (num // 8,), generator=gen)
    pids = torch.repeat_interleave(torch.arange(len(sizes)), sizes)[:num]
    z = torch.randn(len(sizes), latent, generator=gen)[pids] + 0.6 * torch.randn(num, latent, generator=gen)
    mix = torch.randn(latent, dim, generator=gen) / latent**0.5
    return F.normalize(z @ mix + noise * torch.randn(num, dim, generator=gen), dim=1), pids


def time_clustering(num: int, dim: int, c, repeat: int) -> dict[str, float]:
    """The fastest of ``repeat`` runs of the clustering step on ``num`` features."""
    return min((_time_clustering(num, dim, c) for _ in range(repeat)), key=lambda r: r["jaccard"] + r["dbscan"])


def _time_clustering(num: int, dim: int, c) -> dict[str, float]:
    feats, pids = clustered_features(num, dim)
    reset_peak()
    start = time.perf_counter()
    pairs = clustering.jaccard_pairs(feats, c.cluster_k1, c.cluster_k2)
    t_jaccard = time.perf_counter() - start
    start = time.perf_counter()
    labels = clustering.pseudo_labels(pairs, num, eps=c.cluster_eps, min_samples=c.min_samples)
    t_dbscan = time.perf_counter() - start
    stats = clustering.label_stats(labels, pids)
    return {
        "jaccard": t_jaccard,
        "dbscan": t_dbscan,
        "pairs": len(pairs[0]),
        "peak_gib": rss_gib()[1],
        "clusters": stats.clusters,
        "ids": int(pids.max()) + 1,
        "outliers": stats.outlier_share,
        "ari": stats.cluster_ari,
    }


def time_model(cfg, batches: int) -> tuple[float, float]:
    """Seconds per training step (forward, backward, Adam) and per image of the eval-mode pass."""
    d, t = cfg.data, cfg.train
    model = make_model(replace(cfg, model=replace(cfg.model, pretrained=None)), torch.device("cpu"))
    opt = torch.optim.Adam(model.parameters(), lr=t.lr)
    images = torch.rand(t.batch_size, 3, d.height, d.width).contiguous(memory_format=memory_format(cfg))
    model.train()

    def step() -> None:
        out = model(images)
        opt.zero_grad()
        (out.global_.sum() + out.parts.sum()).backward()
        opt.step()

    step()  # warm-up (and Adam's state)
    start = time.perf_counter()
    for _ in range(batches):
        step()
    per_step = (time.perf_counter() - start) / batches
    model.eval()
    eval_images = torch.rand(cfg.eval.eval_batch_size, 3, d.height, d.width).contiguous(
        memory_format=memory_format(cfg)
    )
    with torch.no_grad():
        model(eval_images)
        start = time.perf_counter()
        for _ in range(batches):
            model(eval_images)
    per_image = (time.perf_counter() - start) / (batches * len(eval_images))
    return per_step, per_image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/cluster-contrast-cpu.yaml")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 7000, 13000])
    ap.add_argument("--repeat", type=int, default=2, help="runs of each size; the fastest counts")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, default=4, help="batches timed for the model's step and pass")
    ap.add_argument("--step-seconds", type=float, help="a training step's seconds, measured elsewhere")
    ap.add_argument("--image-ms", type=float, help="the features pass's milliseconds an image, measured elsewhere")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    c, t = cfg.cluster, cfg.train
    print(f"load average at start: {os.getloadavg()[0]:.2f}; threads {args.threads}; {args.config}")
    print(
        f"k1 {c.cluster_k1}, k2 {c.cluster_k2}, eps {c.cluster_eps}, min_samples {c.min_samples}; "
        f"D {cfg.model.feat_dim}"
    )
    if args.step_seconds is None or args.image_ms is None:
        per_step, per_image, source = *time_model(cfg, args.batches), "measured here"
    else:
        per_step, per_image, source = args.step_seconds, args.image_ms / 1000, "given"
    print(
        f"{cfg.model.arch} at {cfg.data.height}x{cfg.data.width} ({source}): {per_step:.2f} s a training step of "
        f"{t.batch_size}, {1000 * per_image:.1f} ms an image in the features pass\n"
    )
    head = (
        f"{'N':>6} {'jaccard s':>9} {'DBSCAN s':>8} {'pairs M':>7} {'peak GiB':>8} {'clusters':>8} {'ids':>5} "
        f"{'outliers':>8} {'ARI':>5}"
    )
    head += f" | {'steps s':>7} {'pass s':>6} {'epoch s':>7} {'share':>6} {'+pass':>6}"
    print(head)
    for num in sorted(args.sizes):
        r = time_clustering(num, cfg.model.feat_dim, c, args.repeat)
        cluster = r["jaccard"] + r["dbscan"]
        steps, feature_pass = (num // t.batch_size) * per_step, num * per_image
        epoch = steps + feature_pass + cluster
        print(
            f"{num:>6} {r['jaccard']:>9.1f} {r['dbscan']:>8.1f} {r['pairs'] / 1e6:>7.1f} {r['peak_gib']:>8.2f} "
            f"{r['clusters']:>8} {r['ids']:>5} {100 * r['outliers']:>7.1f}% {r['ari']:>5.2f}"
            f" | {steps:>7.0f} {feature_pass:>6.0f} {epoch:>7.0f} {100 * cluster / epoch:>5.1f}% "
            f"{100 * (cluster + feature_pass) / epoch:>5.1f}%"
        )
    print("\nshare: Jaccard + DBSCAN / epoch; +pass: with the features pass the clustering needs")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
