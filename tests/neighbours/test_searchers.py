"""Neighbour search: the embedding's algebra, each faiss index == exact search, faiss flat == torch
exact, IVF after updates, config errors. faiss is optional: without it the exact path's tests run
and the others are skipped."""

import pytest
import torch
import torch.nn.functional as F

from reidlib.config import SearchConfig, load_config
from reidlib.distances import candidate_distance, combined_distance
from reidlib.errors import ConfigError
from reidlib.methods.memory import MemoryBank
from reidlib.methods.scl.selection import select_neighbours, selection_from_order
from reidlib.neighbours.faiss_index import FlatIndex, GpuFlatIndex, IVFIndex, embed, faiss_gpu_available
from reidlib.neighbours.searchers import FaissSearcher, TorchSearcher, choose_backend, make_searcher
from reidlib.neighbours.selection_distance import SelectionDistance

try:
    import faiss
except ImportError:  # a bare CUDA image: the device tests of the exact path still run
    faiss = None
needs_faiss = pytest.mark.skipif(faiss is None, reason="faiss is not installed")

if faiss is not None:
    faiss.omp_set_num_threads(1)
torch.set_num_threads(1)
N, D, P, C, B = 600, 32, 4, 3, 10
LG, LC = 0.5, 0.05


def selection_distance(glob, parts, cams, **kw):
    return SelectionDistance(glob, parts, cams, lambda_g=LG, lambda_c=LC, **kw)


def exact_searcher(glob, parts, cams, **kw):
    return TorchSearcher(selection_distance(glob, parts, cams, **kw))


def faiss_searcher(glob, parts, cams, *, gpu=None, **search):
    """A FaissSearcher over the test's distance; ``search`` fields of SearchConfig (no PCA unless asked)."""
    return FaissSearcher(selection_distance(glob, parts, cams), SearchConfig(**{"faiss_dim": 0, **search}), gpu=gpu)


