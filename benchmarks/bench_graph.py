"""The recipe's per-epoch slot graph against N: exact vs each faiss backend, side by side in one run.

    .venv/bin/python -m benchmarks.bench_graph [--sizes 2000 7000 13000 32621 100000 1000000]
        [--indexes exact flat ivf ivf_sq8 hnsw] [--exact-max 32621] [--nprobe 32] [--threads 2]

For each bank size N the script makes ReID-like banks as ``bench_selection.py`` does (its data model:
identities of 8-12 images over 2-4 of 6 cameras), here with the recipe's model shapes (512-d global,
4 stripes of 128), builds the epoch's :class:`SelectionDistance` with ``configs/real-cpu.yaml``'s
weights (lambda_c, camera debias) and computes the recipe's positive table
(:func:`reidlib.methods.scl.tables.positive_table`: for CA-Jaccard, rankings within and across
cameras, k-reciprocal sets, Jaccard distance, each slot's nearest below eps; for camera groups,
mutual neighbours within cameras, then the groups' mutual neighbours across them) once per backend of
:class:`reidlib.neighbours.slot_search.SlotSearch`. It prints per backend: seconds (index build
and the whole table), peak resident memory of that step (VmHWM reset before it; the banks are
counted, they are resident anyway), positives per slot, recall and precision of the exact graph's
positives (when the exact graph was run at that N), and the share of positives of the slot's own
identity (what the data model knows; the exact graph's own share beside it). The exact graph is
skipped above ``--exact-max`` (it grows as N^2). Ratios are exact seconds / backend seconds.

With ``--stripes``, each backend also builds the part agreement's per-epoch stripe lists
(:func:`reidlib.methods.scl.tables.stripe_lists`: each slot's ``LIST_DEPTH * part_agreement_k``
nearest by each stripe alone, part of the pool the table rule's stripe check ranks within at every
step when the bank is searched through faiss):
their seconds, the peak with them, and their recall of the exact backend's lists.
``--bank-dtype float16`` keeps the banks as ``scl.bank_dtype: float16`` does (half their memory).

Where the exact graph does not fit (1,000,000 slots), ``--sample S`` still measures each index
against exact search, on S random slots: the share of each one's exact ``--sample-k`` nearest
within its camera and across cameras (by the embedding the indexes hold, full dims, no camera
term) that :meth:`SlotSearch.nearest_to` finds, the neighbour lists every graph is made of. At a
size where the exact graph runs too, the two recalls side by side tell how the one reads the other.
"""

from __future__ import annotations

import argparse
import time

import faiss
import torch

from benchmarks.bench_selection import ReidLikeData
from benchmarks.memory_usage import reset_peak, rss_gib
from reidlib.config import GRAPH_INDEXES, SearchConfig, load_config
from reidlib.methods.scl.checks import LIST_DEPTH
from reidlib.methods.scl.tables import positive_table, stripe_lists
from reidlib.neighbours.selection_distance import SelectionDistance
from reidlib.neighbours.slot_search import SlotSearch

DIM, PARTS = 512, 4  # the recipe's MobileNetV2 head: feat_dim 512, 4 stripes


def agreement(
    found: tuple[torch.Tensor, torch.Tensor], exact: tuple[torch.Tensor, torch.Tensor]
) -> tuple[float, float]:
    """Recall and precision of ``found``'s positives against ``exact``'s, pooled over slots."""
    (f_idx, f_valid), (e_idx, e_valid) = found, exact
    hits = 0
    for start in range(0, len(f_idx), 65_536):
        f, e = f_idx[start : start + 65_536], e_idx[start : start + 65_536]
        fv, ev = f_valid[start : start + 65_536], e_valid[start : start + 65_536]
        hits += int(((f[:, :, None] == e[:, None, :]) & fv[:, :, None] & ev[:, None, :]).any(-1).sum())
    return hits / max(int(e_valid.sum()), 1), hits / max(int(f_valid.sum()), 1)


def identity_share(table: tuple[torch.Tensor, torch.Tensor], pids: torch.Tensor) -> float:
    idx, valid = table
    same = pids[idx] == pids[:, None]
    return float((same & valid).sum()) / max(int(valid.sum()), 1)


