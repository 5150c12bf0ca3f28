"""The per-epoch miners (reidlib.methods.scl.miners) against naive loops over anchors, on small banks."""

import pytest
import torch
import torch.nn.functional as F

from reidlib.config import SearchConfig, load_config
from reidlib.distances import combined_distance
from reidlib.errors import ConfigError
from reidlib.methods.memory import MemoryBank, build_banks
from reidlib.methods.scl import SCL
from reidlib.methods.scl.checks import PositiveChecks, part_votes
from reidlib.methods.scl.miners import CandidateMiner, NearestMiner, TableMiner, WarmupMiner, lambda_c_at
from reidlib.methods.scl.selection import select_neighbours
from reidlib.methods.scl.tables import camera_group_positives, cross_camera_pairs
from reidlib.neighbours.searchers import FaissSearcher, TorchSearcher
from reidlib.neighbours.selection_distance import SelectionDistance
from reidlib.neighbours.slot_search import SlotSearch

torch.set_num_threads(1)
N, D, P, C, B = 48, 16, 4, 3, 10
EXACT = SearchConfig(backend="torch")  # the search section of every miner here


def epoch_miner(s, search, epoch, epochs, gbank, pbank, cams, generator):
    """The miner that SCL builds at the start of ``epoch`` over these banks (on their device)."""
    device = cams.device
    mixture, pids = MemoryBank(N, (D,)).to(device), torch.zeros(N, dtype=torch.long, device=device)
    method = SCL(s, search, gbank, pbank, mixture, pids, cams, epochs=epochs)
    method.start_epoch(epoch, generator, features=None, resumed=False)
    return method.miner


def debiased_banks(distance):
    """The whole banks as ``distance`` sees them: (N, D), (N, P, d)."""
    return distance.slots(slice(None))[:2]


def scl(**overrides):
    """An scl config section for these banks (no warm-up unless overridden)."""
    base = dict(k=4, m=12, warmup_epochs=0, num_parts=P, feat_dim=D, reciprocal_k=6)
    base.update(overrides)
    return load_config(None, base).scl


