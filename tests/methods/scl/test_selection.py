"""Selection against a naive loop: column 0 is the anchor, the anchor is never a negative."""

import pytest
import torch

from reidlib.errors import ConfigError
from reidlib.methods.scl.selection import check_counts, select_neighbours, select_random


def naive_select(dist, self_idx, k, m):
    pos, neg = [], []
    for i in range(dist.shape[0]):
        order = sorted((j for j in range(dist.shape[1]) if j != self_idx[i]), key=lambda j: dist[i, j])
        pos.append([int(self_idx[i])] + order[:k])
        neg.append(order[k:] if m is None else order[k : k + m])
    return torch.tensor(pos), torch.tensor(neg)


@pytest.mark.parametrize("k,m", [(3, 5), (0, 4), (2, 0), (4, None), (0, None)])
def test_matches_naive_loop(k, m):
    g = torch.Generator().manual_seed(1)
    dist = torch.rand(6, 25, generator=g)  # continuous values: no ties
    self_idx = torch.tensor([0, 3, 7, 24, 11, 3])
    sel = select_neighbours(dist, self_idx, k, m)
    pos, neg = naive_select(dist, self_idx, k, m)
    assert torch.equal(sel.pos_idx, pos)
    assert torch.equal(sel.neg_idx, neg)
    assert torch.equal(sel.pos_idx[:, 0], self_idx)
    assert not (sel.neg_idx == self_idx[:, None]).any()


def test_anchor_excluded_even_when_nearest_is_elsewhere():
    dist = torch.tensor([[0.0, 0.1, 0.2, 0.3, 0.4]])
    sel = select_neighbours(dist, torch.tensor([2]), k=1, m=2)
    assert sel.pos_idx.tolist() == [[2, 0]]
    assert sel.neg_idx.tolist() == [[1, 3]]


def test_camera_penalty_reorders():
    # Slot 1 is nearest but shares the anchor's camera; a penalty larger than the gap sends it back.
    from reidlib.distances import combined_distance

    q_g = torch.tensor([[1.0, 0.0]])
    q_p = q_g.view(1, 1, 2)
    bank_g = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.1], [1.0, 0.2], [0.0, 1.0]]), dim=1)
    bank_p = bank_g.view(4, 1, 2)
    cams_q, cams_bank = torch.tensor([0]), torch.tensor([0, 0, 1, 1])
    kw = dict(lambda_g=0.5, q_camids=cams_q, g_camids=cams_bank)
    plain = select_neighbours(combined_distance(q_g, q_p, bank_g, bank_p, lambda_c=0.0, **kw), torch.tensor([0]), 1, 1)
    cross = select_neighbours(combined_distance(q_g, q_p, bank_g, bank_p, lambda_c=0.5, **kw), torch.tensor([0]), 1, 1)
    assert plain.pos_idx.tolist() == [[0, 1]]
    assert cross.pos_idx.tolist() == [[0, 2]]  # the other camera's look-alike comes first
    assert cross.neg_idx.tolist() == [[1]]


def test_too_many_requested():
    """One check, one error: it names the keys and a value that fits the bank."""
    with pytest.raises(ConfigError, match=r"scl\.k \+ scl\.m = 5 must be at most 4.*--set m=1"):
        select_neighbours(torch.rand(2, 5), torch.tensor([0, 1]), k=3, m=2)
    with pytest.raises(ConfigError, match=r"--set k=2 m=2"):
        check_counts(5, 7, 0)
    with pytest.raises(ConfigError, match=r"must be >= 0"):
        check_counts(5, -1, 2)
    check_counts(5, 3, 1)  # 4 = N - 1 fits


def test_random_selection():
    g = torch.Generator().manual_seed(0)
    self_idx = torch.tensor([0, 5, 9, 9])
    sel = select_random(self_idx, 10, 6, generator=g)
    assert sel.pos_idx.tolist() == [[0], [5], [9], [9]]
    assert sel.neg_idx.shape == (4, 6)
    assert not (sel.neg_idx == self_idx[:, None]).any()
    for row in sel.neg_idx:  # without replacement
        assert len(set(row.tolist())) == 6
    again = select_random(self_idx, 10, 6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sel.neg_idx, again.neg_idx)
    every = select_random(self_idx, 10, None)
    assert sorted(every.neg_idx[1].tolist()) == [j for j in range(10) if j != 5]
