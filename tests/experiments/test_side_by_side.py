"""The methods side by side: arms that share everything but the method, a tiny grid of all three,
label quality per method, the protocol's ranking against a loop, and the same queries under each."""

from pathlib import Path

import matplotlib
import numpy as np
import pytest

from reidlib.config import apply_overrides, load_config
from reidlib.errors import RunDirError
from reidlib.evaluation.evaluator import eval_lambda_g
from reidlib.evaluation.protocol import protocol_ranking
from reidlib.experiments.grid import CEILING, slug, summarize
from reidlib.experiments.side_by_side import (
    CLUSTER_CONTRAST,
    METHOD_ARMS,
    SCL,
    UNTRAINED,
    complete_datasets,
    label_curves,
    run_methods,
    same_queries,
)
from reidlib.reports import analysis
from reidlib.reports.figures import methods_retrieval_grid
from reidlib.utils import runs
from tests.helpers import ROOT, tiny_cfg

matplotlib.use("Agg")
# clustering settings that give the tiny set's 59 images several clusters
# (tests/methods/cluster_contrast/test_cluster_contrast.py)
TINY_CLUSTERS = {"cluster_eps": 0.5, "cluster_k1": 8, "cluster_k2": 3, "min_samples": 3}


def test_arms_share_backbone_input_and_budget():
    base = load_config(ROOT / "configs" / "real-cpu.yaml")
    cfgs = {arm.name: apply_overrides(base, arm.overrides) for arm in METHOD_ARMS}
    assert len({slug(name) for name in cfgs}) == len(METHOD_ARMS) == 4
    for cfg in cfgs.values():
        assert cfg.data == base.data and cfg.model == base.model
        assert cfg.eval.flip_test == base.eval.flip_test  # the same test-time choices
    scl, cc, untrained = cfgs[SCL], cfgs[CLUSTER_CONTRAST], cfgs[UNTRAINED]
    assert scl == base and untrained == apply_overrides(base, {"epochs": 0})
    assert cc.train == apply_overrides(base, {"method": "cluster_contrast"}).train  # same epochs, batch, lr
    assert cc.cluster.cluster_iters == 0  # an epoch of as many steps as SCL's
    assert eval_lambda_g(cc) == 1.0 and eval_lambda_g(scl) == eval_lambda_g(base)  # cc: the global feature it trains
    published = load_config(ROOT / "configs" / "cluster-contrast-cpu.yaml")
    assert cc.cluster == published.cluster
    ceiling = cfgs[CEILING.name]  # the yardstick: the recipe with the identities choosing, no band
    assert ceiling == apply_overrides(base, {"oracle": "ceiling", "negative_band": 0})


def _naive_ranking(distmat, q_pids, q_camids, g_pids, g_camids, top):
    ranked, first = [], []
    for i in range(len(distmat)):
        kept = [
            g
            for g in np.argsort(distmat[i], kind="stable")
            if not (g_pids[g] == q_pids[i] and g_camids[g] == q_camids[i])
        ]
        ranked.append(kept[:top])
        hits = [r for r, g in enumerate(kept, start=1) if g_pids[g] == q_pids[i]]
        first.append(hits[0] if hits else 0)
    return np.array(ranked), np.array(first)


def test_protocol_ranking_matches_a_loop():
    rng = np.random.default_rng(0)
    q_pids, q_camids = rng.integers(1, 4, 7), rng.integers(0, 2, 7)
    g_pids, g_camids = rng.integers(0, 4, 30), rng.integers(0, 2, 30)
    q_pids[0] = 9  # no true match anywhere
    distmat = rng.random((7, 30))
    got = protocol_ranking(distmat, q_pids, q_camids, g_pids, g_camids, top=5)
    want = _naive_ranking(distmat, q_pids, q_camids, g_pids, g_camids, top=5)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert got[1][0] == 0


@pytest.fixture(scope="module")
def tiny_grid(tiny_synthetic, tmp_path_factory):
    base = tiny_cfg(tiny_synthetic, epochs=2, warmup_epochs=1, **TINY_CLUSTERS)
    out = tmp_path_factory.mktemp("methods")
    return run_methods(base, out, {"tiny": str(tiny_synthetic)}, [0]), out


