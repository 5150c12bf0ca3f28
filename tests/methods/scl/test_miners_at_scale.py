"""The table rule's step at large N (reidlib.methods.scl.miners, reidlib.methods.scl.tables): negatives
through a faiss searcher instead of a dense (B, N) row, the part agreement check through per-epoch
stripe lists and a pool of the searched slots instead of (B, P, N) distances; each against the
exact path, forced at small N."""

import pytest
import torch
import torch.nn.functional as F

from reidlib.config import SearchConfig, load_config
from reidlib.methods.memory import MemoryBank
from reidlib.methods.scl import SCL
from reidlib.methods.scl.checks import LIST_DEPTH, PositiveChecks, part_votes, pooled_votes
from reidlib.methods.scl.miners import TableMiner
from reidlib.methods.scl.tables import group_means, stripe_lists
from reidlib.neighbours.searchers import FaissSearcher
from reidlib.neighbours.selection_distance import SelectionDistance
from reidlib.neighbours.slot_search import SlotSearch
from tests.helpers import clustered_features

faiss = pytest.importorskip("faiss")
faiss.omp_set_num_threads(1)
torch.set_num_threads(1)
D, P, C, B = 32, 4, 3, 16


def banks(n, ids, seed=0, noise=0.5):
    """Clustered unit global (n, D) and part (n, P, d) MemoryBanks, and cameras (n,)."""
    glob, parts, cams = clustered_features(n, ids, D, P, C, seed=seed, noise=noise, camera_shift=0.3)
    gbank, pbank = MemoryBank(n, (D,)), MemoryBank(n, (P, D // P))
    gbank.fill(glob)
    pbank.fill(parts)
    return gbank, pbank, cams


def anchors(gbank, pbank, cams, seed=1, spread=0.3):
    """B anchors near their own slots, as in training: (B, D), (B, P, d), (B,), (B,)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(cams), generator=g)[:B]
    qg = F.normalize(gbank.features[idx] + spread * torch.randn(B, D, generator=g), dim=-1)
    qp = F.normalize(pbank.features[idx] + spread * torch.randn(B, P, D // P, generator=g), dim=-1)
    return qg, qp, cams[idx], idx


def distance_over(gbank, pbank, cams):
    """The recipe's kind of distance: debiased cameras, a same-camera penalty."""
    return SelectionDistance(gbank, pbank, cams, lambda_g=0.5, lambda_c=0.2, debias="mean")


def overlap(found, exact):
    """Mean share of each row of ``exact`` (B, M) found in the same row of ``found``."""
    return (exact[:, :, None] == found[:, None, :]).any(-1).float().mean().item()


# --- the stripe lists ----------------------------------------------------------------------------


@pytest.mark.parametrize("index", ["exact", "flat"])
def test_stripe_lists_give_the_per_step_votes_when_the_anchor_is_its_slot(index):
    """With an anchor's features equal to its slot's and the banks unchanged, the per-epoch lists
    hold each stripe's k nearest: the pooled vote, with nothing else in its pool, is the per-step
    (B, P, N) check's, for every slot as a candidate."""
    gbank, pbank, cams = banks(300, 40)
    distance = distance_over(gbank, pbank, cams)
    k = 12
    lists = stripe_lists(distance, SlotSearch(distance, index), k)
    assert lists.shape == (300, P, k) and lists.dtype == torch.int32
    idx = torch.arange(0, 300, 7)
    every = torch.arange(300).expand(len(idx), -1)  # (b, N) every slot a candidate
    q, q_cams = pbank.features[idx], cams[idx]
    per_step = part_votes(distance.stripe_distances(q, q_cams), idx, every, k)
    nothing = torch.empty(len(idx), 0, dtype=torch.int64)
    some = every[:, 3:40:3]  # (b, 13) a few candidates: the pool is the lists and these
    assert torch.equal(pooled_votes(distance, q, q_cams, idx, some, lists[idx], nothing, k), per_step[:, 3:40:3])
    assert torch.equal(pooled_votes(distance, q, q_cams, idx, every, lists[idx], nothing, k), per_step)
    assert (per_step[torch.arange(len(idx)), idx] == 0).all()  # the own slot is never voted for


@pytest.mark.parametrize("debias", ["none", "mean", "mean_std"])
def test_stripe_distances_to_some_slots_are_the_whole_rows(debias):
    """The pooled vote's distances (a camera mean removed through inner products) are the dense
    (B, P, N) check's, at the slots asked for, stripe by stripe."""
    gbank, pbank, cams = banks(500, 60)
    distance = SelectionDistance(gbank, pbank, cams, lambda_g=0.5, lambda_c=0.2, debias=debias)
    _, p, q_cams, _ = anchors(gbank, pbank, cams)
    slots = torch.randint(0, 500, (B, P, 37), generator=torch.Generator().manual_seed(4))
    whole = distance.stripe_distances(p, q_cams)  # (B, P, N)
    torch.testing.assert_close(distance.stripe_distances_to(p, q_cams, slots), whole.gather(2, slots))


def test_the_pooled_vote_follows_the_anchor_where_the_lists_do_not():
    """Anchors that moved away from their slots (a training step's augmented crop): the pooled
    vote ranks their stripes as they are now, within the lists and the searched slots, and
    agrees with the per-step check far more often than a look-up of the slot's lists would."""
    gbank, pbank, cams = banks(1_200, 150)
    distance = distance_over(gbank, pbank, cams)
    k, spread = 10, 0.3
    lists = stripe_lists(distance, SlotSearch(distance, "exact"), k)
    g, p, q_cams, idx = anchors(gbank, pbank, cams, spread=spread)
    dist = distance.to_slots(g, p, q_cams)  # (B, N)
    pool = torch.topk(dist, 400, dim=1, largest=False).indices  # what a step's search finds (band + M + K)
    cand = pool[:, 1:15]
    exact = part_votes(distance.stripe_distances(p, q_cams), idx, cand, k)
    pooled = pooled_votes(distance, p, q_cams, idx, cand, lists[idx], pool, k)
    looked_up = (lists[idx].long()[:, :, :, None] == cand[:, None, None, :]).any(2).sum(1)
    pooled_alike = ((pooled >= 2) == (exact >= 2)).float().mean()
    looked_up_alike = ((looked_up >= 2) == (exact >= 2)).float().mean()
    assert pooled_alike > 0.9 and pooled_alike > looked_up_alike + 0.1, (pooled_alike, looked_up_alike)
    assert (pooled >= exact).all()  # the pool's k-th is never nearer than the whole bank's
    known = distance.stripe_distances_to(p, q_cams, pool[:, None, :].expand(-1, P, -1))  # a searcher's (B, P, R)
    assert torch.equal(pooled_votes(distance, p, q_cams, idx, cand, lists[idx], pool, k, known), pooled)


def test_stripe_lists_through_ivf_find_most_exact_neighbours():
    gbank, pbank, cams = banks(3_000, 400)  # one index over 3,000 slots: approximate
    distance = distance_over(gbank, pbank, cams)
    exact = stripe_lists(distance, SlotSearch(distance, "exact"), 20)
    found = stripe_lists(distance, SlotSearch(distance, "ivf"), 20)
    hits = (found[:, :, :, None] == exact[:, :, None, :]).any(-1).float().mean()
    assert hits > 0.9, f"recall of the exact stripe lists {hits:.3f}"


def test_group_means_a_block_at_a_time_are_the_whole_ones():
    gbank, pbank, cams = banks(300, 40)
    distance = distance_over(gbank, pbank, cams)
    labels = torch.randint(0, 50, (300,), generator=torch.Generator().manual_seed(2))
    whole, blocked = group_means(distance, labels), group_means(distance, labels, block=64)
    assert whole[0].shape == (50, D) and whole[1].shape == (50, P, D // P)
    assert torch.equal(whole[0], blocked[0]) and torch.equal(whole[1], blocked[1])
    g, p, _ = distance.slots(slice(None))
    torch.testing.assert_close(whole[0][7], F.normalize(g[labels == 7].sum(0), dim=-1))


# --- the negatives through a searcher --------------------------------------------------------------


def table_miners(distance, search_cfg, n, m=40, band=3):
    """The same table (each slot's next 5 slots, one invalid column) read by an exact TableMiner
    and by one whose negatives come from a FaissSearcher of ``search_cfg``."""
    table = (torch.arange(n)[:, None] + torch.arange(1, 6)) % n  # (N, 5)
    valid = torch.ones_like(table, dtype=torch.bool)
    valid[:, -1] = False
    table[:, -1] = torch.arange(n)  # an invalid entry holds the slot itself
    exact = TableMiner(distance, (table, valid), m, PositiveChecks(distance), band=band)
    searcher = FaissSearcher(distance, search_cfg)
    return exact, TableMiner(distance, (table, valid), m, PositiveChecks(distance), band=band, searcher=searcher)


def test_negatives_through_an_exact_index_are_the_exact_ones():
    gbank, pbank, cams = banks(600, 80)
    distance = distance_over(gbank, pbank, cams)
    exact, searched = table_miners(distance, SearchConfig(backend="faiss", faiss_index="flat"), 600)
    q = anchors(gbank, pbank, cams)
    ref, sel = exact(*q), searched(*q)
    assert sel.neg_idx.shape == ref.neg_idx.shape == (B, 40) and sel.ignored.shape == (B, 3)
    assert torch.equal(sel.pos_idx, ref.pos_idx) and torch.equal(sel.pos_mask, ref.pos_mask)
    assert torch.equal(sel.ignored, ref.ignored)
    assert torch.equal(sel.neg_idx, ref.neg_idx)


def test_negatives_through_ivf_overlap_the_exact_ones():
    gbank, pbank, cams = banks(4_000, 500)
    distance = distance_over(gbank, pbank, cams)
    cfg = SearchConfig(backend="faiss", faiss_index="ivf", faiss_dim=0, nlist=100, nprobe=50)  # half the cells
    exact, searched = table_miners(distance, cfg, 4_000)
    q = anchors(gbank, pbank, cams)
    ref, sel = exact(*q), searched(*q)
    assert torch.equal(sel.pos_idx, ref.pos_idx)
    found = torch.cat([sel.ignored, sel.neg_idx], 1)
    assert overlap(found, torch.cat([ref.ignored, ref.neg_idx], 1)) > 0.9
    positives = sel.pos_idx
    assert not (found[:, :, None] == positives[:, None, :]).any()  # never the anchor nor a positive
    assert (found.sort(1).values.diff(dim=1) > 0).all()  # no slot twice


def test_refresh_follows_the_banks():
    """A slot moved onto an anchor's features is its nearest negative once the index is refreshed."""
    gbank, pbank, cams = banks(600, 80)
    distance = distance_over(gbank, pbank, cams)
    _, searched = table_miners(distance, SearchConfig(backend="faiss", faiss_index="flat"), 600, band=0)
    qg, qp, qc, idx = anchors(gbank, pbank, cams)
    far = distance.to_slots(qg[:1], qp[:1], qc[:1]).argmax(1)  # the first anchor's farthest slot
    assert far not in searched(qg, qp, qc, idx).neg_idx[0]
    gbank.features[far], pbank.features[far] = qg[0], qp[0]  # a bank update moves it onto the anchor
    assert far not in searched(qg, qp, qc, idx).neg_idx[0]  # the index still holds it where it was
    searched.refresh(far)
    assert searched(qg, qp, qc, idx).neg_idx[0, 0] == far


# --- the epoch's miner ----------------------------------------------------------------------------


def epoch_miner(search_cfg, gbank, pbank, cams, **overrides):
    """The recipe's table miner that SCL builds at an epoch's start over these banks."""
    base = dict(k=5, m=30, warmup_epochs=0, num_parts=P, feat_dim=D, positive_rule="camera_groups")
    base.update(camera_debias="mean", lambda_c=0.2, part_agreement=2, part_agreement_k=10, **overrides)
    s = load_config(None, base).scl
    n = len(cams)
    method = SCL(s, search_cfg, gbank, pbank, MemoryBank(n, (D,)), torch.zeros(n, dtype=torch.long), cams, epochs=3)
    method.start_epoch(1, torch.Generator(), features=None, resumed=False)
    return method.miner


def test_the_search_section_chooses_the_step():
    gbank, pbank, cams = banks(1_500, 200)
    dense = epoch_miner(SearchConfig(backend="torch"), gbank, pbank, cams)
    assert dense.searcher is None and dense.checks.stripe_lists is None
    flat = SearchConfig(backend="faiss", faiss_index="flat", graph_index="flat")
    searched = epoch_miner(flat, gbank, pbank, cams)
    assert isinstance(searched.searcher, FaissSearcher) and searched.searcher.distance is searched.distance
    assert searched.checks.stripe_lists.shape == (1_500, P, LIST_DEPTH * 10)
    # the same tables (flat graph = exact graph); the stripe votes rank the anchors' stripes within
    # a pool (the slot's lists of the epoch's start, the searched slots, the candidates) instead of
    # the whole bank: the same when the anchors are their slots, and a few candidates near the 10th
    # stripe neighbour differ when they have moved a little
    for spread, kept_alike in ((0.0, 1.0), (0.05, 0.95)):
        q = anchors(gbank, pbank, cams, spread=spread)
        ref, sel = dense(*q), searched(*q)
        assert sel.pos_idx.shape == ref.pos_idx.shape and sel.neg_idx.shape == ref.neg_idx.shape == (B, 30)
        assert (sel.pos_idx == ref.pos_idx).float().mean() > 0.99
        assert (sel.pos_mask == ref.pos_mask).float().mean() >= kept_alike
        assert overlap(sel.neg_idx, ref.neg_idx) > 0.95