def unit_data(n, seed):
    g = torch.Generator().manual_seed(seed)
    glob = F.normalize(torch.randn(n, D, generator=g), dim=-1)
    parts = F.normalize(torch.randn(n, P, D // P, generator=g), dim=-1)
    cams = torch.randint(0, C, (n,), generator=g)
    return glob, parts, cams


def banks(seed=0, device="cpu"):
    glob, parts, cams = unit_data(N, seed)
    return glob.to(device), parts.to(device), cams.to(device)


def anchors(glob, parts, cams, seed=1, count=40, gap=2e-5):
    """B anchors near their own slots (as in training), kept only if free of near-ties.

    An anchor is kept if its count + 1 nearest distances (own slot left out) differ pairwise by more
    than ``gap``, far above float32 rounding (~1e-6 here), so every exact path must agree on the
    order.
    """
    g = torch.Generator().manual_seed(seed)
    pool = 4 * B
    self_idx = torch.randperm(N, generator=g).to(glob.device)[:pool]
    qg = F.normalize(glob[self_idx] + 0.3 * torch.randn(pool, D, generator=g).to(glob.device), dim=-1)
    qp = F.normalize(parts[self_idx] + 0.3 * torch.randn(pool, P, D // P, generator=g).to(glob.device), dim=-1)
    qc = cams[self_idx]
    dist = combined_distance(qg, qp, glob, parts, lambda_g=LG, lambda_c=LC, q_camids=qc, g_camids=cams)
    top = dist.scatter(1, self_idx[:, None], float("inf")).topk(count + 1, largest=False).values
    keep = torch.nonzero((top[:, 1:] - top[:, :-1]).min(1).values > gap).flatten()[:B]
    assert len(keep) == B, "too few well-separated anchors; change the seed"
    return qg[keep], qp[keep], qc[keep], self_idx[keep]


def naive_order(qg, qp, qc, glob, parts, cams, self_idx, count):
    """The oracle: the selection distance written per pair as in METHOD.md, sorted in Python."""
    out = []
    for i in range(len(qg)):
        dist = {}
        for j in range(len(glob)):
            if j == self_idx[i]:
                continue
            d_g = ((qg[i] - glob[j]) ** 2).sum().item()
            d_p = sum(((qp[i, s] - parts[j, s]) ** 2).sum().item() for s in range(P)) / P
            dist[j] = LG * d_g + (1 - LG) * d_p + LC * float(qc[i] == cams[j])
        out.append(sorted(dist, key=dist.get)[:count])
    return torch.tensor(out)


@pytest.fixture
def knn_gpu_stand_in(monkeypatch):
    """faiss's CPU brute-force ``faiss.knn`` in place of ``knn_gpu`` (and dummy GPU resources).

    This machine has no GPU and faiss-cpu has no GPU resources: what the GPU flat path's tests
    check is our side of the call, not faiss's CUDA kernels. Returns the metrics it was called with.
    """
    import faiss.contrib.torch_utils  # noqa: F401  (imported first: it replaces faiss.knn_gpu)

    calls = []

    def knn_gpu(res, xq, xb, k, metric, device):
        assert isinstance(xq, torch.Tensor) and isinstance(xb, torch.Tensor) and xq.dtype == torch.float32
        calls.append(metric)
        dist, idx = faiss.knn(xq.numpy(), xb.numpy(), k, metric)
        return torch.from_numpy(dist), torch.from_numpy(idx)

    monkeypatch.setattr(faiss, "StandardGpuResources", lambda: object(), raising=False)
    monkeypatch.setattr(faiss, "knn_gpu", knn_gpu)
    return calls


def build(kind, embed_slots):
    """One index of each kind, built so that it searches exhaustively (IVF: every cell, no PCA)."""
    dim = 2 * D + C
    if kind == "flat":
        return FlatIndex(embed_slots, N, dim)
    if kind == "gpu_flat":
        return GpuFlatIndex(embed_slots, N, dim, torch.device("cpu"))
    return IVFIndex(embed_slots, N, dim, nlist=8, nprobe=8)


@needs_faiss
@pytest.mark.parametrize("kind", ["flat", "gpu_flat", "ivf"])
def test_each_index_equals_exact_search_before_and_after_update(kind, knn_gpu_stand_in):
    """An index's raw candidates (own slot dropped) == the exact order, on the banks as built and
    after some slots are rewritten with ``update``."""
    glob, parts, cams = banks()

    def embed_slots(rows):
        return embed(glob[rows], parts[rows], cams[rows], lambda_g=LG, lambda_c=LC, num_cams=C, query=False)

    index = build(kind, embed_slots)
    assert index.approximate == (kind == "ivf")
    for step in range(2):
        if step:  # rewrite a batch's slots (in the banks the closure reads) and update the index
            rows = torch.randperm(N, generator=torch.Generator().manual_seed(9))[:80].sort().values
            glob[rows], parts[rows] = unit_data(80, 11)[:2]
            index.update(rows, embed_slots(rows))
        qg, qp, qc, self_idx = anchors(glob, parts, cams, seed=2 + step)
        exact = exact_searcher(glob, parts, cams).neighbours(qg, qp, qc, self_idx, 40)
        raw = index.search(embed(qg, qp, qc, lambda_g=LG, lambda_c=LC, num_cams=C, query=True), 41)
        assert raw.shape == (B, 41) and raw.dtype == torch.int64
        assert torch.equal(raw[raw != self_idx[:, None]].view(B, -1)[:, :40], exact)
    assert knn_gpu_stand_in == ([faiss.METRIC_INNER_PRODUCT] * 2 if kind == "gpu_flat" else [])


def test_embedding_reproduces_combined_distance(device):
    glob, parts, cams = banks(device=device)
    qg, qp, qc, _ = anchors(glob, parts, cams)
    ref = combined_distance(qg, qp, glob, parts, lambda_g=LG, lambda_c=LC, q_camids=qc, g_camids=cams)
    q = embed(qg, qp, qc, lambda_g=LG, lambda_c=LC, num_cams=C, query=True)  # (B, E)
    x = embed(glob, parts, cams, lambda_g=LG, lambda_c=LC, num_cams=C, query=False)  # (N, E)
    assert q.shape == (B, 2 * D + C)
    torch.testing.assert_close(2 - 2 * q @ x.T, ref, atol=1e-5, rtol=0)
    # equal norms: L2 in the embedding is the selection distance plus lambda_c
    assert torch.allclose(q.norm(dim=1) ** 2, torch.full((B,), 1 + LC / 2, device=device), atol=1e-5)
    assert torch.allclose(x.norm(dim=1) ** 2, torch.full((N,), 1 + LC / 2, device=device), atol=1e-5)
    torch.testing.assert_close(torch.cdist(q, x) ** 2, ref + LC, atol=1e-4, rtol=0)


def test_candidate_distance_matches_combined():
    glob, parts, cams = banks()
    qg, qp, qc, _ = anchors(glob, parts, cams)
    cand = torch.randint(0, N, (B, 7))
    got = candidate_distance(
        qg, qp, glob[cand], parts[cand].flatten(2), lambda_g=LG, lambda_c=LC, q_camids=qc, c_camids=cams[cand]
    )
    full = combined_distance(qg, qp, glob, parts, lambda_g=LG, lambda_c=LC, q_camids=qc, g_camids=cams)
    torch.testing.assert_close(got, full.gather(1, cand), atol=1e-5, rtol=0)


def test_torch_searcher_matches_naive_oracle_and_select_neighbours(device):
    glob, parts, cams = banks(device=device)
    qg, qp, qc, self_idx = anchors(glob, parts, cams)
    searcher = exact_searcher(glob.half(), parts.half(), cams, chunk=97)
    order = searcher.neighbours(qg, qp, qc, self_idx, 12)
    assert order.device.type == device.type
    glob, parts, cams, qg, qp, qc, self_idx, order = (x.cpu() for x in (glob, parts, cams, qg, qp, qc, self_idx, order))
    glob16, parts16 = glob.half().float(), parts.half().float()  # what a float16 bank holds
    assert torch.equal(order, naive_order(qg, qp, qc, glob16, parts16, cams, self_idx, 12))
    dist = combined_distance(qg, qp, glob16, parts16, lambda_g=LG, lambda_c=LC, q_camids=qc, g_camids=cams)
    ref = select_neighbours(dist, self_idx, 3, 9)
    sel = selection_from_order(order, self_idx, 3)
    assert torch.equal(sel.pos_idx, ref.pos_idx) and torch.equal(sel.neg_idx, ref.neg_idx)


@needs_faiss
def test_faiss_flat_equals_torch_path():
    glob, parts, cams = banks()
    qg, qp, qc, self_idx = anchors(glob, parts, cams)
    exact = exact_searcher(glob, parts, cams).neighbours(qg, qp, qc, self_idx, 40)
    flat = faiss_searcher(glob, parts, cams, faiss_index="flat")
    assert torch.equal(flat.neighbours(qg, qp, qc, self_idx, 40), exact)
    # the raw index (before re-ranking) already gives the same order, own slot included
    raw = flat.candidates(qg, qp, qc, 41)
    raw_wo_self = raw[raw != self_idx[:, None]].view(B, -1)[:, :40]
    assert torch.equal(raw_wo_self, exact)


@needs_faiss
def test_refresh_follows_bank_updates_flat_and_ivf_all_cells():
    glob, parts, cams = banks()
    g_bank, p_bank = MemoryBank(N, (D,)), MemoryBank(N, (P, D // P))
    g_bank.fill(glob)
    p_bank.fill(parts)
    flat = faiss_searcher(g_bank, p_bank, cams, faiss_index="flat")
    ivf = faiss_searcher(g_bank, p_bank, cams, faiss_index="ivf", nlist=8, nprobe=8, rerank=1.0)
    gen = torch.Generator().manual_seed(5)
    moved = []
    for step in range(3):  # three training steps: rewrite a batch's slots, refresh
        idx = torch.randperm(N, generator=gen)[:50]
        moved.append(idx)
        new_g, new_p, _ = unit_data(50, 100 + step)
        g_bank.update(idx, new_g)
        p_bank.update(idx, new_p)
        flat.refresh(idx)
        ivf.refresh(idx)
    glob, parts = g_bank.features, p_bank.features
    qg, qp, qc, self_idx = anchors(glob, parts, cams, seed=7)
    assert torch.isin(self_idx, torch.cat(moved)).any()  # some anchors' own slots moved
    expected = naive_order(qg, qp, qc, glob, parts, cams, self_idx, 30)
    assert torch.equal(flat.neighbours(qg, qp, qc, self_idx, 30), expected)
    assert torch.equal(ivf.neighbours(qg, qp, qc, self_idx, 30), expected)
    assert torch.equal(ivf.rows, ivf.distance.slot_features(torch.arange(N)))  # the re-ranking's rows followed too
    # without refresh the index would be stale: an IVF built on the old banks sees old slots
    stale = faiss_searcher(*banks()[:2], cams, faiss_index="ivf", nlist=8, nprobe=8)
    stale.distance.global_bank, stale.distance.part_bank = glob, parts  # banks changed, index not refreshed
    assert not torch.equal(stale.candidates(qg, qp, qc, 31), flat.candidates(qg, qp, qc, 31))


@needs_faiss
def test_ivf_with_pca_and_few_probes_is_exact_within_candidates():
    """PCA + 1 probe is approximate, but whatever it returns is sorted by the exact distance."""
    glob, parts, cams = banks()
    qg, qp, qc, self_idx = anchors(glob, parts, cams)
    ivf = faiss_searcher(glob, parts, cams, faiss_index="ivf", faiss_dim=16, nlist=4, nprobe=1)
    order = ivf.neighbours(qg, qp, qc, self_idx, 20)
    assert order.shape == (B, 20) and not (order == self_idx[:, None]).any()
    dist = combined_distance(qg, qp, glob, parts, lambda_g=LG, lambda_c=LC, q_camids=qc, g_camids=cams)
    got = dist.gather(1, order)
    assert (got[:, 1:] >= got[:, :-1]).all()
    assert all(len(set(row.tolist())) == 20 for row in order)


@needs_faiss
def test_ivf_sq8_finds_the_exact_neighbours_through_enough_candidates_and_follows_updates():
    """8-bit codes order the candidates approximately; visiting every cell and re-ranking twice as
    many as asked, the exact order comes back, before and after slots move (refresh)."""
    glob, parts, cams = banks()
    g_bank, p_bank = MemoryBank(N, (D,)), MemoryBank(N, (P, D // P))
    g_bank.fill(glob)
    p_bank.fill(parts)
    sq8 = faiss_searcher(g_bank, p_bank, cams, faiss_index="ivf_sq8", nlist=8, nprobe=8, rerank=2.0)
    assert sq8.index.ivf.code_size == 2 * D + C  # one byte a dimension (no PCA here)
    for step in range(2):
        if step:
            idx = torch.randperm(N, generator=torch.Generator().manual_seed(4))[:60]
            new_g, new_p, _ = unit_data(60, 40)
            g_bank.update(idx, new_g)
            p_bank.update(idx, new_p)
            sq8.refresh(idx)
        qg, qp, qc, self_idx = anchors(g_bank.features, p_bank.features, cams, seed=3 + step)
        expected = naive_order(qg, qp, qc, g_bank.features, p_bank.features, cams, self_idx, 30)
        assert torch.equal(sq8.neighbours(qg, qp, qc, self_idx, 30), expected)


@needs_faiss
def test_sparse_cells_fall_back_to_exact():
    glob, parts, cams = banks()
    qg, qp, qc, self_idx = anchors(glob, parts, cams)
    ivf = faiss_searcher(glob, parts, cams, faiss_index="ivf", nlist=64, nprobe=1)
    exact = exact_searcher(glob, parts, cams).neighbours(qg, qp, qc, self_idx, 200)
    assert torch.equal(ivf.neighbours(qg, qp, qc, self_idx, 200), exact)  # one cell holds ~10, not 200


@needs_faiss
@pytest.mark.parametrize("debias", ["none", "mean", "mean_std"])
@pytest.mark.parametrize("nlist, rerank", [(4, 2.0), (64, 1.0)])  # (64, 1): sparse cells, some anchors fall back
def test_the_searched_pool_carries_its_stripe_distances(debias, nlist, rerank):
    """The re-ranked candidates and their stripe distances (the stripe check's pool): the order is
    :meth:`neighbours`', each pool entry's distances are :meth:`stripe_distances_to`'s, the anchor's
    own slot and padding are inf, and an anchor that fell back holds its exact neighbours."""
    glob, parts, cams = banks()
    qg, qp, qc, self_idx = anchors(glob, parts, cams)
    distance = selection_distance(glob, parts, cams, debias=debias)
    ivf = FaissSearcher(distance, SearchConfig(faiss_dim=0, faiss_index="ivf", nlist=nlist, nprobe=1, rerank=rerank))
    count = 30
    order, pool, pool_dist = ivf.neighbours_with_stripes(qg, qp, qc, self_idx, count)
    assert torch.equal(order, ivf.neighbours(qg, qp, qc, self_idx, count))
    assert pool_dist.shape == (B, P, pool.shape[1]) and pool.shape[1] >= count
    whole = distance.stripe_distances(qp, qc).gather(2, pool[:, None, :].expand(-1, P, -1))  # (B, P, R)
    known = torch.isfinite(pool_dist)
    torch.testing.assert_close(pool_dist[known], whole[known])
    assert not known.transpose(1, 2)[pool == self_idx[:, None]].any()
    found = (order[:, :, None] == torch.where(known.all(1), pool, -1)[:, None, :]).any(-1)
    assert found.all()  # every neighbour is in the pool, with its distances
    if nlist == 64:
        assert ivf.fallbacks > 0


def searcher_for(overrides, glob, parts, cams):
    """make_searcher as the training step calls it, for a config with ``overrides``."""
    cfg = load_config(overrides=overrides)
    s = cfg.scl
    distance = SelectionDistance(glob, parts, cams, lambda_g=s.lambda_g, lambda_c=s.lambda_c)
    return make_searcher(cfg.search, distance, m=s.m)


@needs_faiss
def test_make_searcher_and_auto():
    glob, parts, cams = banks()
    flat = searcher_for({"backend": "faiss", "faiss_index": "flat"}, glob, parts, cams)
    assert isinstance(flat, FaissSearcher) and isinstance(flat.index, FlatIndex)
    assert (flat.distance.lambda_g, flat.distance.lambda_c) == (0.5, 0.05)  # from scl
    ivf = searcher_for({"backend": "faiss", "faiss_dim": 16}, glob, parts, cams)
    assert isinstance(ivf.index, IVFIndex) and ivf.index.basis.shape == (2 * D + C, 16)
    assert ivf.index.ivf.nlist == round(4 * N**0.5) and ivf.index.ivf.nprobe == ivf.index.ivf.nlist  # capped
    # all negatives: exact
    assert isinstance(searcher_for({"backend": "faiss", "m": None}, glob, parts, cams), TorchSearcher)
    assert isinstance(searcher_for({}, glob, parts, cams), TorchSearcher)  # auto, small N
    assert choose_backend("auto", 500, 10**7, torch.device("cpu")) == "faiss"
    assert choose_backend("auto", 500, 10**7, torch.device("meta")) == "torch"
    assert choose_backend("auto", None, 10**7, torch.device("cpu")) == "torch"


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"backend": "gpu"}, "search.backend"),
        ({"search": "gpu"}, "search.backend"),  # the old short name
        ({"faiss_index": "hnsw"}, "search.faiss_index"),
        ({"faiss_dim": -1}, "search.faiss_dim"),
        ({"nlist": -4}, "search.nlist"),
        ({"nprobe": 0}, "search.nprobe"),
        ({"nlist": 8, "nprobe": 9}, "search.nprobe"),
        ({"rerank": 0.5}, "search.rerank"),
        ({"nprobe": "many"}, "search.nprobe"),
        ({"bank_dtype": "bfloat16"}, "scl.bank_dtype"),
    ],
)
def test_invalid_config_names_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(overrides=overrides)


@needs_faiss
def test_invalid_build_values_name_the_key():
    glob, parts, cams = banks()
    with pytest.raises(ConfigError, match=r"search\.nlist"):
        faiss_searcher(glob, parts, cams, faiss_index="ivf", nlist=N + 1)
    with pytest.raises(ConfigError, match=r"search\.nprobe"):
        faiss_searcher(glob, parts, cams, faiss_index="ivf", nlist=4, nprobe=5)
    with pytest.raises(ConfigError, match=r"search\.faiss_dim"):
        faiss_searcher(glob, parts, cams, faiss_index="ivf", faiss_dim=2 * D + C)
    with pytest.raises(ConfigError, match=r"search\.faiss_index"):
        faiss_searcher(glob, parts, cams, faiss_index="hnsw")
    with pytest.raises(ConfigError, match=r"search\.backend"):
        choose_backend("gpu", 500, N, torch.device("cpu"))
    with pytest.raises(ConfigError, match=r"search\.nlist"):
        searcher_for({"backend": "faiss", "nlist": 10_000}, glob, parts, cams)


@needs_faiss
def test_float16_banks_flat_and_ivf_agree_with_exact(device):
    """float16 banks go through the staging buffer of the re-ranking; the order stays exact. On
    CUDA the flat index searches on the GPU when the faiss build has one; IVF stays on the CPU."""
    glob, parts, cams = banks(device=device)
    glob16, parts16 = glob.half(), parts.half()
    qg, qp, qc, self_idx = anchors(glob16.float(), parts16.float(), cams)
    exact = exact_searcher(glob16, parts16, cams).neighbours(qg, qp, qc, self_idx, 40)
    flat = faiss_searcher(glob16, parts16, cams, faiss_index="flat")
    ivf = faiss_searcher(glob16, parts16, cams, faiss_index="ivf", nlist=8, nprobe=8, rerank=1.0)
    assert torch.equal(flat.neighbours(qg, qp, qc, self_idx, 40), exact)
    assert torch.equal(ivf.neighbours(qg, qp, qc, self_idx, 40), exact)


@needs_faiss
def test_gpu_flat_path_with_a_stand_in_for_knn_gpu(knn_gpu_stand_in):
    """The GPU flat path through the searcher (slots as a tensor, refresh, re-ranking) on a CPU."""
    glob, parts, cams = banks()
    g_bank, p_bank = MemoryBank(N, (D,)), MemoryBank(N, (P, D // P))
    g_bank.fill(glob)
    p_bank.fill(parts)
    gpu = faiss_searcher(g_bank, p_bank, cams, faiss_index="flat", gpu=True)
    assert isinstance(gpu.index, GpuFlatIndex) and gpu.index.slots.shape == (N, 2 * D + C)
    idx = torch.arange(0, N, 7)
    new_g, new_p, _ = unit_data(len(idx), 3)
    g_bank.update(idx, new_g)
    p_bank.update(idx, new_p)
    gpu.refresh(idx)
    qg, qp, qc, self_idx = anchors(g_bank.features, p_bank.features, cams, seed=4)
    exact = exact_searcher(g_bank, p_bank, cams).neighbours(qg, qp, qc, self_idx, 40)
    assert torch.equal(gpu.neighbours(qg, qp, qc, self_idx, 40), exact)
    assert knn_gpu_stand_in and set(knn_gpu_stand_in) == {faiss.METRIC_INNER_PRODUCT}


@needs_faiss
def test_faiss_gpu_only_on_cuda_with_the_gpu_build():
    assert not faiss_gpu_available(torch.device("cpu"))
    if not hasattr(faiss, "StandardGpuResources"):  # faiss-cpu, as installed here
        assert not faiss_gpu_available(torch.device("cuda", 0))


def test_gpu_flat_index_searches_on_the_device(device):
    """faiss's own ``knn_gpu`` over CUDA banks (the faiss GPU build on a CUDA device; skipped
    elsewhere, where the stand-in test above checks our side of the call) == the exact order."""
    if faiss is None or not faiss_gpu_available(device):
        pytest.skip(f"no faiss GPU build for {device}")
    glob, parts, cams = banks(device=device)
    qg, qp, qc, self_idx = anchors(glob, parts, cams)
    exact = exact_searcher(glob, parts, cams).neighbours(qg, qp, qc, self_idx, 40)
    gpu = faiss_searcher(glob, parts, cams, faiss_index="flat")
    assert isinstance(gpu.index, GpuFlatIndex) and gpu.index.slots.device.type == "cuda"
    assert torch.equal(gpu.neighbours(qg, qp, qc, self_idx, 40), exact)