def list_recall(found: torch.Tensor, exact: torch.Tensor) -> float:
    """Share of the exact stripe lists' entries (N, P, k) that the found lists hold, row by row."""
    hits = 0
    for start in range(0, len(found), 65_536):
        f, e = found[start : start + 65_536], exact[start : start + 65_536]
        hits += int((e[..., :, None] == f[..., None, :]).any(-1).sum())
    return hits / exact.numel()


def sampled_recall(search: SlotSearch, sample: torch.Tensor, k: int) -> tuple[float, float]:
    """Recall of the exact k nearest of the ``sample`` slots (S,), within their camera and across
    cameras, in the lists the indexes find (:meth:`SlotSearch.nearest_to`)."""
    x, cams = search.x, search.camids.cpu()
    recalls = []
    for cameras in ("same", "other"):
        found, _ = search.nearest_to(sample, cameras, k)  # (S, k)
        hits = total = 0
        for at in torch.arange(len(sample)).split(256):
            rows = sample[at]
            dist = 2.0 - 2.0 * x[rows] @ x.T  # (b, N)
            same = cams[rows][:, None] == cams[None, :]
            dist.masked_fill_(~same if cameras == "same" else same, float("inf"))
            dist[torch.arange(len(rows)), rows] = float("inf")
            values, exact = torch.topk(dist, k, dim=1, largest=False)
            real = torch.isfinite(values)
            hits += int(((exact[:, :, None] == found[at][:, None, :]).any(-1) & real).sum())
            total += int(real.sum())
        recalls.append(hits / max(total, 1))
    return recalls[0], recalls[1]


def run_size(n: int, args, scl_cfg) -> list[dict]:
    data = ReidLikeData(n, latent=args.latent, noise=args.noise, seed=args.seed, dim=DIM, parts=PARTS)
    glob, parts = data.banks(dtype=getattr(torch, args.bank_dtype))
    distance = SelectionDistance(
        glob, parts, data.camids, lambda_g=scl_cfg.lambda_g, lambda_c=scl_cfg.lambda_c, debias=scl_cfg.camera_debias
    )
    print(f"\n=== N = {n:,} slots ({int(data.pids[-1]) + 1:,} identities, 6 cameras), D = {DIM}, P = {PARTS} ===")
    sample = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed))[: args.sample].sort().values
    sample_head = f" {f'{args.sample_k}-nn same':>11} {'other':>6}" if args.sample else ""
    stripe_heads = f" {'stripes s':>9} {'peak GiB':>9} {'recall':>7}" if args.stripes else ""
    print(
        f"{'backend':8} {'build s':>8} {'graph s':>8} {'ratio':>6} {'peak GiB':>9} {'pos/slot':>9} "
        f"{'recall':>7} {'precision':>9} {'own id':>7}{sample_head}{stripe_heads}"
    )
    exact = exact_seconds = exact_lists = None
    rows = []
    for index in args.indexes:
        if index == "exact" and n > args.exact_max:
            print(f"{index:8} skipped above --exact-max {args.exact_max:,}")
            continue
        reset_peak()
        t0 = time.perf_counter()
        search = SlotSearch(distance, index, dim=args.graph_dim, rerank=args.rerank, nprobe=args.nprobe, seed=args.seed)
        built = time.perf_counter() - t0
        table = positive_table(distance, search, scl_cfg)
        seconds = time.perf_counter() - t0
        peak = rss_gib()[1]
        if index == "exact":
            exact, exact_seconds = table, seconds
        rec, prec = agreement(table, exact) if exact is not None else (float("nan"), float("nan"))
        ratio = f"{exact_seconds / seconds:6.1f}" if exact_seconds else f"{'':6}"
        print(
            f"{index:8} {built:8.1f} {seconds:8.1f} {ratio} {peak:9.2f} {table[1].sum(1).float().mean():9.2f} "
            f"{rec:7.3f} {prec:9.3f} {identity_share(table, data.pids):7.3f}",
            end="",
            flush=True,
        )
        if args.sample:  # the exact backend is its own reference
            same, other = (1.0, 1.0) if index == "exact" else sampled_recall(search, sample, args.sample_k)
            print(f" {same:11.3f} {other:6.3f}", end="", flush=True)
        if not args.stripes:
            print(flush=True)
        if args.stripes:  # on the same line, once built
            t0 = time.perf_counter()
            lists = stripe_lists(distance, search, LIST_DEPTH * scl_cfg.part_agreement_k)
            lists_seconds, lists_peak = time.perf_counter() - t0, rss_gib()[1]
            if index == "exact":
                exact_lists = lists
            hits = float("nan") if exact_lists is None else list_recall(lists, exact_lists)
            print(f" {lists_seconds:9.1f} {lists_peak:9.2f} {hits:7.3f}", flush=True)
            del lists
        del search
        rows.append({"slots": n, "backend": index, "seconds": seconds, "peak_gib": peak, "recall": rec})
    return rows


