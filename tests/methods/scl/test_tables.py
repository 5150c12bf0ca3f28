"""The per-epoch positive tables (reidlib.methods.scl.tables): the groups filled from CA-Jaccard."""

import pytest
import torch

from reidlib.config import load_config
from reidlib.errors import ConfigError
from reidlib.methods.scl.tables import (
    camera_group_positives,
    fill_table,
    first_valid,
    jaccard_positives,
    positive_table,
)
from reidlib.neighbours.selection_distance import SelectionDistance
from reidlib.neighbours.slot_search import SlotSearch
from tests.helpers import clustered_features

torch.set_num_threads(1)


def test_fill_table_keeps_the_first_then_adds_what_it_lacks():
    first = (torch.tensor([[1, 2, 0], [0, 1, 1]]), torch.tensor([[True, True, False], [True, False, False]]))
    then = (torch.tensor([[2, 3, 4], [2, 1, 1]]), torch.tensor([[True, True, True], [True, False, False]]))
    idx, ok = fill_table(first, then, 4)
    assert idx[0].tolist() == [1, 2, 3, 4] and ok[0].all()  # 2 is held once
    assert idx[1][ok[1]].tolist() == [0, 2] and (idx[1][~ok[1]] == 1).all()  # row 1: its own slot pads
    idx, ok = fill_table(first, then, 2)  # the first table's entries come first
    assert idx.tolist() == [[1, 2], [0, 2]] and ok.all()


def test_first_valid_pads_short_tables_with_the_own_slot():
    idx, ok = first_valid(torch.tensor([[5, -1], [-1, -1]]), torch.tensor([[True, False], [False, False]]), 3)
    assert idx.tolist() == [[5, 0, 0], [1, 1, 1]]
    assert ok.tolist() == [[True, False, False], [False, False, False]]


def test_group_fill_is_the_groups_then_the_ca_jaccard_positives():
    g, p, cams = clustered_features(60, 10, 16, 4, 3, seed=3)
    g, p = torch.nn.functional.normalize(g, dim=-1), torch.nn.functional.normalize(p, dim=-1)
    distance = SelectionDistance(g, p, cams, lambda_g=0.5, lambda_c=0.1)
    search = SlotSearch(distance)
    s = load_config(None, dict(positive_rule="camera_groups", group_fill="ca_jaccard", k=6)).scl
    idx, ok = positive_table(distance, search, s)
    groups_idx, groups_ok = camera_group_positives(distance, search, s)
    jac_idx, jac_ok = jaccard_positives(search, load_config(None, dict(positive_rule="ca_jaccard", k=6)).scl)
    added = 0
    for i in range(len(cams)):
        groups = groups_idx[i][groups_ok[i]].tolist()
        jaccard = [j for j in jac_idx[i][jac_ok[i]].tolist() if j not in groups]
        assert idx[i][ok[i]].tolist() == (groups + jaccard)[: s.k], i
        assert (idx[i][~ok[i]] == i).all()
        added += len((groups + jaccard)[: s.k]) - len(groups)
    assert added > 0  # the fill adds positives here, so the test could fail


def test_group_fill_goes_with_camera_groups_only():
    with pytest.raises(ConfigError, match=r"scl.group_fill.*camera_groups, not 'ca_jaccard'"):
        load_config(None, dict(positive_rule="ca_jaccard", group_fill="ca_jaccard"))
    with pytest.raises(ConfigError, match="scl.group_fill"):
        load_config(None, dict(positive_rule="camera_groups", group_fill="jaccard"))