def data(seed=0, ids=12, noise=0.6, device="cpu"):
    """Clustered unit features filled into MemoryBanks, cameras, and B anchors near their own slots,
    all on ``device`` (drawn on the CPU)."""
    g = torch.Generator().manual_seed(seed)
    pid = torch.randint(0, ids, (N,), generator=g)
    glob = torch.randn(ids, D, generator=g)[pid] + noise * torch.randn(N, D, generator=g)
    parts = torch.randn(ids, P, D // P, generator=g)[pid] + noise * torch.randn(N, P, D // P, generator=g)
    cams = torch.randint(0, C, (N,), generator=g)
    gbank, pbank, _ = build_banks(N, D, P, 0.5)
    gbank.fill(glob)
    pbank.fill(parts)
    idx = torch.randperm(N, generator=g)[:B]
    qg = F.normalize(gbank.features[idx] + 0.3 * torch.randn(B, D, generator=g), dim=-1)
    qp = F.normalize(pbank.features[idx] + 0.3 * torch.randn(B, P, D // P, generator=g), dim=-1)
    return gbank.to(device), pbank.to(device), cams.to(device), tuple(x.to(device) for x in (qg, qp, cams[idx], idx))


def sorted_others(row, own):
    """Slots other than ``own`` sorted by the values of ``row`` (a Python list), nearest first."""
    return sorted((j for j in range(len(row)) if j != own), key=lambda j: row[j])


# --- lambda_c_at ----------------------------------------------------------------------------


def test_lambda_c_constant_without_start():
    """Without lambda_c_start the penalty is lambda_c at every epoch, warm-up included."""
    s = scl(lambda_c=0.07, warmup_epochs=2)
    assert [lambda_c_at(s, e, 10) for e in range(12)] == [0.07] * 12


def test_lambda_c_linear_ramp():
    """From lambda_c_start at the first epoch after warm-up to lambda_c at the last, clamped outside."""
    s = scl(lambda_c=0.1, lambda_c_start=0.02, warmup_epochs=2)
    epochs = 12  # selecting epochs 2..11
    expected = {0: 0.02, 1: 0.02, 2: 0.02, 5: 0.02 + 0.08 * 3 / 9, 10: 0.02 + 0.08 * 8 / 9, 11: 0.1, 15: 0.1}
    for epoch, value in expected.items():
        assert lambda_c_at(s, epoch, epochs) == pytest.approx(value, abs=1e-12)
    down = scl(lambda_c=0.0, lambda_c_start=0.3, warmup_epochs=0)  # a decreasing schedule
    assert [round(lambda_c_at(down, e, 4), 12) for e in range(4)] == [0.3, 0.2, 0.1, 0.0]
    assert lambda_c_at(s, 2, 3) == pytest.approx(0.1)  # a single selecting epoch: lambda_c


# --- part_votes -----------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 5, 12])
def test_part_votes_matches_loop(k):
    """votes[b, c] == how many stripes hold cand[b, c] among their k nearest slots, own slot left out."""
    g = torch.Generator().manual_seed(k)
    stripe_dist = torch.rand(B, P, N, generator=g)
    self_idx = torch.randint(0, N, (B,), generator=g)
    cand = torch.stack(
        [torch.tensor(sorted_others(stripe_dist[b].mean(0).tolist(), int(self_idx[b]))[:6]) for b in range(B)]
    )
    votes = part_votes(stripe_dist, self_idx, cand, k)
    ref = torch.zeros(B, 6, dtype=torch.int64)
    for b in range(B):
        for s in range(P):
            near = sorted_others(stripe_dist[b, s].tolist(), int(self_idx[b]))[:k]
            for c in range(6):
                ref[b, c] += int(cand[b, c]) in near
    assert torch.equal(votes, ref)
    assert len(votes.unique()) > 1  # not a constant


# --- CandidateMiner --------------------------------------------------------------------------


def naive_candidates(distance, gbank, pbank, cams, anchors, s):
    """Recompute the candidates and their checks per anchor from the dense distances."""
    qg, qp, qc, idx = anchors
    dist = distance.to_slots(qg, qp, qc).tolist()  # (B, N) anchors to slots
    slot = distance.to_slots(gbank.features, pbank.features, cams).tolist()  # (N, N) slots to slots
    fp = distance.anchors(qg, qp, qc)[1]  # the anchors' stripes as the distance sees them
    bp = debiased_banks(distance)[1]
    checks = s.positive_rule in ("reciprocal", "cycle")
    pos, neg, mask = [], [], []
    for b in range(len(idx)):
        me = int(idx[b])
        order = sorted_others(dist[b], me)[: s.k + s.m]
        keep = []
        for c in order[: s.k]:
            ok = True
            if checks:  # c's own reciprocal_k nearest (itself first) hold the anchor's slot
                ok &= me in [c] + sorted_others(slot[c], c)[: s.reciprocal_k]
            if s.pos_max_distance is not None:
                ok &= dist[b][c] <= s.pos_max_distance
            if s.part_agreement:
                votes = 0
                for st in range(P):
                    sd = [((fp[b, st] - bp[j, st]) ** 2).sum().item() for j in range(N)]
                    votes += c in sorted_others(sd, me)[: s.part_agreement_k]
                ok &= votes >= s.part_agreement
            keep.append(ok)
        if s.positive_rule == "cycle":
            keep = [all(keep[: t + 1]) for t in range(len(keep))]
        pos.append([me] + order[: s.k])
        neg.append(order[s.k :])
        mask.append([True] + keep)
    return torch.tensor(pos), torch.tensor(neg), torch.tensor(mask)


def candidate_threshold(gbank, pbank, cams, anchors, k):
    """The median distance of the anchors' k nearest candidates (so max_distance drops about half,
    and one candidate lies exactly on it: it must be kept)."""
    qg, qp, qc, idx = anchors
    dist = SelectionDistance(gbank, pbank, cams, lambda_g=0.5, lambda_c=0.05).to_slots(qg, qp, qc)
    return float(dist.scatter(1, idx[:, None], float("inf")).topk(k, largest=False).values.median())


CANDIDATE_CASES = {
    "reciprocal": dict(positive_rule="reciprocal"),
    "cycle": dict(positive_rule="cycle"),
    "max_distance": dict(pos_max_distance="median"),
    "part_agreement": dict(part_agreement=3, part_agreement_k=6),
    "cycle_all_checks": dict(positive_rule="cycle", pos_max_distance="median", part_agreement=2, part_agreement_k=6),
    "reciprocal_debiased": dict(positive_rule="reciprocal", camera_debias="mean"),
    "parts_debiased": dict(part_agreement=3, part_agreement_k=6, camera_debias="mean_std"),
}


@pytest.mark.parametrize("case", sorted(CANDIDATE_CASES))
def test_candidate_selector_matches_loop(case):
    """pos_idx, neg_idx and pos_mask == the per-anchor loop on the dense distance, for every check."""
    gbank, pbank, cams, anchors = data()
    overrides = dict(CANDIDATE_CASES[case])
    if overrides.get("pos_max_distance") == "median":
        overrides["pos_max_distance"] = candidate_threshold(gbank, pbank, cams, anchors, 4)
    s = scl(**overrides)
    selector = epoch_miner(s, EXACT, 0, 5, gbank, pbank, cams, torch.Generator().manual_seed(0))
    assert isinstance(selector, CandidateMiner)
    sel = selector(*anchors)
    pos, neg, mask = naive_candidates(selector.distance, gbank, pbank, cams, anchors, s)
    assert torch.equal(sel.pos_idx, pos)
    assert torch.equal(sel.neg_idx, neg)
    assert torch.equal(sel.pos_mask, mask)
    assert sel.pos_mask[:, 0].all()
    assert not sel.pos_mask.all() and sel.pos_mask[:, 1:].any()  # the checks dropped some, kept some
    if s.positive_rule == "cycle":  # a prefix: once False, False to the end of the row
        assert (sel.pos_mask.int().diff(dim=1) <= 0).all()


def test_candidate_selector_without_checks_keeps_all():
    """knn candidates with no check (here with camera debiasing, so not the plain path) are all kept,
    and the Selection is select_neighbours on the view's distance."""
    gbank, pbank, cams, anchors = data(seed=1)
    s = scl(camera_debias="mean")
    selector = epoch_miner(s, EXACT, 0, 5, gbank, pbank, cams, torch.Generator().manual_seed(0))
    assert isinstance(selector, CandidateMiner)
    sel = selector(*anchors)
    assert sel.pos_mask.all()
    ref = select_neighbours(selector.distance.to_slots(*anchors[:3]), anchors[3], s.k, s.m)
    assert torch.equal(sel.pos_idx, ref.pos_idx) and torch.equal(sel.neg_idx, ref.neg_idx)
    # plain tensors work as banks too
    distance = SelectionDistance(gbank.features, pbank.features, cams, lambda_g=0.5, lambda_c=0.05)
    direct = CandidateMiner(distance, 4, 12, PositiveChecks(distance))(*anchors)
    assert direct.pos_mask.all() and direct.pos_mask.shape == (B, 5)


def test_camera_debias_changes_the_distance():
    """With camera_debias the selection distance is the combined distance of the debiased features."""
    gbank, pbank, cams, (qg, qp, qc, idx) = data(seed=2)
    view = SelectionDistance(gbank, pbank, cams, lambda_g=0.5, lambda_c=0.05, debias="mean")
    dg, dp = debiased_banks(view)
    for c in range(C):  # each slot: its feature minus its camera's mean, renormalised
        raw = gbank.features[cams == c]
        assert torch.allclose(dg[cams == c], F.normalize(raw - raw.mean(0), dim=-1), atol=1e-5)
    fg, fp = view.anchors(qg, qp, qc)
    ref = combined_distance(fg, fp, dg, dp, lambda_g=0.5, lambda_c=0.05, q_camids=qc, g_camids=cams)
    assert torch.allclose(view.to_slots(qg, qp, qc), ref, atol=1e-5)
    plain = combined_distance(
        qg, qp, gbank.features, pbank.features, lambda_g=0.5, lambda_c=0.05, q_camids=qc, g_camids=cams
    )
    assert not torch.allclose(ref, plain, atol=1e-2)


# --- TableMiner ------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["jaccard", "ca_jaccard"])
def test_jaccard_selector(rule, device):
    """Anchor in column 0; negatives are the M nearest slots that are neither positives nor the own slot."""
    gbank, pbank, cams, anchors = data(seed=3, device=device)
    s = scl(positive_rule=rule, k=3, m=10, jaccard_k1=8, jaccard_k2=3, jaccard_eps=0.9, ca_k_intra=3, ca_k_inter=8)
    selector = epoch_miner(s, EXACT, 0, 5, gbank, pbank, cams, torch.Generator().manual_seed(0))
    assert isinstance(selector, TableMiner)
    sel = selector(*anchors)
    idx = anchors[3]
    assert sel.pos_idx.shape == (B, 1 + s.k) and sel.neg_idx.shape == (B, s.m)
    assert torch.equal(sel.pos_idx[:, 0], idx)
    own = torch.ones(B, 1, dtype=torch.bool, device=device)
    assert torch.equal(sel.pos_mask, torch.cat([own, selector.valid[idx]], 1))
    assert sel.pos_mask[:, 1:].any()
    assert not (sel.pos_idx[:, 1:][sel.pos_mask[:, 1:]] == idx[:, None].expand(-1, s.k)[sel.pos_mask[:, 1:]]).any()
    dist = selector.distance.to_slots(*anchors[:3]).tolist()
    for b in range(B):
        me, positives, negatives = int(idx[b]), set(sel.pos_idx[b].tolist()), sel.neg_idx[b].tolist()
        assert me not in negatives and not positives & set(negatives)
        ref = [j for j in sorted_others(dist[b], me) if j not in positives][: s.m]
        assert negatives == ref


def test_jaccard_selector_checks_drop_positives():
    """part_agreement and pos_max_distance drop table positives exactly as a loop over them does;
    the negatives stay those of the unchecked table (a dropped positive is not made a negative)."""
    gbank, pbank, cams, anchors = data(seed=3)
    base = dict(
        positive_rule="ca_jaccard", k=3, m=10, jaccard_k1=8, jaccard_k2=3, jaccard_eps=0.9, ca_k_intra=3, ca_k_inter=8
    )
    plain = epoch_miner(scl(**base), EXACT, 0, 5, gbank, pbank, cams, torch.Generator())(*anchors)
    dist = SelectionDistance(gbank, pbank, cams, lambda_g=0.5, lambda_c=0.05).to_slots(*anchors[:3])
    limit = float(dist.gather(1, plain.pos_idx[:, 1:]).median())
    s = scl(**base, part_agreement=3, part_agreement_k=6, pos_max_distance=limit)
    sel = epoch_miner(s, EXACT, 0, 5, gbank, pbank, cams, torch.Generator())(*anchors)
    assert torch.equal(sel.pos_idx, plain.pos_idx) and torch.equal(sel.neg_idx, plain.neg_idx)
    qg, qp, qc, idx = anchors
    stripe = (2 - 2 * torch.einsum("bpd,npd->bpn", qp, pbank.features)).clamp_min(0)  # (B, P, N)
    for b in range(B):
        for j in range(1, 1 + s.k):
            slot = int(sel.pos_idx[b, j])
            votes = sum(
                slot in sorted_others(stripe[b, q].tolist(), int(idx[b]))[: s.part_agreement_k] for q in range(P)
            )
            want = bool(plain.pos_mask[b, j]) and dist[b, slot] <= limit and votes >= s.part_agreement
            assert bool(sel.pos_mask[b, j]) == want
    assert (plain.pos_mask & ~sel.pos_mask).any()  # the checks dropped some


# --- the epoch's miner ----------------------------------------------------------------------------


@pytest.mark.parametrize("m", [12, None])
def test_epoch_miner_warmup(m, device):
    """Warm-up epochs: the own slot is the only positive, K + M (or all) random other slots negatives."""
    gbank, pbank, cams, anchors = data(device=device)
    s = scl(warmup_epochs=2, m=m, positive_rule="knn")
    for epoch in (0, 1):  # the training loop's generator is on the run's device
        selector = epoch_miner(s, EXACT, epoch, 5, gbank, pbank, cams, torch.Generator(device).manual_seed(0))
        assert isinstance(selector, WarmupMiner)
        sel = selector(*anchors)
        idx = anchors[3]
        assert torch.equal(sel.pos_idx, idx[:, None])
        assert sel.neg_idx.shape == (B, N - 1 if m is None else s.k + m)
        assert not (sel.neg_idx == idx[:, None]).any()
    assert not isinstance(epoch_miner(s, EXACT, 2, 5, gbank, pbank, cams, torch.Generator()), WarmupMiner)


@pytest.mark.parametrize("m", [12, None])
def test_epoch_miner_plain_knn(m, device):
    """Plain knn gives a NearestMiner whose Selection == select_neighbours on the combined distance
    with the epoch's scheduled lambda_c."""
    gbank, pbank, cams, anchors = data(seed=4, device=device)
    s = scl(m=m, lambda_c=0.2, lambda_c_start=0.0, warmup_epochs=1)
    epoch, epochs = 3, 6  # lambda_c = 0.2 * 2 / 4
    selector = epoch_miner(s, EXACT, epoch, epochs, gbank, pbank, cams, torch.Generator().manual_seed(0))
    assert isinstance(selector, NearestMiner)
    qg, qp, qc, idx = anchors
    dist = combined_distance(
        qg, qp, gbank.features, pbank.features, lambda_g=s.lambda_g, lambda_c=0.1, q_camids=qc, g_camids=cams
    )
    ref = select_neighbours(dist, idx, s.k, m)
    sel = selector(*anchors)
    assert torch.equal(sel.pos_idx, ref.pos_idx)
    assert torch.equal(sel.neg_idx, ref.neg_idx)
    assert sel.pos_mask is None or sel.pos_mask.all()


def test_epoch_miner_searches_as_the_search_section_says():
    """The paper's rule goes through the search section's backend, with scl's weights."""
    gbank, pbank, cams, anchors = data(seed=4)
    s = scl(lambda_c=0.1)
    faiss_flat = SearchConfig(backend="faiss", faiss_index="flat")
    flat = epoch_miner(s, faiss_flat, 0, 5, gbank, pbank, cams, torch.Generator())
    exact = epoch_miner(s, EXACT, 0, 5, gbank, pbank, cams, torch.Generator())
    assert isinstance(flat.searcher, FaissSearcher) and isinstance(exact.searcher, TorchSearcher)
    assert flat.searcher.distance is flat.searcher.exact.distance  # one distance object, handed down
    assert (flat.searcher.distance.lambda_g, flat.searcher.distance.lambda_c) == (s.lambda_g, 0.1)
    sel, ref = flat(*anchors), exact(*anchors)
    assert torch.equal(sel.pos_idx, ref.pos_idx) and torch.equal(sel.neg_idx, ref.neg_idx)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(positive_rule="reciprocal"),
        dict(positive_rule="cycle"),
        dict(positive_rule="jaccard"),
        dict(positive_rule="ca_jaccard"),
        dict(positive_rule="knn", camera_debias="mean"),
        dict(positive_rule="knn", pos_max_distance=1.0),
        dict(positive_rule="knn", part_agreement=2),
    ],
)
def test_epoch_miner_all_negatives_needs_plain_rule(overrides):
    """m = None (all negatives) with any rule or check beyond the paper's raises ConfigError."""
    gbank, pbank, cams, _ = data()
    s = scl(m=None, **overrides)
    with pytest.raises(ConfigError, match="scl.m"):
        epoch_miner(s, EXACT, 0, 5, gbank, pbank, cams, torch.Generator())


# --- the band, cross-camera positives and the oracle ----------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        dict(positive_rule="knn"),
        dict(positive_rule="cycle"),
        dict(positive_rule="ca_jaccard", k=3, jaccard_k1=8, jaccard_k2=3, jaccard_eps=0.9, ca_k_intra=3, ca_k_inter=8),
    ],
)
def test_negative_band_leaves_the_nearest_non_positives_alone(overrides):
    """With a band, the negatives are those of the same rule without it after its first ``band``;
    those are ``ignored``, neither positive nor negative."""
    gbank, pbank, cams, anchors = data(seed=5)
    plain = epoch_miner(scl(m=15, **overrides), EXACT, 0, 5, gbank, pbank, cams, torch.Generator())(*anchors)
    banded = epoch_miner(scl(m=12, negative_band=3, **overrides), EXACT, 0, 5, gbank, pbank, cams, torch.Generator())
    sel = banded(*anchors)
    assert torch.equal(sel.pos_idx, plain.pos_idx) and torch.equal(sel.mask(), plain.mask())
    assert torch.equal(sel.ignored, plain.neg_idx[:, :3]) and torch.equal(sel.neg_idx, plain.neg_idx[:, 3:])


