"""Each slot's nearest slots for the per-epoch graph, exact or through a faiss index.

Shape letters: N slots, D feature dim, P stripes, d = D / P, C cameras, k neighbours, W the widest
set of a row, E = 2D the embedding dim, E' = the indexed dim (after PCA).

The graph of :mod:`reidlib.neighbours.graph` (k-reciprocal sets, CA-Jaccard, camera groups) needs two
things of the slots, both on the banks as they are at the start of the epoch (frozen while the
graph is built):

- :meth:`SlotSearch.ranking`: each slot's k nearest slots, itself first, among all slots, within
  its camera, or across cameras (the contract of :func:`reidlib.neighbours.graph.slot_ranking`);
- :meth:`SlotSearch.pair_distances`: the distance from each slot to given slots (a set's members).

The part agreement check at large N asks the same of one stripe alone (``stripe``: the distance
``2 - 2 s_i . s_j`` of that stripe, no camera term, one index over every slot), for each slot's
per-epoch stripe lists (:func:`reidlib.methods.scl.tables.stripe_lists`).

**Backends** (config ``search.backend`` and ``search.graph_index``; :func:`make_slot_search`):

- ``exact``: the dense rows of :meth:`SelectionDistance.slot_rows`, ``block`` x N distances at a
  time. O(N^2 D) work an epoch; memory O(block N). Bit for bit today's graph.
- ``flat``, ``ivf``, ``ivf_sq8``, ``hnsw``: one faiss index per camera over the slots' feature
  embedding ``x = [sqrt(w_g) g, sqrt(w_p) p]`` (:func:`reidlib.neighbours.faiss_index.embed` without the
  camera columns; ``dist = 2 - 2 x_i . x_j`` + lambda_c on the same camera). ``flat`` is exact;
  ``ivf`` (k-means cells; ``ivf_sq8`` keeps each indexed dim in 8 bits, so a probed cell scans
  a quarter of the bytes: at a camera of 167,000 slots, 64 probes, 1.7x faster than ``ivf`` with
  the same recall of the exact 10 nearest after the re-ranking, 0.966) and ``hnsw`` (a
  navigable small-world graph, which suits banks frozen for the epoch: it cannot move a slot, and
  here none moves) search the PCA-reduced x
  (``graph_dim``) and return ``ceil(graph_rerank * (k + 1))`` candidates per camera, re-ranked
  exactly on the full x (a camera of fewer than ``exact_below`` slots, config
  ``search.graph_exact_below``, is searched exactly by every backend). A ranking asks the
  cameras it needs (its own, the others, or all, with lambda_c added on its own) and merges
  them: the camera term is exact, whatever the index.
  Memory O(N E) for x (embedded :data:`VECTOR_BLOCK` slots at a time), O(N E') for the index,
  O(N k) for a ranking; no N x N anything.

``tests/neighbours/test_slot_search.py`` checks every backend against the exact rankings;
``benchmarks/bench_graph.py`` measures the recipe's whole per-epoch graph against N.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from reidlib.config import GRAPH_INDEXES, SearchConfig
from reidlib.errors import ConfigError
from reidlib.neighbours import graph
from reidlib.neighbours.faiss_index import (
    KMEANS_ITER,
    KMEANS_POINTS_PER_CELL,
    PCA_SAMPLE,
    embed,
    inverted_file,
    pca_basis,
)
from reidlib.neighbours.selection_distance import SelectionDistance, scratch

# ``search.backend: auto`` builds the graph exactly below this many slots, through
# ``search.graph_index`` from there on. benchmarks/bench_graph.py (2026-12-04, one thread, two
# training runs sharing the machine; the recipe's camera groups): exact 29.9 s at 13,000 slots and
# 229 s at 32,621 (MSMT17's size), IVF 9.7 s and 23.9 s with the exact graph's positives recovered
# (recall 0.999 and 0.998); IVF 88 s and 3.3 GiB at 100,000. The defaults since 2026-12-05 (8-bit
# codes, 64 probes; 2 threads, a quiet machine): 7.7 s at 32,621 slots, all the exact positives.
AUTO_GRAPH_MIN_SLOTS = 20_000
BLOCK = 1024  # query slots per faiss search and per exact re-ranking block (b R E floats)
HNSW_M = 32  # links per node of an HNSW graph
VECTOR_BLOCK = 65_536  # slots embedded (and PCA-projected) at a time: no whole bank in float32 twice


@torch.no_grad()
def slot_vectors(distance: SelectionDistance, stripe: int | None = None) -> Tensor:
    """Every slot's vector for the indexes, on the CPU, a block of slots at a time: the feature
    embedding ``x = [sqrt(w_g) g, sqrt(w_p) p]`` (N, E), or with ``stripe`` that stripe alone (N, d),
    as the distance sees them (debiased). A block at a time, the debiasing's float32 copies stay
    one block's (a whole 1M x 512 bank would take three 2 GB copies per feature space)."""
    out = None
    for start in range(0, len(distance), VECTOR_BLOCK):
        g, p, _ = distance.slots(slice(start, start + VECTOR_BLOCK))  # (b, D), (b, P, d)
        x = embed(g, p, None, lambda_g=distance.lambda_g) if stripe is None else p[:, stripe]
        if out is None:
            out = torch.empty(len(distance), x.shape[1])
        out[start : start + len(x)] = x.cpu()
    return out


