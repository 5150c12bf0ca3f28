"""Evaluation without a dense distmat: dense vs streamed vs top-R (torch, faiss), at Market size and at 1M.

    .venv/bin/python -m benchmarks.bench_evaluation_scale [--threads 1] [--distractors 984087]

Two sections, each a table of seconds, memory and figures, measured side by side in one run:

1. **Market-1501 size**: 3,368 queries x 15,913 gallery items, D = 2048, P = 8. The dense path
   (``query_gallery_distance`` + ``evaluate``, what ``reidlib evaluate`` does) against
   ``evaluate_topk`` streamed over the whole gallery (same figures, exactly) and with R = 100
   (protocol ``market1501@R``: CMC exact up to R; mAP@R a lower bound of mAP), by torch and by a
   faiss flat index (the latter on the squared distance, the only inner-product form; its dense
   reference is printed beside it).
2. **A 1M gallery**: the same queries and gallery plus distractors up to 1,000,000 items (as
   Market-1501+500k does with real distractors), D = 256 (P = 8) so that the features fit beside
   everything else (time grows linearly with D). A dense float32 distmat would take
   3,368 x 1M x 4 bytes = 12.5 GiB, so the dense path is not run; the streamed paths hold one block
   of 256 queries at a time (64 for the whole-gallery sort). Each row's peak RSS is measured while
   that path runs.

(The default run took 23 minutes on this project's 2-core machine.)

Data: 750 query identities, each with a centre in a 16-dim latent mapped to D dims, images =
centre + view noise + isotropic noise, 6 cameras; distractors are images of other identities.
"""

from __future__ import annotations

import argparse
import math
import time

import faiss
import numpy as np
import torch

from benchmarks.memory_usage import reset_peak, rss_gib
from reidlib.distances import combined_distance
from reidlib.evaluation.evaluator import query_gallery_distance
from reidlib.evaluation.protocol import evaluate
from reidlib.evaluation.topk import evaluate_topk

NUM_Q, NUM_G, NUM_IDS, C, P, LATENT = 3368, 15913, 750, 6, 8, 16


