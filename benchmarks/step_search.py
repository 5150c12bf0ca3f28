"""The per-step search at 100,000 to 1,000,000 slots: the paper's kNN rule and the recipe's table
rule, exact and through faiss, side by side in one run (``bench_step.py --search``).

    .venv/bin/python -m benchmarks.bench_step --search [--sizes 100000 1000000] [--threads 2]
        [--batches 5] [--exact-batches 2] [--exact-recipe-max 100000] [--lists-max 100000]
        [--nprobe 64 256] [--rerank 1 2] [--faiss-index ivf ivf_sq8] [--faiss-dim 128 256]

Shape letters: B anchors, N slots, D feature dim, P stripes, K positives, M negatives.

Banks are ``bench_selection.py``'s ReID-like data with the recipe's model shapes (D 512, P 4, 6
cameras), float16, and the distance has ``configs/real-cpu.yaml``'s weights (lambda_c, camera
debias); B = 32 anchors a batch (the recipe's), k 7, m 500. Per N and per rule, the miner the
library builds at an epoch's start, called on the same batches:

- **kNN, exact**: :class:`NearestMiner` over :class:`TorchSearcher` (a block of slots at a time);
- **kNN, IVF**: :class:`NearestMiner` over :class:`FaissSearcher` (``search`` section defaults:
  IVF with 4 sqrt(N) cells; one index per ``--faiss-index`` (float32 ``ivf`` or 8-bit ``ivf_sq8``)
  and ``--faiss-dim`` (PCA dims, 256 by default), each asked with each ``--nprobe`` and ``--rerank`` in turn);
- **recipe, exact**: :class:`TableMiner` as below 100,000 slots: a dense (B, N) distance for the
  negatives, the stripes' (B, P, N) distances for ``part_agreement`` 2 of 4 among the 20 nearest;
- **recipe, IVF**: :class:`TableMiner` with the same searcher for its negatives and per-epoch
  stripe lists (:func:`reidlib.methods.scl.tables.stripe_lists`, built through the graph's IVF
  search, timed once) for the part agreement.

The recipe's positive table here is each slot's first K true matches (the data model's
identities), not the per-epoch graph (``bench_graph.py`` times that): the step's cost does not
depend on which slots the table lists. Above ``--lists-max`` the stripe lists are a random stand-in
of the same shape (the step looks them up the same way; their build is not timed then).

Printed per N: milliseconds per batch (median of the timed batches after one warm-up; the exact
rules run ``--exact-batches`` of them, above ``--exact-recipe-max`` the exact recipe not at all),
the recall of the exact rule's negatives (the set of M, band included) on the batches both ran,
for the recipe the share of positive columns kept or dropped alike, the index build and one
refresh of a batch's slots, and the process's peak RSS.
"""

from __future__ import annotations

import statistics
import time

import torch

from benchmarks.bench_selection import ReidLikeData
from benchmarks.memory_usage import rss_gib
from reidlib.config import SearchConfig, load_config
from reidlib.methods.scl.checks import LIST_DEPTH
from reidlib.methods.scl.diagnostics import IdentityTable
from reidlib.methods.scl.miners import NearestMiner, PositiveChecks, TableMiner
from reidlib.methods.scl.tables import first_valid, stripe_lists
from reidlib.neighbours.searchers import FaissSearcher, TorchSearcher
from reidlib.neighbours.selection_distance import SelectionDistance
from reidlib.neighbours.slot_search import make_slot_search

DIM, PARTS, BATCH = 512, 4, 32  # the recipe's MobileNetV2 head and batch


def timed(miner, batches) -> tuple[float, list]:
    """Milliseconds per batch (median after the first, a warm-up) and every batch's Selection."""
    out, times = [], []
    for i, batch in enumerate(batches):
        t0 = time.perf_counter()
        out.append(miner(*batch))
        if i:
            times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times), out


def negatives(sel) -> torch.Tensor:
    """The band and the negatives of a Selection, (B, band+M)."""
    return sel.neg_idx if sel.ignored is None else torch.cat([sel.ignored, sel.neg_idx], dim=1)


def recall(found: list, exact: list) -> float:
    """Mean share of the exact negatives each anchor's found negatives hold, over the batches both ran."""
    hits = [
        (negatives(e)[:, :, None] == negatives(f)[:, None, :]).any(-1).float().mean(1) for f, e in zip(found, exact)
    ]
    return torch.cat(hits).mean().item()


def kept_alike(found: list, exact: list) -> float:
    """Share of positive columns (own slot left out) kept or dropped alike."""
    same = [(f.mask()[:, 1:] == e.mask()[:, 1:]).float().flatten() for f, e in zip(found, exact)]
    return torch.cat(same).mean().item()