class SlotSearch:
    """The slots' nearest slots by the epoch's selection distance, the banks frozen.

    Args:
        distance: the epoch's :class:`SelectionDistance` (its weights, debiasing and cameras).
        index: ``exact``, ``flat``, ``ivf``, ``ivf_sq8`` or ``hnsw`` (module docstring).
        dim: ivf / ivf_sq8 / hnsw: PCA to this many dims (0 keeps all E).
        rerank: ivf / ivf_sq8 / hnsw: candidates per camera searched, as a multiple of k + 1.
        nprobe: ivf / ivf_sq8: cells visited per query; ef: hnsw: the search's beam width (at least the
            candidates asked for).
        exact_below: a camera of fewer slots is searched exactly (flat, full dims), whatever
            ``index``; 0 puts the index on every camera.
        stripe: search by this stripe alone, ``2 - 2 s_i . s_j`` on the stripes as the distance
            sees them, with no camera term (the part agreement's lists); None: the whole distance.
        seed: seeds the PCA sample and k-means, so a build is repeatable.
    """

    def __init__(
        self,
        distance: SelectionDistance,
        index: str = "exact",
        *,
        dim: int = SearchConfig.graph_dim,
        rerank: float = SearchConfig.graph_rerank,
        nprobe: int = SearchConfig.graph_nprobe,
        ef: int = SearchConfig.graph_ef,
        exact_below: int = SearchConfig.graph_exact_below,
        stripe: int | None = None,
        seed: int = 0,
    ) -> None:
        if index not in ("exact", *GRAPH_INDEXES):
            raise ConfigError(
                f"config key 'search.graph_index' must be one of {', '.join(GRAPH_INDEXES)}; got {index!r}"
            )
        self.index, self.rerank, self.nprobe, self.ef = index, rerank, nprobe, ef
        self._settings = {"dim": dim, "rerank": rerank, "nprobe": nprobe, "ef": ef, "exact_below": exact_below}
        self.camids, self.lambda_c = distance.camids, distance.lambda_c
        if stripe is not None:  # one stripe alone: no camera term, one index over every slot
            self.camids, self.lambda_c = torch.zeros_like(distance.camids), 0.0
        self._buffers: dict[str, Tensor] = {}
        self._kept: dict[str, tuple[Tensor, Tensor]] = {}  # "same" / "other" -> (N, k) nearest
        self.num_slots = len(distance)
        if index == "exact" and stripe is None:
            self._rows = distance.slot_rows()
            return
        self.x = slot_vectors(distance, stripe)  # (N, E) or (N, d)
        if index == "exact":  # one stripe's dense rows
            self._rows = lambda rows: (2.0 - 2.0 * self.x[rows] @ self.x.T).clamp_min(0.0)
            return
        self.reduced = self.x
        if index != "flat" and dim and dim < self.x.shape[1]:
            generator = torch.Generator().manual_seed(seed)
            sample = torch.randperm(self.num_slots, generator=generator)[:PCA_SAMPLE].sort().values
            mean, basis = pca_basis(self.x[sample], dim, generator)
            self.reduced = torch.empty(self.num_slots, dim)  # (N, E')
            for start in range(0, self.num_slots, VECTOR_BLOCK):
                self.reduced[start : start + VECTOR_BLOCK] = (self.x[start : start + VECTOR_BLOCK] - mean) @ basis
        cams = self.camids.cpu()
        self.members = [torch.nonzero(cams == c).squeeze(1) for c in range(int(cams.max()) + 1)]
        # a camera of fewer than exact_below slots is searched exactly, on the full x
        self.exact = [index == "flat" or len(rows) < exact_below for rows in self.members]
        self.indexes = [
            self._build((self.x if exact else self.reduced)[rows], exact, seed) if len(rows) else None
            for rows, exact in zip(self.members, self.exact)
        ]

    def _build(self, vectors: Tensor, exact: bool, seed: int):
        """A faiss index over one camera's vectors (n, E'), ids 0..n-1 in their order."""
        import faiss

        n, width = vectors.shape
        data = np.ascontiguousarray(vectors.numpy(), dtype=np.float32)
        if exact:
            found = faiss.IndexFlatIP(width)
        elif self.index == "hnsw":
            found = faiss.IndexHNSWFlat(width, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            found.hnsw.efConstruction = 40
        else:
            nlist = max(1, min(round(4 * math.sqrt(n)), n // KMEANS_POINTS_PER_CELL))
            found = inverted_file(width, nlist, inner_product=True, sq8=self.index == "ivf_sq8")
            found.cp.niter, found.cp.seed = KMEANS_ITER, seed
            rng = np.random.default_rng(seed)
            found.train(data[rng.permutation(n)[: KMEANS_POINTS_PER_CELL * nlist]])
            found.nprobe = min(self.nprobe, nlist)
        found.add(data)
        return found

    # -- rankings -------------------------------------------------------------------------------

    @torch.no_grad()
    def ranking(self, k: int, cameras: str = "all") -> tuple[Tensor, Tensor]:
        """Each slot's k nearest slots, the slot itself in column 0 (:func:`graph.slot_ranking`'s
        contract: ``cameras`` all / same / other; rows short of candidates padded with -1 at inf).

        Returns:
            ``(idx, dist)``, each (N, 1 + k).
        """
        if cameras not in ("all", "same", "other"):
            raise ConfigError(f"cameras must be all, same or other; got {cameras!r}")
        if self.index == "exact":
            return graph.slot_ranking(self._rows, self.num_slots, k, camids=self.camids, cameras=cameras)
        if cameras == "all":  # the nearest overall are among the nearest within and across cameras
            same, other = self._nearest("same", k), self._nearest("other", k)
            cand = torch.cat([same[0], other[0]], dim=1)
            values, order = torch.topk(torch.cat([same[1] + self.lambda_c, other[1]], dim=1), k, dim=1, largest=False)
            found = cand.gather(1, order).masked_fill(torch.isinf(values), -1), values
        else:  # within the camera every distance holds the camera term
            idx, dist = self._nearest(cameras, k)
            found = idx, dist + (self.lambda_c if cameras == "same" else 0.0)
        own = torch.arange(self.num_slots)[:, None]
        idx = torch.cat([own, found[0]], dim=1)
        dist = torch.cat([torch.zeros(self.num_slots, 1), found[1]], dim=1)
        device = self.camids.device
        return idx.to(device), dist.to(device)

    def _nearest(self, cameras: str, k: int) -> tuple[Tensor, Tensor]:
        """:meth:`nearest_to` for every slot, kept for the epoch: a later call with a k no larger
        reads the first k columns."""
        kept = self._kept.get(cameras)
        if kept is not None and kept[0].shape[1] >= k:
            return kept[0][:, :k], kept[1][:, :k]
        idx = torch.full((self.num_slots, k), -1, dtype=torch.int64)
        dist = torch.full((self.num_slots, k), float("inf"))
        for rows in self.members:
            idx[rows], dist[rows] = self.nearest_to(rows, cameras, k)
        self._kept[cameras] = idx, dist
        return idx, dist

    @torch.no_grad()
    def nearest_to(self, rows: Tensor, cameras: str, k: int) -> tuple[Tensor, Tensor]:
        """Slots ``rows`` (b,) -> their k nearest other slots through the indexes, within each
        one's camera (``same``) or across cameras (``other``), without the camera term: (b, k)
        indices (-1 padding) and exact distances (inf). Not for ``index`` exact (no indexes)."""
        if self.index == "exact":
            raise ConfigError("nearest_to searches the faiss indexes; the exact backend ranks dense rows")
        idx = torch.full((len(rows), k), -1, dtype=torch.int64)
        dist = torch.full((len(rows), k), float("inf"))
        cams = self.camids.cpu()[rows]
        for cam in cams.unique().tolist():
            targets = [cam] if cameras == "same" else [t for t in range(len(self.members)) if t != cam]
            for at in torch.nonzero(cams == cam).squeeze(1).split(BLOCK):
                block = rows[at]
                found = [self._search(block, t, k) for t in targets]
                cand = torch.cat([f[0] for f in found] + [torch.empty(len(block), 0, dtype=torch.int64)], dim=1)
                cdist = torch.cat([f[1] for f in found] + [torch.empty(len(block), 0)], dim=1)
                cdist = cdist.masked_fill(cand == block[:, None], float("inf"))  # not the slot itself
                take = min(k, cand.shape[1])
                values, order = torch.topk(cdist, take, dim=1, largest=False, sorted=True)
                idx[at, :take] = cand.gather(1, order).masked_fill(torch.isinf(values), -1)
                dist[at, :take] = values
        return idx, dist

    def _search(self, rows: Tensor, cam: int, k: int) -> tuple[Tensor, Tensor]:
        """Slots ``rows`` (b,) -> candidates among camera ``cam``'s slots (b, R) (-1 where the index
        found none) and their exact distances without the camera term (b, R) (inf for -1)."""
        members, found = self.members[cam], self.indexes[cam]
        if found is None:
            return torch.empty(len(rows), 0, dtype=torch.int64), torch.empty(len(rows), 0)
        exact = self.exact[cam]
        num = min(len(members), k + 1 if exact else math.ceil(self.rerank * (k + 1)))
        if self.index == "hnsw" and not exact:
            found.hnsw.efSearch = max(self.ef, num)
        queries = np.ascontiguousarray((self.x if exact else self.reduced)[rows].numpy(), dtype=np.float32)
        _, local = found.search(queries, num)
        local = torch.from_numpy(local)
        cand = torch.where(local >= 0, members[local.clamp_min(0)], torch.full_like(local, -1))
        dist = 2.0 - 2.0 * torch.einsum("be,bre->br", self.x[rows], self._rows_of(cand.clamp_min(0)))
        return cand, dist.clamp_min(0.0).masked_fill(cand < 0, float("inf"))

    def _rows_of(self, idx: Tensor) -> Tensor:
        """x's rows ``idx`` (b, R) -> (b, R, E), gathered into a reused buffer (a fresh one
        page-faults: 7x slower in this module's loops)."""
        out = scratch(self._buffers, "rows", (idx.numel(), self.x.shape[1]), self.x.dtype, self.x.device)
        return torch.index_select(self.x, 0, idx.reshape(-1), out=out).view(*idx.shape, -1)

    def over(self, distance: SelectionDistance, *, stripe: int | None = None, seed: int = 0) -> SlotSearch:
        """The same kind of search over another distance (e.g. between groups' means), or over
        one of its stripes alone (``stripe``, the part agreement's lists)."""
        return SlotSearch(distance, self.index, stripe=stripe, **self._settings, seed=seed)

    @torch.no_grad()
    def pair_distances(self, idx: Tensor) -> Tensor:
        """The distance from each slot to each of its slots ``idx`` (N, W) -> (N, W) float32
        (:func:`graph.set_distances`'s contract)."""
        if self.index == "exact":
            return graph.set_distances(self._rows, idx)
        out = torch.empty(idx.shape, dtype=torch.float32)
        cams, cpu_idx = self.camids.cpu(), idx.cpu()
        for block in torch.arange(self.num_slots).split(BLOCK):
            cols = cpu_idx[block]
            dot = torch.einsum("be,bwe->bw", self.x[block], self._rows_of(cols))
            same = cams[block][:, None] == cams[cols]
            out[block] = (2.0 - 2.0 * dot).clamp_min(0.0) + self.lambda_c * same
        return out.to(idx.device)


def make_slot_search(search_cfg: SearchConfig, distance: SelectionDistance, *, seed: int = 0) -> SlotSearch:
    """The graph's search that config section ``search`` asks for: ``backend`` torch is exact,
    faiss uses ``graph_index``, auto is exact below :data:`AUTO_GRAPH_MIN_SLOTS` slots (and on an
    accelerator, where the dense rows are cheap) and ``graph_index`` from there on."""
    c = search_cfg
    approximate = c.backend == "faiss" or (
        c.backend == "auto" and len(distance) >= AUTO_GRAPH_MIN_SLOTS and distance.device.type == "cpu"
    )
    if not approximate:
        return SlotSearch(distance, "exact")
    return SlotSearch(
        distance,
        c.graph_index,
        dim=c.graph_dim,
        rerank=c.graph_rerank,
        nprobe=c.graph_nprobe,
        ef=c.graph_ef,
        exact_below=c.graph_exact_below,
        seed=seed,
    )