def plot(rows: list[dict], path: str, rule: str) -> None:
    """Seconds and peak memory of the graph against N, one line per backend (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for backend in dict.fromkeys(row["backend"] for row in rows):
        mine = [row for row in rows if row["backend"] == backend]
        for ax, key in zip(axes, ("seconds", "peak_gib")):
            ax.plot([row["slots"] for row in mine], [row[key] for row in mine], marker="o", label=backend)
    for ax, label in zip(axes, ("seconds for the epoch's graph", "peak resident memory, GiB")):
        ax.set(xscale="log", yscale="log", xlabel="memory slots N", ylabel=label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"The per-epoch graph of positive_rule {rule} against N")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_000, 7_000, 13_000, 32_621, 100_000, 1_000_000])
    parser.add_argument(
        "--indexes", nargs="+", default=["exact", "flat", "ivf", "ivf_sq8", "hnsw"], choices=GRAPH_INDEXES + ("exact",)
    )
    parser.add_argument("--exact-max", type=int, default=32_621, help="run the exact graph only up to this N")
    parser.add_argument("--flat-max", type=int, default=100_000, help="run the flat index only up to this N")
    parser.add_argument("--graph-dim", type=int, default=128, help="PCA dims of the IVF / HNSW vectors")
    parser.add_argument("--rerank", type=float, default=2.0, help="candidates per camera, a multiple of k + 1")
    parser.add_argument("--nprobe", type=int, default=SearchConfig.graph_nprobe, help="IVF cells visited per query")
    parser.add_argument("--config", default="configs/real-cpu.yaml", help="the recipe whose scl section is used")
    parser.add_argument("--rule", help="another scl.positive_rule than the config's (e.g. camera_groups)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--latent", type=int, default=16)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", help="also draw seconds and memory against N into this PNG")
    parser.add_argument("--stripes", action="store_true", help="also build the part agreement's stripe lists")
    parser.add_argument("--bank-dtype", default="float32", choices=["float32", "float16"])
    parser.add_argument("--sample", type=int, default=0, help="slots whose exact nearest lists check each index")
    parser.add_argument("--sample-k", type=int, default=10, help="neighbours per list of --sample")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    scl_cfg = load_config(args.config, {"positive_rule": args.rule} if args.rule else None).scl
    print(
        f"bench_graph {time.strftime('%Y-%m-%d %H:%M %Z')}: torch {torch.__version__}, faiss {faiss.__version__}, "
        f"{args.threads} thread(s); {args.config} (or --rule): {scl_cfg.positive_rule}, k {scl_cfg.k}, "
        f"ca_k {scl_cfg.ca_k_intra}/{scl_cfg.ca_k_inter}, k2 {scl_cfg.jaccard_k2}, eps {scl_cfg.jaccard_eps}, "
        f"lambda_c {scl_cfg.lambda_c}, debias {scl_cfg.camera_debias}; ivf / hnsw: PCA {args.graph_dim}, "
        f"rerank {args.rerank:g}, nprobe {args.nprobe}"
    )
    rows = []
    for n in args.sizes:
        if n > args.flat_max and "flat" in args.indexes:
            args.indexes = [i for i in args.indexes if i != "flat"]
        rows += run_size(n, args, scl_cfg)
    if args.plot:
        plot(rows, args.plot, scl_cfg.positive_rule)


if __name__ == "__main__":
    main()