def run_size(n: int, args, s) -> list[tuple]:
    t0 = time.perf_counter()
    data = ReidLikeData(n, latent=args.latent, noise=args.noise, seed=args.seed, dim=DIM, parts=PARTS)
    glob, parts = data.banks(dtype=torch.float16)
    cams = data.camids
    distance = SelectionDistance(glob, parts, cams, lambda_g=s.lambda_g, lambda_c=s.lambda_c, debias=s.camera_debias)
    matches = IdentityTable.build(data.pids)
    table = first_valid(matches.slots, matches.valid, s.k)  # (N, K) each slot's first K true matches
    gen = torch.Generator().manual_seed(args.seed + 1)
    batches = []
    for _ in range(args.batches + 1):
        idx = torch.randperm(n, generator=gen)[:BATCH]
        batches.append((*data.anchors(idx), idx))
    print(
        f"\n=== N = {n:,} slots, D {DIM}, P {PARTS}, float16 banks, B {BATCH}, k {s.k}, m {s.m}: data in "
        f"{time.perf_counter() - t0:.0f} s, RSS {rss_gib()[0]:.1f} GiB ===",
        flush=True,
    )
    searchers = []
    for kind, faiss_dim in [(kind, dim) for dim in args.faiss_dim for kind in args.faiss_index]:
        t0 = time.perf_counter()
        cfg = SearchConfig(backend="faiss", faiss_index=kind, faiss_dim=faiss_dim)
        searcher = FaissSearcher(distance, cfg, seed=args.seed)
        build = time.perf_counter() - t0
        refresh = []
        for batch in batches[1:]:
            t0 = time.perf_counter()
            searcher.refresh(batch[3])
            refresh.append(1e3 * (time.perf_counter() - t0))
        name = f"{'IVF' if kind == 'ivf' else 'IVF-SQ8'} {searcher.index.ivf.nlist} cells, PCA {faiss_dim}"
        print(f"{name} searcher built in {build:.0f} s; refresh of {BATCH} slots {statistics.median(refresh):.1f} ms")
        searchers.append((name, searcher))
    depth = LIST_DEPTH * s.part_agreement_k
    if n <= args.lists_max:
        search = make_slot_search(SearchConfig(backend="faiss"), distance, seed=args.seed)  # the epoch's graph search
        t0 = time.perf_counter()
        lists = stripe_lists(distance, search, depth)
        made = f"built through the graph's IVF search in {time.perf_counter() - t0:.0f} s (per epoch)"
        del search
    else:
        lists = torch.randint(0, n, (n, PARTS, depth), generator=gen, dtype=torch.int32)
        made = f"a random stand-in (above --lists-max {args.lists_max:,})"
    print(f"stripe lists (N, P, {depth}): {made}", flush=True)

    def recipe(searcher=None, part_agreement: int = s.part_agreement) -> TableMiner:
        checks = PositiveChecks(
            distance, s.pos_max_distance, part_agreement, s.part_agreement_k, lists if searcher else None
        )
        return TableMiner(distance, table, s.m, checks, band=s.negative_band, searcher=searcher)

    exact_batches = batches[: args.exact_batches + 1]
    knn_exact, knn_ref = timed(NearestMiner(TorchSearcher(distance), n, s.k, s.m), exact_batches)
    rows = [("kNN rule", "exact", knn_exact, 1.0, float("nan"))]
    if n <= args.exact_recipe_max:
        tab_exact, tab_ref = timed(recipe(), exact_batches)
        rows.append(("recipe (TableMiner)", "exact", tab_exact, 1.0, 1.0))
    else:  # the same negatives without the (B, P, N) check: its time is a lower bound of the exact one's
        tab_exact, tab_ref = timed(recipe(part_agreement=0), exact_batches)
        rows.append(("recipe (TableMiner)", "exact*", tab_exact, 1.0, float("nan")))
    print(f"  exact: kNN {knn_exact:.0f} ms, recipe {tab_exact:.0f} ms", flush=True)
    for name, searcher in searchers:
        for nprobe in args.nprobe:
            for rerank in args.rerank:
                searcher.index.ivf.nprobe, searcher.rerank = nprobe, rerank
                label = f"{name}, nprobe {nprobe}, rerank {rerank:g}"
                knn, knn_out = timed(NearestMiner(searcher, n, s.k, s.m), batches)
                rows.append(("kNN rule", label, knn, recall(knn_out, knn_ref), float("nan")))
                tab, tab_out = timed(recipe(searcher), batches)
                alike = kept_alike(tab_out, tab_ref) if n <= args.exact_recipe_max else float("nan")
                rows.append(("recipe (TableMiner)", label, tab, recall(tab_out, tab_ref), alike))
                print(f"  {label}: kNN {knn:.0f} ms, recipe {tab:.0f} ms", flush=True)
    cur, peak = rss_gib()
    print(
        f"\nN = {n:,}: ms per batch of {BATCH} (median of {args.batches} IVF / {args.exact_batches} exact batches "
        f"after one warm-up); recall of the exact rule's {s.negative_band + s.m} negatives; RSS {cur:.1f} GiB, "
        f"peak {peak:.1f} GiB"
    )
    print(f"{'rule':<22} {'search':<44} {'ms/batch':>9} {'exact/this':>10} {'recall':>7} {'positives alike':>15}")
    exact_ms = {}
    for rule, search_kind, ms, rec, same in sorted(rows, key=lambda row: row[0]):  # stable: exact first
        exact_ms.setdefault(rule, ms)
        print(f"{rule:<22} {search_kind:<44} {ms:9.1f} {exact_ms[rule] / ms:9.1f}x {rec:7.4f} {same:15.3f}")
    if n > args.exact_recipe_max:
        print(
            f"exact*: above --exact-recipe-max {args.exact_recipe_max:,}, the exact recipe without its (B, P, N) "
            "stripe check: the same negatives, and a lower bound of its time"
        )
    return rows


def main(args) -> None:
    """Run every size of ``args`` (``bench_step.py``'s parser)."""
    import faiss  # here: bench_step without --search needs no faiss

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    s = load_config(args.config).scl
    print(
        f"bench_step --search {time.strftime('%Y-%m-%d %H:%M %Z')}: torch {torch.__version__}, faiss "
        f"{faiss.__version__}, {args.threads} thread(s); {args.config}: {s.positive_rule}, k {s.k}, m {s.m}, "
        f"lambda_c {s.lambda_c}, debias {s.camera_debias}, part_agreement {s.part_agreement} of {PARTS} "
        f"among {s.part_agreement_k}"
    )
    for n in args.sizes:
        run_size(n, args, s)