def test_cross_camera_pairs_against_a_loop():
    gbank, pbank, cams, _ = data(seed=6)
    distance = SelectionDistance(gbank, pbank, cams, lambda_g=0.5, lambda_c=0.05)
    for k, quota in ((1, 1), (3, 2)):
        idx, valid = cross_camera_pairs(SlotSearch(distance), k, quota)
        assert idx.shape == valid.shape == (N, min(k, quota))
        slot = distance.to_slots(gbank.features, pbank.features, cams).tolist()  # (N, N)

        def nearest_other(i, slot=slot, k=k):
            return sorted((j for j in range(N) if cams[j] != cams[i]), key=lambda j: slot[i][j])[:k]

        for i in range(N):
            mutual = [j for j in nearest_other(i) if i in nearest_other(j)][:quota]
            assert idx[i][valid[i]].tolist() == mutual
            assert (idx[i][~valid[i]] == i).all()
        assert valid.any()


def test_cross_camera_positives_join_the_jaccard_table():
    gbank, pbank, cams, anchors = data(seed=3)
    base = dict(
        positive_rule="ca_jaccard", k=3, m=10, jaccard_k1=8, jaccard_k2=3, jaccard_eps=0.9, ca_k_intra=3, ca_k_inter=8
    )
    plain = epoch_miner(scl(**base), EXACT, 0, 5, gbank, pbank, cams, torch.Generator())
    crossed = epoch_miner(
        scl(**base, cross_camera_positives=2, cross_camera_k=3), EXACT, 0, 5, gbank, pbank, cams, torch.Generator()
    )
    sel, ref = crossed(*anchors), plain(*anchors)
    assert torch.equal(sel.pos_idx[:, :4], ref.pos_idx) and torch.equal(sel.pos_mask[:, :4], ref.pos_mask)
    extra, kept = sel.pos_idx[:, 4:], sel.pos_mask[:, 4:]
    idx = anchors[3]
    table, valid = crossed.cross
    for b in range(B):
        mine = table[idx[b]][valid[idx[b]]].tolist()
        assert all(int(cams[j]) != int(cams[idx[b]]) for j in mine)
        counted = [int(j) for j, keep in zip(extra[b], kept[b]) if keep]
        already = set(ref.pos_idx[b, 1:][ref.pos_mask[b, 1:]].tolist())
        assert counted == [j for j in mine if j not in already]  # a kept Jaccard positive is not counted twice
        assert not set(sel.neg_idx[b].tolist()) & set(sel.pos_idx[b].tolist())
    assert kept.any()


