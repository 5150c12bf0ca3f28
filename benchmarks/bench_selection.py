"""Selection at scale: exact torch vs faiss flat, IVF (+PCA) and HNSW, side by side in one run.

    .venv/bin/python -m benchmarks.bench_selection [--sizes 100000 1000000] [--threads 1]

(The default run took 16 minutes on this project's 2-core machine, peak RSS 11.5 GiB.)

For each bank size N (D = 2048, P = 8, so stripes of 256; 6 cameras) the script builds float16
global and part banks, draws batches of B = 64 anchors and asks each method for the
k + m = 7 + 500 = 507 nearest slots (own slot left out). It reports per method: build time,
milliseconds per batch (median over the timed batches, after one warm-up batch), recall of the
exact top-507 *set* (|found ∩ exact| / 507, averaged over anchors), the bytes of the index, the
time to refresh one batch's 64 slots after a bank update, and the process RSS (current and peak).
The ratio column is exact-torch time / method time, measured in the same run on the same batches.

**Data model (ReID-like, not isotropic).** Random isotropic vectors have no neighbourhood
structure and make every approximate index look bad (or, at low dimension, good) for the wrong
reasons. Here:

- identities of 8-12 images each (N / 10 identities), each seen by 2-4 of the 6 cameras;
- a latent u (``--latent`` r dims, default 16) per image: identity centre z ~ N(0, I) + camera
  shift (N(0, 0.5^2 I) per camera, so same-camera images of different people look alike) + view
  variation N(0, 0.5^2 I);
- global feature g = normalise(u A + s e), A (r, D) Gaussian with variance 1/r, e ~ N(0, I_D),
  s = ``--noise`` (default 0.5): the share of the variance that comes from the latent is printed
  (0.85-0.86 for the defaults; ``--latent 32 --noise 1.0``, a harder model, gives 0.60);
- stripe s: p_s = normalise((u + 0.5 h_s) B_s + s e_s), B_s (r, D/P): every stripe sees the same
  identity through its own projection, plus its own part variation h_s ~ N(0, I): parts are
  correlated with the global feature but not copies of it;
- an anchor is a new view of its own slot's image: u + N(0, 0.2^2 I) through the same maps, with
  fresh noise (in training, the anchor is the model's current feature and its slot a running mean
  of earlier ones).

**Methods.** ``exact torch``: :class:`reidlib.neighbours.searchers.TorchSearcher` on the float16 banks (blocks of
16,384 slots converted to float32 at a time). ``faiss flat``: :class:`FaissSearcher` with
``faiss_index=flat`` (exact; needs N x 4,102 float32, so it is skipped when that would not fit
beside the banks). ``IVF``: ``faiss_index=ivf`` with PCA to ``faiss_dim`` dims (and without PCA where
N x 4,102 float32 fits), nlist = 4 sqrt(N) cells, several nprobe and rerank values (candidates
R = ceil(rerank * 508), re-ranked exactly from the float16 banks). ``HNSW`` (benchmark only, see
reidlib/neighbours/faiss_index.py): :class:`HNSWIndex` here, faiss IndexHNSWFlat (M = 32) over the same
PCA-reduced vectors, efSearch = R, candidates re-ranked by the same searcher; it cannot update
slots in place, so its refresh is a rebuild.

``ReidLikeData`` takes other dims (``dim``, ``parts``) and a ``device`` to build the banks on
(``benchmarks/gpu_check.py`` builds them on a GPU); faiss is imported only where an index is built,
so the data model needs no faiss.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmarks.memory_usage import rss_gib
from reidlib.config import SearchConfig
from reidlib.neighbours.faiss_index import FlatIndex, GpuFlatIndex, IVFIndex
from reidlib.neighbours.searchers import FaissSearcher, TorchSearcher
from reidlib.neighbours.selection_distance import SelectionDistance

D, P, C, B, K, M = 2048, 8, 6, 64, 7, 500
LAMBDA_G, LAMBDA_C = 0.5, 0.05
SIGMA_CAM, SIGMA_VIEW, SIGMA_PART, SIGMA_ANCHOR = 0.5, 0.5, 0.5, 0.2
MEMORY_BUDGET = 17 * 2**30  # keep the process under this (the machine's 24 GiB are shared)


class ReidLikeData:
    """The data model of the module docstring; features are made in blocks, never all in float32.

    Identities, cameras, latents and the projections are drawn on the CPU and kept on ``device``,
    where the features are drawn (with a generator of that device, so a GPU draws other numbers
    than the CPU) and the banks are built.
    """

    def __init__(
        self,
        num_slots: int,
        latent: int = 32,
        noise: float = 1.0,
        seed: int = 0,
        *,
        dim: int = D,
        parts: int = P,
        device: torch.device | str = "cpu",
    ):
        g = torch.Generator().manual_seed(seed)
        self.device = torch.device(device)
        self.gen = g if self.device.type == "cpu" else torch.Generator(self.device).manual_seed(seed)
        self.r, self.noise, self.dim, self.parts = latent, noise, dim, parts
        sizes = torch.randint(8, 13, (num_slots // 8 + 1,), generator=g)
        pids = torch.repeat_interleave(torch.arange(len(sizes)), sizes)[:num_slots]  # (N,)
        num_ids = int(pids[-1]) + 1
        cams_per_id = torch.rand(num_ids, C, generator=g).argsort(1)  # a random camera order per id
        n_cams = torch.randint(2, 5, (num_ids,), generator=g)  # each id seen by 2-4 cameras
        pick = (torch.rand(num_slots, generator=g) * n_cams[pids]).long()
        camids = cams_per_id[pids, pick]
        r = latent
        centres = torch.randn(num_ids, r, generator=g)
        cam_shift = SIGMA_CAM * torch.randn(C, r, generator=g)
        latents = centres[pids] + cam_shift[camids] + SIGMA_VIEW * torch.randn(num_slots, r, generator=g)
        self.pids, self.camids, self.latent = pids.to(device), camids.to(device), latents.to(device)
        self.a = (torch.randn(r, dim, generator=g) / math.sqrt(r)).to(device)
        self.b = (torch.randn(parts, r, dim // parts, generator=g) / math.sqrt(r)).to(device)

    def randn(self, *shape: int) -> Tensor:
        return torch.randn(*shape, generator=self.gen, device=self.device)

    def signal_share(self) -> float:
        """Share of the global feature's variance (before normalising) that comes from the latent."""
        signal = (self.latent[:10_000] @ self.a).pow(2).sum(1).mean().item()
        return signal / (signal + self.noise**2 * self.dim)

    def features(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """Latents (n, r) -> unit global (n, D) and unit stripes (n, P, D/P), float32."""
        n, parts, d = len(u), self.parts, self.dim // self.parts
        glob = F.normalize(u @ self.a + self.noise * self.randn(n, self.dim), dim=-1)
        part_u = u[:, None] + SIGMA_PART * self.randn(n, parts, self.r)  # (n, P, r)
        stripes = torch.einsum("npr,prd->npd", part_u, self.b) + self.noise * self.randn(n, parts, d)
        return glob, F.normalize(stripes, dim=-1)

    def banks(self, dtype=torch.float16, chunk=32_768) -> tuple[Tensor, Tensor]:
        """The global (N, D) and part (N, P, D/P) banks of every slot, in ``dtype`` on the device."""
        n = len(self.latent)
        glob = torch.empty(n, self.dim, dtype=dtype, device=self.device)
        parts = torch.empty(n, self.parts, self.dim // self.parts, dtype=dtype, device=self.device)
        for start in range(0, n, chunk):
            glob[start : start + chunk], parts[start : start + chunk] = self.features(
                self.latent[start : start + chunk]
            )
        return glob, parts

    def anchors(self, self_idx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """New views of the slots ``self_idx`` (B,): their global (B, D), stripes (B, P, D/P), cameras (B,)."""
        self_idx = self_idx.to(self.device)
        u = self.latent[self_idx] + SIGMA_ANCHOR * self.randn(len(self_idx), self.r)
        glob, parts = self.features(u)
        return glob, parts, self.camids[self_idx]


def timed(fn, batches):
    """Run fn on every batch; time all but the first (warm-up). Returns (median seconds, outputs)."""
    outs, times = [], []
    for i, batch in enumerate(batches):
        t0 = time.perf_counter()
        outs.append(fn(*batch))
        if i:
            times.append(time.perf_counter() - t0)
    return statistics.median(times), outs


def recall(found: list[torch.Tensor], exact: list[torch.Tensor]) -> float:
    """Mean over anchors of |found ∩ exact| / count, comparing index sets."""
    hits = []
    for f, e in zip(found, exact):
        same = (f[:, :, None] == e[:, None, :]).any(2)  # (B, count) is f[b, i] in e[b]?
        hits.append(same.float().mean(1))
    return torch.cat(hits).mean().item()


def refresh_ms(searcher, num_slots: int, gen: torch.Generator, repeats: int = 5) -> float:
    """Median time to refresh one batch's slots (the banks are not changed: the cost is the same)."""
    times = []
    for _ in range(repeats):
        idx = torch.randperm(num_slots, generator=gen)[:B]
        t0 = time.perf_counter()
        searcher.refresh(idx)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def index_nbytes(index) -> int:
    """Bytes held by a reidlib.neighbours.faiss_index index (vectors or codes, ids, centroids, PCA), not the banks."""
    if isinstance(index, GpuFlatIndex):
        return index.slots.numel() * index.slots.element_size()
    if isinstance(index, FlatIndex):
        return index.flat.ntotal * index.flat.d * 4
    assert isinstance(index, IVFIndex)
    ivf = index.ivf
    codes = ivf.ntotal * (ivf.invlists.code_size + 8)  # codes + ids
    direct_map = ivf.ntotal * 8
    projection = 0 if index.basis is None else (index.basis.numel() + index.mean.numel()) * 4
    return codes + direct_map + ivf.nlist * ivf.d * 4 + projection


class HNSWIndex:
    """faiss IndexHNSWFlat (M = 32) over an IVF index's (PCA) vectors, for comparison only: a graph
    cannot move a slot, so there is no ``update``."""

    approximate = True

    def __init__(self, ivf: IVFIndex, embed_slots, num_slots: int, ef: int):
        import faiss

        self.vectors = ivf.vectors
        self.hnsw = faiss.IndexHNSWFlat(ivf.ivf.d, 32)
        self.hnsw.hnsw.efConstruction = 40
        for rows in torch.arange(num_slots).split(65_536):  # faiss orders each added block by level
            self.hnsw.add(self.vectors(embed_slots(rows)))
        self.hnsw.hnsw.efSearch = ef

    def search(self, q: torch.Tensor, num: int) -> torch.Tensor:
        _, cand = self.hnsw.search(self.vectors(q), num)
        return torch.from_numpy(cand)


def hnsw_over(ivf: FaissSearcher, num_slots: int, ef: int) -> tuple[FaissSearcher, float]:
    """The IVF searcher with an HNSW index over its (PCA) vectors: searched and re-ranked by its code."""
    t0 = time.perf_counter()
    searcher = copy.copy(ivf)
    searcher.index = HNSWIndex(ivf.index, ivf._embed_slots, num_slots, ef)
    return searcher, time.perf_counter() - t0


def bank_bytes(n: int) -> str:
    per = n * D  # global, part and mixture banks each hold N x D numbers
    return (
        f"banks (global (N, D), part (N, P, D/P), mixture (N, D)), N = {n:,}: "
        f"float32 {3 * per * 4 / 2**30:.2f} GiB ({per * 4 / 2**30:.2f} each), "
        f"float16 {3 * per * 2 / 2**30:.2f} GiB ({per * 2 / 2**30:.2f} each)"
    )


def run_size(n: int, args) -> None:
    print(f"\n=== N = {n:,} slots, D = {D}, P = {P}, B = {B}, k + m = {K + M}, {args.threads} thread(s) ===")
    print(bank_bytes(n))
    t0 = time.perf_counter()
    data = ReidLikeData(n, latent=args.latent, noise=args.noise, seed=args.seed)
    glob, parts = data.banks()
    print(
        f"data: {int(data.pids[-1]) + 1:,} identities, {C} cameras, latent r = {args.latent}, noise "
        f"{args.noise}: {100 * data.signal_share():.0f}% of the variance from the latent; banks generated in "
        f"{time.perf_counter() - t0:.0f} s; held here: global + part float16 "
        f"{(glob.nbytes + parts.nbytes) / 2**30:.2f} GiB (the mixture bank is not read by selection "
        f"and not allocated); RSS {rss_gib()[0]:.1f} GiB"
    )
    cams = data.camids
    gen = torch.Generator().manual_seed(args.seed + 1)
    batches = []
    for _ in range(args.batches + 1):
        self_idx = torch.randperm(n, generator=gen)[:B]
        batches.append((*data.anchors(self_idx), self_idx, K + M))
    full_dim = 2 * D + C
    rows = []  # (method, params, build s, seconds per batch, recall, index bytes, refresh ms)

    distance = SelectionDistance(glob, parts, cams, lambda_g=LAMBDA_G, lambda_c=LAMBDA_C)
    exact = TorchSearcher(distance)
    t_exact, exact_out = timed(exact.neighbours, batches)
    rows.append(("exact torch", "float16 banks, blocks of 16,384", 0.0, t_exact, 1.0, 0, 0.0))

    fits_full = n * full_dim * 4 + 2 * (glob.nbytes + parts.nbytes) < MEMORY_BUDGET
    if fits_full:
        t0 = time.perf_counter()
        flat = FaissSearcher(distance, SearchConfig(faiss_index="flat"))
        build = time.perf_counter() - t0
        t, out = timed(flat.neighbours, batches)
        rows.append(
            (
                "faiss flat",
                f"IP, {full_dim} dims float32",
                build,
                t,
                recall(out, exact_out),
                index_nbytes(flat.index),
                refresh_ms(flat, n, gen),
            )
        )
        del flat
    else:
        print(
            f"faiss flat: skipped, N x {full_dim} float32 = {n * full_dim * 4 / 2**30:.1f} GiB does not fit "
            f"beside the banks under the {MEMORY_BUDGET / 2**30:.0f} GiB budget"
        )

    nlist = round(4 * math.sqrt(n))
    dims = [args.faiss_dim] + ([0] if fits_full and args.full_dim_ivf else [])
    for dim in dims:
        t0 = time.perf_counter()
        ivf = FaissSearcher(
            distance,
            SearchConfig(faiss_index="ivf", faiss_dim=dim, nlist=nlist, nprobe=args.nprobe[0], rerank=args.rerank[0]),
            seed=args.seed,
        )
        build = time.perf_counter() - t0
        ref_ms = refresh_ms(ivf, n, gen)
        what = f"PCA {dim}" if dim else f"full {full_dim} dims"
        for nprobe in args.nprobe:
            for rerank in args.rerank:
                ivf.index.ivf.nprobe, ivf.rerank, ivf.fallbacks = nprobe, rerank, 0
                t, out = timed(ivf.neighbours, batches)
                rows.append(
                    (
                        f"IVF{nlist}",
                        f"{what}, nprobe {nprobe}, R {math.ceil(rerank * (K + M + 1))}",
                        build,
                        t,
                        recall(out, exact_out),
                        index_nbytes(ivf.index),
                        ref_ms,
                    )
                )
                print(
                    f"  {rows[-1][0]} {rows[-1][1]}: {1e3 * t:.1f} ms, recall {rows[-1][4]:.4f}, "
                    f"{ivf.fallbacks} of {B * len(batches)} anchors fell back to exact search",
                    flush=True,
                )
        if dim and n <= args.hnsw_max:
            hnsw, build_h = hnsw_over(ivf, n, math.ceil(args.rerank[0] * (K + M + 1)))
            for rerank in args.rerank:
                num = math.ceil(rerank * (K + M + 1))
                hnsw.rerank, hnsw.index.hnsw.hnsw.efSearch = rerank, num
                t, out = timed(hnsw.neighbours, batches)
                links = hnsw.index.hnsw.hnsw.neighbors.size() * 4
                rows.append(
                    (
                        "HNSW32",
                        f"{what}, efSearch {num}, R {num}",
                        build + build_h,
                        t,
                        recall(out, exact_out),
                        n * hnsw.index.hnsw.d * 4 + links,
                        float("nan"),
                    )
                )
                print(f"  HNSW R {num}: {1e3 * t:.1f} ms, recall {rows[-1][4]:.4f}", flush=True)
            del hnsw
        elif dim:
            print(f"HNSW: not built at N = {n:,} (--hnsw-max {args.hnsw_max:,})")
        del ivf

    cur, peak = rss_gib()
    print(
        f"\nN = {n:,}: time per batch of {B} anchors for the top {K + M}, median of {args.batches} batches "
        f"after one warm-up; recall of the exact top-{K + M} set; RSS now {cur:.1f} GiB, peak {peak:.1f} GiB"
    )
    print(
        f"{'method':<12} {'settings':<40} {'build s':>8} {'ms/batch':>9} {'exact/this':>10} {'recall':>7} "
        f"{'index GiB':>9} {'refresh ms':>10} {'goal':>5}"
    )
    for name, settings, build, t, rec, nbytes, ref in rows:
        goal = "yes" if (1e3 * t <= 100 and rec >= 0.95) else "no"
        print(
            f"{name:<12} {settings:<40} {build:8.1f} {1e3 * t:9.1f} {t_exact / t:9.1f}x {rec:7.4f} "
            f"{nbytes / 2**30:9.3f} {ref:10.1f} {goal:>5}"
        )
    print(
        "(goal: <= 100 ms a batch at recall >= 0.95; refresh: write one batch's 64 slots back after a bank "
        "update, HNSW cannot, nan; index GiB excludes the banks)"
    )
    good = [r for r in rows[1:] if r[4] >= 0.95]
    if good:
        name, settings, _, t, rec, _, _ = min(good, key=lambda r: r[3])
        print(
            f"fastest at recall >= 0.95: {name} {settings}: {1e3 * t:.0f} ms a batch, recall {rec:.4f}, "
            f"{t_exact / t:.1f}x faster than exact torch ({1e3 * t_exact:.0f} ms)"
        )


def main() -> None:
    import faiss

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--threads", type=int, default=1, help="torch and faiss threads (the machine is shared)")
    parser.add_argument("--batches", type=int, default=5, help="timed batches per method (after one warm-up)")
    parser.add_argument("--faiss-dim", type=int, default=256, help="PCA dims of the IVF / HNSW vectors")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--rerank", type=float, nargs="+", default=[1.0, 1.5, 2.0])
    parser.add_argument("--full-dim-ivf", action="store_true", help="also IVF without PCA where it fits")
    parser.add_argument("--hnsw-max", type=int, default=200_000, help="build HNSW only up to this N")
    parser.add_argument("--latent", type=int, default=16, help="latent dims r of the data model")
    parser.add_argument("--noise", type=float, default=0.5, help="isotropic noise per dim of the data model")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    print(
        f"bench_selection {time.strftime('%Y-%m-%d %H:%M %Z')}: torch {torch.__version__}, faiss "
        f"{faiss.__version__}, {args.threads} thread(s); data model: see the script's docstring "
        f"(identities of 8-12 images over 2-4 of {C} cameras, latent r = {args.latent}, noise {args.noise})"
    )
    for n in args.sizes:
        run_size(n, args)


if __name__ == "__main__":
    main()
