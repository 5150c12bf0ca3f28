"""The per-epoch graph's search (reidlib.neighbours.slot_search): every faiss backend against the
exact rankings of reidlib.neighbours.graph, on clustered banks with unbalanced cameras."""

import pytest
import torch
import torch.nn.functional as F

from reidlib.config import SCLConfig, SearchConfig
from reidlib.errors import ConfigError
from reidlib.methods.scl.tables import positive_table
from reidlib.neighbours import graph, slot_search
from reidlib.neighbours.faiss_index import embed
from reidlib.neighbours.selection_distance import SelectionDistance
from reidlib.neighbours.slot_search import AUTO_GRAPH_MIN_SLOTS, SlotSearch, make_slot_search, slot_vectors

pytest.importorskip("faiss")
torch.set_num_threads(1)
D, P = 32, 4


def clustered_distance(n=300, ids=40, cams=(0.6, 0.3, 0.1), noise=0.5, lambda_c=0.2, debias="mean", seed=0):
    """A SelectionDistance over ``n`` slots of ``ids`` identities, cameras drawn with the shares ``cams``."""
    g = torch.Generator().manual_seed(seed)
    pid = torch.randint(0, ids, (n,), generator=g)
    cam = torch.multinomial(torch.tensor(cams), n, replacement=True, generator=g)
    shift = 0.3 * torch.randn(len(cams), D, generator=g)
    glob = F.normalize(
        torch.randn(ids, D, generator=g)[pid] + shift[cam] + noise * torch.randn(n, D, generator=g), dim=-1
    )
    parts = F.normalize(
        torch.randn(ids, P, D // P, generator=g)[pid] + noise * torch.randn(n, P, D // P, generator=g), dim=-1
    )
    return SelectionDistance(glob, parts, cam, lambda_g=0.5, lambda_c=lambda_c, debias=debias)


@pytest.mark.parametrize("cameras", ["all", "same", "other"])
@pytest.mark.parametrize("debias", ["none", "mean"])
def test_flat_rankings_are_the_exact_ones(cameras, debias):
    distance = clustered_distance(debias=debias)
    exact_idx, exact_dist = SlotSearch(distance, "exact").ranking(12, cameras)
    idx, dist = SlotSearch(distance, "flat").ranking(12, cameras)
    assert idx.shape == exact_idx.shape == (300, 13)
    torch.testing.assert_close(dist, exact_dist, atol=1e-4, rtol=0)
    # the same slots wherever the distances are not tied; padding (-1 at inf) in the same places
    assert (idx == exact_idx).float().mean() > 0.99
    assert torch.equal(idx < 0, exact_idx < 0)
    assert torch.equal(idx[:, 0], torch.arange(300))


def test_the_camera_rules_hold_for_every_backend():
    distance = clustered_distance(n=2_400, cams=(0.5, 0.5))  # 1,200 a camera: the indexes are approximate
    cams = distance.camids
    for index in ("flat", "ivf", "ivf_sq8", "hnsw"):
        search = SlotSearch(distance, index)
        same, _ = search.ranking(5, "same")
        other, _ = search.ranking(5, "other")
        assert (cams[same[:, 1:]] == cams[:, None]).all(), index
        assert (cams[other[:, 1:]] != cams[:, None]).all(), index


@pytest.mark.parametrize("index", ["ivf", "ivf_sq8", "hnsw"])
def test_approximate_rankings_find_most_exact_neighbours(index):
    distance = clustered_distance(n=2_400, ids=300, cams=(0.5, 0.5))
    exact_idx, _ = SlotSearch(distance, "exact").ranking(20, "all")
    idx, dist = SlotSearch(distance, index).ranking(20, "all")
    hits = (idx[:, 1:, None] == exact_idx[:, None, 1:]).any(-1).float().mean()
    assert hits > 0.9, f"{index}: recall of the exact 20 nearest {hits:.3f}"
    assert (dist[:, 1:].diff(dim=1) >= 0).all()  # re-ranked: nearest first
    # re-ranked on the full embedding: each found slot at its exact distance, whatever the codes
    exact_dist = graph.set_distances(distance.slot_rows(), idx[:, 1:])
    torch.testing.assert_close(dist[:, 1:], exact_dist, atol=1e-4, rtol=0)


def test_8_bit_codes_visiting_every_cell_find_the_exact_rankings():
    distance = clustered_distance(n=2_400, ids=300, cams=(0.5, 0.5))
    exact_idx, exact_dist = SlotSearch(distance, "exact").ranking(10, "other")
    idx, dist = SlotSearch(distance, "ivf_sq8", nprobe=10_000).ranking(10, "other")
    assert (idx == exact_idx).float().mean() > 0.99  # the codes' error is within the re-ranked candidates
    torch.testing.assert_close(dist, exact_dist, atol=1e-4, rtol=0)


def test_pair_distances_match_the_dense_rows():
    distance = clustered_distance()
    ranking, _ = SlotSearch(distance, "exact").ranking(10)
    expected = graph.set_distances(distance.slot_rows(), ranking)
    torch.testing.assert_close(SlotSearch(distance, "hnsw").pair_distances(ranking), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("rule", ["ca_jaccard", "camera_groups"])
def test_positive_tables_through_the_flat_index_are_the_exact_ones(rule):
    distance = clustered_distance()
    cfg = SCLConfig(positive_rule=rule, camera_debias="mean", k=7)
    exact_idx, exact_valid = positive_table(distance, SlotSearch(distance, "exact"), cfg)
    idx, valid = positive_table(distance, SlotSearch(distance, "flat"), cfg)
    assert valid.sum() == exact_valid.sum() > 0
    # the same positives (equal distances may come in either order)
    same = (idx[:, :, None] == exact_idx[:, None, :]).any(-1) | ~valid
    assert same.float().mean() > 0.99


def test_the_config_chooses_the_backend():
    small = clustered_distance()
    assert make_slot_search(SearchConfig(backend="auto"), small).index == "exact"
    assert make_slot_search(SearchConfig(backend="torch"), small).index == "exact"
    assert make_slot_search(SearchConfig(backend="faiss", graph_index="ivf"), small).index == "ivf"
    assert AUTO_GRAPH_MIN_SLOTS > len(small)
    with pytest.raises(ConfigError, match="search.graph_index"):
        SearchConfig(graph_index="annoy").check()
    with pytest.raises(ConfigError, match="search.graph_index"):
        SlotSearch(small, "annoy")


@pytest.mark.parametrize("cameras", ["same", "other"])
def test_some_slots_nearest_are_the_whole_rankings_rows(cameras):
    """nearest_to (a benchmark's sample) finds for given slots what the epoch's ranking lists."""
    distance = clustered_distance(n=2_400, cams=(0.5, 0.3, 0.2))
    search = SlotSearch(distance, "ivf")
    rows = torch.tensor([5, 17, 1_200, 2_399, 3])
    idx, dist = search.nearest_to(rows, cameras, 8)
    whole, whole_dist = search.ranking(8, cameras)
    assert torch.equal(idx, whole[rows, 1:])
    torch.testing.assert_close(dist + (distance.lambda_c if cameras == "same" else 0.0), whole_dist[rows, 1:])
    with pytest.raises(ConfigError, match="exact backend"):
        SlotSearch(distance, "exact").nearest_to(rows, cameras, 8)


def test_the_index_can_be_forced_on_a_small_camera():
    """A camera below search.graph_exact_below is searched exactly; 0 puts the index on every
    camera, so the approximate graph can be trained at a small set's size."""
    distance = clustered_distance(n=600, ids=80, cams=(0.5, 0.5))  # 300 slots a camera
    exact_idx, _ = SlotSearch(distance, "exact").ranking(10)
    by_default = make_slot_search(SearchConfig(backend="faiss", graph_index="hnsw"), distance)
    forced = make_slot_search(SearchConfig(backend="faiss", graph_index="hnsw", graph_exact_below=0), distance)
    assert by_default.exact == [True, True] and forced.exact == [False, False]
    assert torch.equal(by_default.ranking(10)[0][:, 1:].sort(1).values, exact_idx[:, 1:].sort(1).values)
    hits = (forced.ranking(10)[0][:, 1:, None] == exact_idx[:, None, 1:]).any(-1).float().mean()
    assert 0.8 < hits, f"recall of the exact 10 nearest through a forced HNSW {hits:.3f}"
    assert forced.over(distance, stripe=1).exact == [False]  # the stripe lists follow the setting
    with pytest.raises(ConfigError, match="search.graph_exact_below"):
        SearchConfig(graph_exact_below=-1).check()


def test_vectors_are_embedded_a_block_at_a_time(monkeypatch):
    """The blocks change nothing: the whole banks' embedding, and each stripe as the distance sees it."""
    distance = clustered_distance(n=300)
    g, p, _ = distance.slots(slice(None))
    monkeypatch.setattr(slot_search, "VECTOR_BLOCK", 64)
    assert torch.equal(slot_vectors(distance), embed(g, p, None, lambda_g=distance.lambda_g))
    assert torch.equal(slot_vectors(distance, stripe=2), p[:, 2])


def test_a_stripe_search_has_no_camera_term():
    distance = clustered_distance(n=300)
    search = SlotSearch(distance, "flat", stripe=1)
    idx, dist = search.ranking(5)
    stripe = distance.slots(slice(None))[1][:, 1]  # (N, d)
    expected = (2 - 2 * stripe @ stripe.T).clamp_min(0).fill_diagonal_(float("inf")).topk(5, largest=False)
    torch.testing.assert_close(dist[:, 1:], expected.values, atol=1e-5, rtol=0)
    assert (idx[:, 1:] == expected.indices).float().mean() > 0.99
