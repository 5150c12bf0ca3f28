"""The selection diagnostics against loops over anchors and their true matches, one by one."""

import pytest
import torch

from reidlib.methods.scl.diagnostics import IdentityTable, SelectionStats
from reidlib.methods.scl.selection import Selection


def test_identity_table_lists_each_slots_true_matches():
    pids = torch.tensor([3, 1, 3, 7, 1, 3, 9])
    table = IdentityTable.build(pids)
    assert table.slots.shape == (7, 3)  # identity 3 holds three slots
    for i in range(len(pids)):
        got = sorted(table.slots[i][table.valid[i]].tolist())
        assert got == [j for j in range(len(pids)) if j != i and pids[j] == pids[i]]
    assert not table.valid[6].any()  # alone in its identity


def random_step(seed=0, n=30, b=6, k=4, m=5, band=3):
    g = torch.Generator().manual_seed(seed)
    pids = torch.randint(0, 6, (n,), generator=g)
    cams = torch.randint(0, 2, (n,), generator=g)
    idx = torch.randperm(n, generator=g)[:b]
    order = torch.stack([torch.randperm(n, generator=g) for _ in range(b)])
    order = torch.stack([row[row != i][: k + band + m] for row, i in zip(order, idx)])
    pos = torch.cat([idx[:, None], order[:, :k]], 1)
    mask = torch.rand(b, 1 + k, generator=g) > 0.4
    mask[:, 0] = True
    sel = Selection(pos, order[:, k + band :], mask, order[:, k : k + band] if band else None)
    return sel, idx, pids, cams


@pytest.mark.parametrize("band", [0, 3])
def test_stats_against_a_loop(band):
    """Precision, recall, cross-camera precision and recall, positives per anchor, false negatives by
    camera and where each true match sits, counted one by one."""
    sel, idx, pids, cams = random_step(band=band)
    stats = SelectionStats()
    stats.add(sel, idx, IdentityTable.build(pids), cams)
    b, k = sel.pos_idx.shape[0], sel.pos_idx.shape[1] - 1
    true = kept = cross = cross_true = total = cross_total = 0
    places = {"kept": 0, "left alone": 0, "negative": 0, "beyond": 0}
    neg_same = neg_other = 0
    for r in range(b):
        me = int(idx[r])
        matches = [j for j in range(len(pids)) if j != me and pids[j] == pids[me]]
        total += len(matches)
        cross_total += sum(cams[j] != cams[me] for j in matches)
        kept_cols = [int(sel.pos_idx[r, j]) for j in range(1, 1 + k) if sel.pos_mask[r, j]]
        dropped = [int(sel.pos_idx[r, j]) for j in range(1, 1 + k) if not sel.pos_mask[r, j]]
        band_cols = [] if sel.ignored is None else sel.ignored[r].tolist()
        negatives = sel.neg_idx[r].tolist()
        for slot in kept_cols:
            kept += 1
            same_id = bool(pids[slot] == pids[me])
            true += same_id
            if cams[slot] != cams[me]:
                cross += 1
                cross_true += same_id
        for t in matches:
            if t in kept_cols:
                places["kept"] += 1
            elif t in dropped or t in band_cols:
                places["left alone"] += 1
            elif t in negatives:
                places["negative"] += 1
                neg_same += bool(cams[t] == cams[me])
                neg_other += bool(cams[t] != cams[me])
            else:
                places["beyond"] += 1
    got = stats.summary()
    assert got["pos_precision"] == pytest.approx(true / kept)
    assert got["pos_recall"] == pytest.approx(true / total)
    assert got["pos_cross_camera_precision"] == pytest.approx(cross_true / cross)
    assert got["pos_cross_camera_recall"] == pytest.approx(cross_true / cross_total)
    assert got["pos_per_anchor"] == pytest.approx(kept / b)
    assert got["neg_false_same_camera_per_anchor"] == pytest.approx(neg_same / b)
    assert got["neg_false_other_camera_per_anchor"] == pytest.approx(neg_other / b)
    assert got["neg_false_per_anchor"] == pytest.approx((neg_same + neg_other) / b)
    for key, name in (
        ("true_kept", "kept"),
        ("true_left_alone", "left alone"),
        ("true_negative", "negative"),
        ("true_beyond", "beyond"),
    ):
        assert got[key] == pytest.approx(places[name] / total), key
    assert sum(got[key] for key in ("true_kept", "true_left_alone", "true_negative", "true_beyond")) == pytest.approx(1)
    assert band == 0 or places["left alone"] > 0  # the band holds some true matches here


def test_warmup_and_unknown_identities():
    sel, idx, pids, cams = random_step()
    warm = SelectionStats()
    warm.add(Selection(idx[:, None], sel.neg_idx), idx, IdentityTable.build(pids), cams)
    assert warm.summary()["pos_recall"] is None and warm.summary()["pos_per_anchor"] is None
    unknown = SelectionStats()
    unknown.add(sel, idx, None, cams)
    got = unknown.summary(identities=False)
    assert got["pos_precision"] is None and got["true_kept"] is None and got["pos_per_anchor"] is not None


def test_sums_survive_the_tensor_round_trip_and_older_checkpoints():
    sel, idx, pids, cams = random_step()
    stats = SelectionStats()
    stats.add(sel, idx, IdentityTable.build(pids), cams)
    assert SelectionStats.from_tensor(stats.as_tensor()) == stats
    old = SelectionStats.from_tensor(stats.as_tensor()[:10])  # saved before the gap figures existed
    assert old.anchors == stats.anchors and old.cross_total == 0