def make_split(rng, pids, dim, mix, noise=0.6):
    """Unit global (n, D) and stripes (n, P, D/P) of identities ``pids`` through the maps ``mix``."""
    centres, a, b = mix
    n = len(pids)
    u = centres[pids] + 0.5 * rng.standard_normal((n, LATENT), dtype=np.float32)
    glob = u @ a + noise * rng.standard_normal((n, dim), dtype=np.float32)
    parts = np.einsum("nr,prd->npd", u, b) + noise * rng.standard_normal((n, P, dim // P), dtype=np.float32)
    glob /= np.linalg.norm(glob, axis=1, keepdims=True)
    parts /= np.linalg.norm(parts, axis=2, keepdims=True)
    return glob, parts


def build(dim: int, num_distractors: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    num_ids = NUM_IDS + max(1, num_distractors // 10)
    mix = (
        rng.standard_normal((num_ids, LATENT), dtype=np.float32),
        rng.standard_normal((LATENT, dim), dtype=np.float32) / math.sqrt(LATENT),
        rng.standard_normal((P, LATENT, dim // P), dtype=np.float32) / math.sqrt(LATENT),
    )
    q_pids = rng.integers(0, NUM_IDS, NUM_Q)
    g_pids = np.concatenate([rng.integers(0, NUM_IDS, NUM_G), rng.integers(NUM_IDS, num_ids, num_distractors)])
    split = {}
    for name, pids in (("query", q_pids), ("gallery", g_pids)):
        glob = np.empty((len(pids), dim), dtype=np.float32)
        parts = np.empty((len(pids), P, dim // P), dtype=np.float32)
        for s in range(0, len(pids), 100_000):
            glob[s : s + 100_000], parts[s : s + 100_000] = make_split(rng, pids[s : s + 100_000], dim, mix)
        split[name] = {"global": glob, "parts": parts, "pids": pids, "camids": rng.integers(0, C, len(pids))}
    return split["query"], split["gallery"]


def run(name, fn, rows, note=""):
    reset_peak()
    t0 = time.perf_counter()
    res = fn()
    seconds = time.perf_counter() - t0
    rows.append((name, seconds, res, note, rss_gib()))
    print(f"  {name}: {seconds:.1f} s", flush=True)
    return res


def table(title, rows, ref_seconds):
    print(f"\n{title}")
    print(
        f"{'path':<44} {'protocol':<14} {'s':>7} {'dense/this':>10} {'mAP':>7} {'R-1':>6} {'R-10':>6} "
        f"{'mINP':>6} {'peak GiB':>8}  holds"
    )
    for name, seconds, res, note, (_, peak) in rows:
        protocol = "market1501@100" if "R=100" in name else "market1501"
        ratio = f"{ref_seconds / seconds:9.2f}x" if ref_seconds else f"{'-':>10}"
        print(
            f"{name:<44} {protocol:<14} {seconds:7.1f} {ratio} {100 * res.mAP:7.3f} {100 * res.cmc[0]:6.2f} "
            f"{100 * res.cmc[9]:6.2f} {100 * res.mINP:6.2f} {peak:8.2f}  {note}"
        )


def section(query, gallery, dense: bool, chunk: int):
    num_g, dim = gallery["global"].shape
    args = (query["pids"], gallery["pids"], query["camids"], gallery["camids"])
    block = f"{chunk} x {num_g:,} float32 distances ({chunk * num_g * 4 / 2**20:,.0f} MiB) a block"
    index = f"index {num_g * 2 * dim * 4 / 2**30:.2f} GiB + {block}"
    rows = []
    if dense:
        dist = {}
        run(
            "dense distmat + evaluate (euclidean)",
            lambda: evaluate(dist.setdefault("e", query_gallery_distance(query, gallery, lambda_g=0.5)), *args),
            rows,
            f"distmat {NUM_Q * num_g * 4 / 2**20:,.0f} MiB",
        )
        dist.clear()

        def dense_squared():
            t = torch.from_numpy
            d = combined_distance(
                t(query["global"]),
                t(query["parts"]),
                t(gallery["global"]),
                t(gallery["parts"]),
                lambda_g=0.5,
                squared=True,
            ).numpy()
            return evaluate(d, *args)

        run("dense distmat + evaluate (squared)", dense_squared, rows, f"distmat {NUM_Q * num_g * 4 / 2**20:,.0f} MiB")
    kw = dict(lambda_g=0.5, chunk=chunk)
    # a whole-gallery block also holds int64 sort indices and their gathers: smaller blocks for a
    # large gallery (at Market size 64-query blocks took 20.5 s against 12.3 s for 256)
    small = chunk if num_g <= 100_000 else max(1, chunk // 4)
    run(
        "streamed, whole gallery, torch (euclidean)",
        lambda: evaluate_topk(query, gallery, lambda_g=0.5, chunk=small),
        rows,
        f"{small} x {num_g:,} distances + sort indices a block",
    )
    run("top R=100, torch (euclidean)", lambda: evaluate_topk(query, gallery, top_r=100, **kw), rows, block)
    run(
        "top R=100, torch (squared)",
        lambda: evaluate_topk(query, gallery, top_r=100, distance="squared", **kw),
        rows,
        block,
    )
    run(
        "top R=100, faiss flat (squared)",
        lambda: evaluate_topk(query, gallery, top_r=100, distance="squared", backend="faiss", **kw),
        rows,
        index,
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--distractors", type=int, default=1_000_000 - NUM_G)
    parser.add_argument("--market-dim", type=int, default=2048)
    parser.add_argument("--large-dim", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    print(
        f"bench_evaluation_scale {time.strftime('%Y-%m-%d %H:%M %Z')}: {args.threads} thread(s), "
        f"torch {torch.__version__}, faiss {faiss.__version__}; lambda_g = 0.5; 'euclidean' is the standard "
        f"test distance, 'squared' the inner-product form faiss can index"
    )

    query, gallery = build(args.market_dim, 0)
    print(f"\n1. Market-1501 size: {NUM_Q:,} queries x {NUM_G:,} gallery, D = {args.market_dim}, P = {P}")
    rows = section(query, gallery, dense=True, chunk=args.chunk)
    table(
        f"Market-1501 size ({NUM_Q:,} x {NUM_G:,}, D = {args.market_dim}); "
        "dense/this = the dense euclidean path's time "
        f"over this one",
        rows,
        rows[0][1],
    )
    del query, gallery

    query, gallery = build(args.large_dim, args.distractors)
    num_g = len(gallery["pids"])
    held = sum(a.nbytes for a in (query["global"], query["parts"], gallery["global"], gallery["parts"]))
    print(
        f"\n2. Large gallery: {NUM_Q:,} queries x {num_g:,} gallery ({NUM_G:,} + {args.distractors:,} distractors), "
        f"D = {args.large_dim}, P = {P}; a dense float32 distmat would be {NUM_Q * num_g * 4 / 2**30:.1f} GiB: "
        f"not run; features held {held / 2**30:.2f} GiB"
    )
    rows = section(query, gallery, dense=False, chunk=args.chunk)
    table(f"Gallery of {num_g:,} (D = {args.large_dim})", rows, 0.0)
    print(
        "\npeak GiB: the process's peak RSS while that path ran (the data held, about "
        f"{rss_gib()[0]:.1f} GiB now, included)."
    )
    print(
        "market1501@100: CMC exact up to rank 100 (R-1, R-10 here are exact); mAP@100 and mINP@100 count "
        "matches beyond rank 100 as missed: lower bounds of mAP / mINP (compare the streamed whole-gallery row)"
    )


if __name__ == "__main__":
    main()