def oracle_case(mode, seed=4):
    gbank, pbank, cams, anchors = data(seed=seed)
    pids = torch.Generator().manual_seed(seed)
    pids = torch.randint(0, 8, (N,), generator=pids)
    s = scl(positive_rule="cycle", oracle=mode, m=10)
    method = SCL(s, EXACT, gbank, pbank, MemoryBank(N, (D,)), pids, cams, epochs=5)
    method.start_epoch(0, torch.Generator(), features=None, resumed=False)
    rule = SCL(scl(positive_rule="cycle", m=10), EXACT, gbank, pbank, MemoryBank(N, (D,)), pids, cams, epochs=5)
    rule.start_epoch(0, torch.Generator(), features=None, resumed=False)
    return method.miner, rule.miner, pids, anchors


@pytest.mark.parametrize("mode", ["ceiling", "positives", "negatives"])
def test_oracle_against_a_loop(mode):
    miner, rule, pids, anchors = oracle_case(mode)
    sel, ref = miner(*anchors), rule(*anchors)
    qg, qp, qc, idx = anchors
    dist = miner.distance.to_slots(qg, qp, qc).tolist()
    for b in range(B):
        me = int(idx[b])
        matches = [j for j in range(N) if j != me and pids[j] == pids[me]]
        kept = sel.pos_idx[b][sel.mask()[b]].tolist()
        if mode == "negatives":
            assert kept == ref.pos_idx[b][ref.mask()[b]].tolist()
        else:
            assert kept == [me] + matches  # every true match, none else
        negatives = sel.neg_idx[b].tolist()
        if mode == "positives":
            assert negatives == ref.neg_idx[b].tolist()
        else:
            taken = set(sel.pos_idx[b].tolist()) | set(matches)
            assert negatives == [j for j in sorted_others(dist[b], me) if j not in taken][:10]
            assert not set(negatives) & set(matches)


