"""The slot graph (reidlib.neighbours.graph) against naive loops over slots, on small clustered banks."""

import math

import pytest
import torch
import torch.nn.functional as F

from reidlib.distances import combined_distance
from reidlib.neighbours import graph
from reidlib.neighbours.selection_distance import CameraDebias

torch.set_num_threads(1)
N, D, P, LG, LC = 48, 16, 4, 0.5, 0.05
CAM_COUNTS = (30, 12, 6)  # unbalanced: "same" and "other" rankings run short for some cameras


def clustered(seed=0, n=N, ids=12, noise=0.6):
    """Unit global (n, D) and stripe (n, P, D/P) features of ``ids`` identities, and cameras."""
    g = torch.Generator().manual_seed(seed)
    pid = torch.randint(0, ids, (n,), generator=g)
    glob = F.normalize(torch.randn(ids, D, generator=g)[pid] + noise * torch.randn(n, D, generator=g), dim=-1)
    parts = F.normalize(
        torch.randn(ids, P, D // P, generator=g)[pid] + noise * torch.randn(n, P, D // P, generator=g), dim=-1
    )
    cams = torch.cat([torch.full((c,), i) for i, c in enumerate(CAM_COUNTS)])
    cams = cams[torch.randperm(n, generator=g)]
    return glob, parts, cams


def dense_distance(seed=0, small_first=False, device="cpu"):
    """(N, N) SCL selection distance between slots (camera penalty included), and the cameras.

    ``small_first``: slot 0 is put in the smallest camera (where -1 padding would point to it)."""
    glob, parts, cams = (x.to(device) for x in clustered(seed))
    if small_first:
        j = int(torch.nonzero(cams == len(CAM_COUNTS) - 1)[0])
        cams[[0, j]] = cams[[j, 0]]
    dist = combined_distance(glob, parts, glob, parts, lambda_g=LG, lambda_c=LC, q_camids=cams, g_camids=cams)
    return dist, cams


def ranking_of(dist, k, cams=None, cameras="all"):
    idx, _ = graph.slot_ranking(lambda rows: dist[rows], len(dist), k, camids=cams, cameras=cameras)
    return idx


# --- oracles -------------------------------------------------------------------------------


def naive_ranking(dist, k, cams, cameras):
    """Each row sorted in Python: self first, then the allowed slots nearest first, -1 / inf padding."""
    n = len(dist)
    idx, val = [], []
    for i in range(n):
        allowed = [j for j in range(n) if j != i and (cameras == "all" or (cams[j] == cams[i]) == (cameras == "same"))]
        order = sorted(allowed, key=lambda j: dist[i, j].item())[:k]
        pad = k - len(order)
        idx.append([i] + order + [-1] * pad)
        val.append([0.0] + [dist[i, j].item() for j in order] + [math.inf] * pad)
    return torch.tensor(idx), torch.tensor(val)


def k_reciprocal_neigh(rank, i, k):
    """Zhong et al.'s k_reciprocal_neigh: i's first k + 1 whose own first k + 1 hold i."""
    forward = [j for j in rank[i][: k + 1] if j >= 0]
    return [j for j in forward if i in rank[j][: k + 1]]


def zhong_expansion(rank, i, k1):
    """Zhong et al. 2017's R*(i, k1), line by line as in their public re_ranking code."""
    r = k_reciprocal_neigh(rank, i, k1)
    expansion = list(r)
    for candidate in r:
        cand_r = k_reciprocal_neigh(rank, candidate, int(round(k1 / 2)))
        if len(set(cand_r) & set(r)) > 2.0 / 3.0 * len(cand_r):
            expansion += cand_r
    return set(expansion)


def row_sets(sets):
    idx, valid = sets
    return [set(idx[i][valid[i]].tolist()) for i in range(len(idx))]


def naive_jaccard(sets, set_dist, rank, k2):
    """Dense (N, N) S and d_J of the k-reciprocal vectors, in float64."""
    idx, valid = sets
    n = len(idx)
    v = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        members = [(int(idx[i, w]), float(set_dist[i, w])) for w in range(idx.shape[1]) if valid[i, w]]
        total = sum(math.exp(-d) for _, d in members)
        for j, d in members:
            v[i, j] = math.exp(-d) / total
    if k2 > 1:
        qe = torch.zeros_like(v)
        for i in range(n):
            near = [j for j in rank[i][:k2] if j >= 0]
            for j in near:
                qe[i] += v[j] / len(near)
        v = qe
    rows = v.tolist()
    s = torch.tensor(
        [[sum(min(a, b) for a, b in zip(rows[i], rows[j])) for j in range(n)] for i in range(n)], dtype=torch.float64
    )
    return s, 1.0 - s / (2.0 - s)


# --- slot_ranking ---------------------------------------------------------------------------


@pytest.mark.parametrize("k", [5, 20])
@pytest.mark.parametrize("cameras", ["all", "same", "other"])
def test_slot_ranking_matches_sorted_rows(cameras, k, device):
    """slot_ranking == each dense row sorted in Python (self first, camera rule, -1 / inf padding)."""
    dist, cams = dense_distance(device=device)
    idx, val = graph.slot_ranking(lambda rows: dist[rows], N, k, camids=cams, cameras=cameras)
    assert idx.device.type == device.type
    idx, val, dist, cams = idx.cpu(), val.cpu(), dist.cpu(), cams.cpu()
    ref_idx, ref_val = naive_ranking(dist, k, cams, cameras)
    assert idx.shape == (N, 1 + k)
    assert torch.equal(idx, ref_idx)
    assert torch.allclose(val, ref_val.float())
    if k == 20 and cameras != "all":  # the unbalanced cameras must have produced padding
        assert (idx == -1).any()


@pytest.mark.parametrize("cameras", ["all", "same", "other"])
def test_slot_ranking_block_size_irrelevant(cameras):
    """Computing 7 rows at a time gives the same ranking as the default block."""
    dist, cams = dense_distance(seed=3)
    a = graph.slot_ranking(lambda rows: dist[rows], N, 16, camids=cams, cameras=cameras)
    b = graph.slot_ranking(lambda rows: dist[rows], N, 16, camids=cams, cameras=cameras, block=7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


# --- reciprocal_mask ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cameras,k,use,small_first",
    [
        ("all", 10, None, False),
        ("all", 10, 4, False),
        ("same", 20, None, False),
        ("same", 20, None, True),
        ("other", 20, 9, False),
    ],
)
def test_reciprocal_mask_textbook(cameras, k, use, small_first):
    """mask[i, c] == (j = rank[i, c] is a slot and i is among j's first k + 1), column 0 True;
    a -1 padding entry is never a reciprocal neighbour."""
    dist, cams = dense_distance(small_first=small_first)
    rank = ranking_of(dist, k, cams, cameras)
    mask = graph.reciprocal_mask(rank, use)
    kk = k if use is None else use
    rows = rank.tolist()
    ref = torch.tensor([[j >= 0 and i in rows[j][: kk + 1] for j in rows[i][: kk + 1]] for i in range(N)])
    assert mask.shape == (N, 1 + kk)
    assert torch.equal(mask, ref)
    assert mask[:, 0].all()
    assert mask[:, 1:].any() and not mask[:, 1:].all()  # a non-trivial case


# --- reciprocal_sets / camera_aware_sets ------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 2])  # seed 2, k1 12: a forward but not reciprocal j passes the 2/3 test
@pytest.mark.parametrize("k1", [4, 5, 8, 12])
def test_reciprocal_sets_zhong_expansion(k1, seed, device):
    """R*(i, k1) == Zhong et al.'s loop (k-reciprocal set expanded by the round(k1/2) sets).

    (Below k1 = 6 a half-size set of at most 3 slots passes the 2/3 test only when it lies
    wholly inside R(i, k1), so only the larger k1 can add members.)"""
    dist, _ = dense_distance(seed, device=device)
    rank = ranking_of(dist, k1 + 3)
    sets = tuple(x.cpu() for x in graph.reciprocal_sets(rank, k1))
    rows = rank.tolist()
    got = row_sets(sets)
    ref = [zhong_expansion(rows, i, k1) for i in range(N)]
    assert got == ref
    assert all(i in got[i] for i in range(N))
    plain = [set(k_reciprocal_neigh(rows, i, k1)) for i in range(N)]
    if k1 >= 8:
        assert any(r != p for r, p in zip(ref, plain)), "no expansion happened: a weak test case"


def test_camera_aware_sets_union(device):
    """camera_aware_sets == within-camera reciprocal neighbours united with cross-camera ones."""
    dist, cams = dense_distance(seed=1, device=device)
    k_intra, k_inter = 4, 9
    intra = ranking_of(dist, k_intra + 2, cams, "same")
    inter = ranking_of(dist, k_inter, cams, "other")
    got = row_sets(tuple(x.cpu() for x in graph.camera_aware_sets(intra, inter, k_intra, k_inter)))
    cams = cams.cpu()
    ri, ro = intra.tolist(), inter.tolist()
    ref = [set(k_reciprocal_neigh(ri, i, k_intra)) | set(k_reciprocal_neigh(ro, i, k_inter)) for i in range(N)]
    assert got == ref
    assert any(any(cams[j] != cams[i] for j in s) for i, s in enumerate(got))  # cross-camera members
    assert any(any(cams[j] == cams[i] and j != i for j in s) for i, s in enumerate(got))  # and same-camera


# --- jaccard_distance / nearest_by_jaccard ---------------------------------------------------


def jaccard_case(k2, k1=6, seed=0, device="cpu"):
    dist, _ = dense_distance(seed, device=device)
    rank = ranking_of(dist, max(k1, k2))
    sets = graph.reciprocal_sets(rank, k1)
    set_dist = dist.gather(1, sets[0])
    return sets, set_dist, rank


@pytest.mark.parametrize("k2", [1, 3])
def test_jaccard_distance_matches_dense(k2, device):
    """Every returned pair has the dense loop's d_J; exactly the pairs with S > 0 are returned;
    sorted by row, then distance."""
    sets, set_dist, rank = jaccard_case(k2, device=device)
    rows, cols, dist = (x.cpu() for x in graph.jaccard_distance(sets, set_dist, rank, k2))
    sets, set_dist, rank = tuple(x.cpu() for x in sets), set_dist.cpu(), rank.cpu()
    s_ref, d_ref = naive_jaccard(sets, set_dist, rank.tolist(), k2)
    assert torch.allclose(dist.double(), d_ref[rows, cols], atol=1e-5)
    got = set(zip(rows.tolist(), cols.tolist()))
    assert len(got) == len(rows)  # no pair twice
    assert got == set(map(tuple, torch.nonzero(s_ref > 0).tolist()))
    assert len(got) < N * N  # the sparse case: some pairs are left at distance 1
    assert (rows[1:] >= rows[:-1]).all()
    same_row = rows[1:] == rows[:-1]
    assert (dist[1:][same_row] >= dist[:-1][same_row]).all()
    self_pairs = rows == cols
    assert self_pairs.sum() == N and torch.allclose(dist[self_pairs], torch.zeros(N), atol=1e-5)


@pytest.mark.parametrize("k2", [1, 3])
def test_jaccard_distance_block_size_irrelevant(k2):
    """Joining 5 rows at a time gives the same pairs and distances, bit for bit, as one block."""
    case = jaccard_case(k2, k1=8, seed=2)
    whole = graph.jaccard_distance(*case, k2, block=N)
    for block in (5, 16):
        assert all(torch.equal(a, b) for a, b in zip(graph.jaccard_distance(*case, k2, block=block), whole))


def naive_nearest(pairs, k, eps):
    rows, cols, dist = (t.tolist() for t in pairs)
    idx = [[i] * k for i in range(N)]
    valid = [[False] * k for _ in range(N)]
    for i in range(N):
        cand = sorted((d, c) for r, c, d in zip(rows, cols, dist) if r == i and c != i and d < eps)
        for pos, (_, c) in enumerate(cand[:k]):
            idx[i][pos], valid[i][pos] = c, True
    return torch.tensor(idx), torch.tensor(valid)


@pytest.mark.parametrize("k2,k,eps", [(1, 3, 0.6), (3, 4, 0.8), (3, 8, 1.0)])
def test_nearest_by_jaccard(k2, k, eps, device):
    """The first k other slots by Jaccard distance below eps; invalid entries hold the slot itself."""
    pairs = graph.jaccard_distance(*jaccard_case(k2, device=device), k2)
    idx, valid = (x.cpu() for x in graph.nearest_by_jaccard(pairs, N, k, eps))
    ref_idx, ref_valid = naive_nearest(pairs, k, eps)
    assert torch.equal(valid, ref_valid)
    assert torch.equal(idx, ref_idx)
    assert valid.any() and not valid.all()  # some rows run short


# --- CameraDebias -----------------------------------------------------------------------------


def naive_debias(feats, cams, scale):
    out = torch.empty_like(feats)
    for c in cams.unique().tolist():
        rows = [i for i in range(len(feats)) if cams[i] == c]
        members = feats[rows]
        mean = members.mean(0)
        for i in rows:
            x = feats[i] - mean
            if scale:
                x = x / members.std(0, unbiased=False).clamp_min(1e-6)
            out[i] = x / x.norm(dim=-1, keepdim=True)
    return out


@pytest.mark.parametrize("scale", [False, True])
@pytest.mark.parametrize("part", [False, True])
def test_camera_debias_matches_loop(part, scale, device):
    """fit + apply == a loop over cameras (mean off, optionally / std, renormalised), for (N, D) and (N, P, d)."""
    glob, parts, cams = clustered(seed=2)
    feats = parts if part else glob
    deb = CameraDebias.fit(feats.to(device), cams.to(device), len(CAM_COUNTS), scale=scale)
    out = deb(feats.to(device), cams.to(device)).cpu()
    assert out.shape == feats.shape
    assert torch.allclose(out, naive_debias(feats, cams, scale), atol=1e-5)
    assert torch.allclose(out.norm(dim=-1), torch.ones(out.shape[:-1]), atol=1e-5)
    assert not torch.allclose(out, feats, atol=1e-2)  # it did change something


def test_camera_debias_zero_camera_mean():
    """After mean-only debiasing, each camera's features (before renormalising) average to zero,
    and a slot's output is the direction of its feature minus its camera's mean."""
    glob, _, cams = clustered(seed=4)
    glob = F.normalize(glob + torch.tensor([1.0] + [0.0] * (D - 1)) * cams[:, None], dim=-1)  # camera bias
    deb = CameraDebias.fit(glob, cams, len(CAM_COUNTS))
    centred = glob - deb.mean[cams]
    for c in range(len(CAM_COUNTS)):
        assert torch.allclose(centred[cams == c].mean(0), torch.zeros(D), atol=1e-6)
        assert not torch.allclose(glob[cams == c].mean(0), torch.zeros(D), atol=1e-2)
    assert torch.allclose(deb(glob, cams), F.normalize(centred, dim=-1), atol=1e-6)