def test_tiny_grid_rows(tiny_grid):
    rows, out = tiny_grid
    by_arm = {row["arm"]: row for row in rows}
    assert [row["arm"] for row in rows] == [arm.name for arm in METHOD_ARMS]
    assert all(row["status"] == "done" and row["dataset"] == "tiny" and row["seed"] == 0 for row in rows)
    assert by_arm[CLUSTER_CONTRAST]["run_dir"] == str(out / "cluster-contrast-published-settings" / "tiny" / "seed-0")
    assert [by_arm[name]["method"] for name in (UNTRAINED, SCL, CLUSTER_CONTRAST)] == ["scl", "scl", "cluster_contrast"]
    untrained = by_arm[UNTRAINED]
    assert untrained["minutes"] == 0.0 and untrained["final_precision"] is None
    for name, key in ((SCL, "pos_precision"), (CLUSTER_CONTRAST, "pair_precision")):
        last = runs.read_jsonl(Path(by_arm[name]["run_dir"]) / runs.METRICS_LOG)[-1]
        assert by_arm[name]["final_precision"] == last[key] and by_arm[name]["minutes"] > 0
    assert {s["arm"] for s in summarize(rows)} == {arm.name for arm in METHOD_ARMS}
    cc_cfg = runs.read_run_config(Path(by_arm[CLUSTER_CONTRAST]["run_dir"]))
    assert (
        cc_cfg.train.method == "cluster_contrast" and eval_lambda_g(cc_cfg) == 1.0 and cc_cfg.cluster.num_instances == 4
    )


def test_label_curves_per_method(tiny_grid, tiny_synthetic):
    rows, _ = tiny_grid
    curves = label_curves(rows)
    assert {c["arm"] for c in curves} == {SCL, CLUSTER_CONTRAST, CEILING.name}  # the untrained run has no epoch
    by_arm = {row["arm"]: row for row in rows}
    for name, keys in ((SCL, ("pos_precision", "pos_recall")), (CLUSTER_CONTRAST, ("pair_precision", "pair_recall"))):
        logged = runs.read_jsonl(Path(by_arm[name]["run_dir"]) / runs.METRICS_LOG)
        mine = [c for c in curves if c["arm"] == name]
        assert [c["epoch"] for c in mine] == [1, 2]
        assert [(c["precision"], c["recall"]) for c in mine] == [(e[keys[0]], e[keys[1]]) for e in logged]
        assert mine[-1]["minutes"] == pytest.approx(sum(e["seconds"] for e in logged) / 60)
    scl = [c for c in curves if c["arm"] == SCL]
    assert scl[0]["precision"] is None and 0.0 <= scl[1]["precision"] <= 1.0  # warm-up, then positives
    assert all(c[key] is None for c in scl for key in ("clusters", "outlier_share", "largest_cluster", "largest_share"))
    num_train = len(list((tiny_synthetic / "bounding_box_train").glob("*.jpg")))
    for c in (c for c in curves if c["arm"] == CLUSTER_CONTRAST):
        assert c["method"] == "cluster_contrast" and c["clusters"] >= 1 and 0.0 <= c["outlier_share"] < 1.0
        assert c["largest_share"] == pytest.approx(c["largest_cluster"] / num_train)
        assert 0.0 <= c["precision"] <= 1.0 and -1.0 <= c["cluster_ari"] <= 1.0


def test_same_queries_under_each_arm(tiny_grid):
    rows, _ = tiny_grid
    assert complete_datasets(rows, seed=0) == ["tiny"] and complete_datasets(rows, seed=1) == []
    grid = same_queries(rows, "tiny", 0, num_queries=3, top=5, draw_seed=1)
    assert set(grid.ranked) == set(grid.first_match) == {arm.name for arm in METHOD_ARMS}
    assert len(grid.query["paths"]) == 3
    again = same_queries(rows, "tiny", 0, num_queries=3, top=5, draw_seed=1)  # a seeded draw
    assert again.query["paths"].tolist() == grid.query["paths"].tolist()
    by_arm = {row["arm"]: row for row in rows}
    for arm in METHOD_ARMS:
        feats = analysis.load_test_features(by_arm[arm.name]["run_dir"])
        q = feats["is_query"]
        rows_q = [int(np.flatnonzero(feats["paths"][q] == path)[0]) for path in grid.query["paths"]]
        lambda_g = 1.0 if arm.name == CLUSTER_CONTRAST else 0.5
        distmat = analysis.test_set_distance(feats, lambda_g)[np.ix_(q, ~q)][
            rows_q
        ]  # the analysis' distance, all pairs
        q_pids, q_camids = feats["pids"][q][rows_q], feats["camids"][q][rows_q]
        want = _naive_ranking(distmat, q_pids, q_camids, feats["pids"][~q], feats["camids"][~q], 5)
        np.testing.assert_array_equal(grid.ranked[arm.name], want[0])
        assert (grid.first_match[arm.name] >= 1).all()  # every drawn query has a match in another camera
    fig = methods_retrieval_grid(grid.query, grid.gallery, grid.ranked, grid.first_match)
    axes = np.array(fig.axes).reshape(3 * len(METHOD_ARMS), 6)  # queries x methods, the query and its top 5
    assert axes[1, 0].get_ylabel().replace("\n", " ").startswith("SCL: the CPU recipe")  # query 1, second method
    g = grid.ranked[SCL][0, 0]
    colour = "limegreen" if grid.gallery["pids"][g] == grid.query["pids"][0] else "red"
    assert matplotlib.colors.same_color(axes[1, 1].spines["top"].get_edgecolor(), colour)
    with pytest.raises(RunDirError, match="no finished run"):
        same_queries([r for r in rows if r["arm"] != SCL], "tiny", 0)