def test_oracle_needs_identities_and_says_so():
    from reidlib.data import ImageRecord
    from reidlib.data.records import UNKNOWN_PID

    cfg = load_config(overrides=dict(oracle="ceiling", k=2, m=3))
    unknown = [ImageRecord(f"{i}.jpg", UNKNOWN_PID, i % 2) for i in range(12)]
    with pytest.raises(ConfigError, match=r"scl.oracle='ceiling' is a supervised ceiling"):
        SCL.check(cfg, unknown)
    SCL.check(cfg, [r._replace(pid=i // 3) for i, r in enumerate(unknown)])  # identities known: fine
    with pytest.raises(ConfigError, match="scl.oracle"):
        load_config(overrides=dict(oracle="labels"))
    with pytest.raises(ConfigError, match="cross_camera_positives"):
        load_config(overrides=dict(positive_rule="knn", cross_camera_positives=1))


def test_camera_groups_against_a_loop():
    """Groups of mutual nearest within a camera; groups of other cameras linked when mutual nearest
    by their mean features; positives = the rest of the own group, then the linked groups' slots."""
    gbank, pbank, cams, anchors = data(seed=7, ids=10, noise=0.4)
    s = scl(positive_rule="camera_groups", k=5, group_intra_k=1, group_inter_k=2)
    distance = SelectionDistance(gbank, pbank, cams, lambda_g=0.5, lambda_c=0.05)
    idx, valid = camera_group_positives(distance, SlotSearch(distance), s)
    feats_g, feats_p = debiased_banks(distance)
    slot = distance.to_slots(feats_g, feats_p, cams).tolist()  # (N, N) selection distances

    def nearest(i, pool, k):
        return sorted((j for j in pool if j != i), key=lambda j: slot[i][j])[:k]

    same_cam = {i: [j for j in range(N) if cams[j] == cams[i]] for i in range(N)}
    partner = {i: nearest(i, same_cam[i], 1) for i in range(N)}
    groups = []  # mutual nearest pairs within a camera, else alone (group_intra_k 1: no chains)
    for i in range(N):
        mine = [i] + [j for j in partner[i] if i in partner[j]]
        if not any(i in g for g in groups):
            groups.append(sorted(mine))
    group_of = {i: next(n for n, g in enumerate(groups) if i in g) for i in range(N)}

    def mean(rows):
        g = F.normalize(feats_g[rows].sum(0), dim=-1)
        p = F.normalize(feats_p[rows].sum(0), dim=-1)
        return g, p

    means = [mean(g) for g in groups]
    gcam = [int(cams[g[0]]) for g in groups]

    def gdist(a, b):
        (ga, pa), (gb, pb) = means[a], means[b]
        return 0.5 * ((ga - gb) ** 2).sum().item() + 0.5 / P * ((pa - pb) ** 2).sum().item()

    def nearest_groups(a):
        others = [b for b in range(len(groups)) if gcam[b] != gcam[a]]
        return sorted(others, key=lambda b: gdist(a, b))[:2]

    for i in range(N):
        a = group_of[i]
        linked = [b for b in nearest_groups(a) if a in nearest_groups(b)]
        want = [j for j in groups[a] if j != i] + [j for b in linked for j in groups[b]]
        assert idx[i][valid[i]].tolist() == want[: s.k], i
        assert (idx[i][~valid[i]] == i).all()
    assert valid.any() and (cams[idx][valid] != cams[torch.arange(N)[:, None].expand_as(idx)][valid]).any()


def test_mutual_groups_are_the_components():
    from reidlib.neighbours.graph import mutual_groups

    # 0-1 mutual, 1-2 mutual (k=2), 3 alone, 4-5 mutual: components {0,1,2}, {3}, {4,5}
    ranking = torch.tensor([[0, 1, 3], [1, 0, 2], [2, 1, 0], [3, 2, 5], [4, 5, 0], [5, 4, 1]])
    assert mutual_groups(ranking, 2).tolist() == [0, 0, 0, 1, 2, 2]
    assert mutual_groups(ranking, 1).tolist() == [0, 0, 1, 2, 3, 3]
