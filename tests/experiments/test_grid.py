"""The beyond-the-paper grid: arms by name, closed-form summaries and verdicts, the run-dir layout,
and finished runs read instead of retrained."""

import math
from pathlib import Path

import pytest

from reidlib.config import apply_overrides, field_index, load_config
from reidlib.engine import trainer
from reidlib.errors import ConfigError
from reidlib.experiments import grid
from reidlib.experiments.ablations import ARMS, CLAIMS, claim_verdict
from reidlib.experiments.beyond import BEYOND_ARMS, RECIPE
from reidlib.experiments.grid import (
    CEILING,
    CURVE_FIGURES,
    compare,
    epoch_curves,
    parse_datasets,
    parse_seeds,
    plus_minus,
    run_grid,
    select_arms,
    share_of_ceiling,
    slug,
    summarize,
    verdict,
)
from reidlib.utils import runs
from tests.helpers import ROOT

# --- arms ---------------------------------------------------------------------------------------


def test_arm_names_and_slugs_are_unique():
    for arms in (BEYOND_ARMS, ARMS):
        names = [arm.name for arm in arms]
        assert len(set(names)) == len(names)
        assert len({slug(name) for name in names}) == len(names)  # one run dir per arm


def test_arm_overrides_are_valid_config_keys_and_values():
    base = load_config(ROOT / "configs" / "real-cpu.yaml")
    for arm in BEYOND_ARMS:
        assert set(arm.overrides) <= set(field_index()), arm.name
        changed = apply_overrides(base, arm.overrides)  # raises on an out-of-range value
        assert (changed == base) == (arm.name == RECIPE), f"{arm.name}: every arm but the recipe changes it"
    assert RECIPE in {arm.name for arm in BEYOND_ARMS}


def test_claims_name_existing_arms():
    names = {arm.name for arm in ARMS}
    for first, second in CLAIMS.values():
        assert {first, second} <= names and first != second


def test_select_arms_by_name_or_slug():
    assert select_arms("all", BEYOND_ARMS) == BEYOND_ARMS
    chosen = select_arms(
        "kNN + cycle check (adaptive k),recipe-camera-groups-band-20-camera-debias, jaccard", BEYOND_ARMS
    )
    assert [arm.name for arm in chosen] == ["kNN + cycle check (adaptive k)", RECIPE, "Jaccard"]
    assert [arm.name for arm in select_arms("Jaccard,jaccard", BEYOND_ARMS)] == ["Jaccard"]
    with pytest.raises(ConfigError, match="unknown"):
        select_arms("k-nearest", BEYOND_ARMS)


def test_parse_datasets_and_seeds():
    assert parse_datasets("a:data/a, b_2=../x/b") == {"a": "data/a", "b_2": "../x/b"}
    for bad in ("", "a", "a:x,a:y", "a b:x"):
        with pytest.raises(ConfigError):
            parse_datasets(bad)
    assert parse_seeds("0,1,2") == [0, 1, 2] and parse_seeds(3) == [3] and parse_seeds([4, 5]) == [4, 5]
    with pytest.raises(ConfigError):
        parse_seeds("0,one")


# --- verdicts and summaries ---------------------------------------------------------------------


def test_verdict_against_the_larger_std():
    assert verdict(0.50, 0.02, 0.40, 0.05) == "better"  # gap 0.10 > 0.05
    assert verdict(0.40, 0.05, 0.50, 0.02) == "worse"
    assert verdict(0.50, 0.02, 0.46, 0.05) == "within noise"  # gap 0.04 < 0.05
    assert verdict(0.50, 0.10, 0.40, 0.0) == "within noise"  # gap == the larger std: not larger
    for unknown in (None, math.nan):  # one seed: the spread is unknown
        assert verdict(0.9, unknown, 0.1, 0.01) == "within noise"
        assert verdict(0.9, 0.01, 0.1, unknown) == "within noise"
    assert [
        claim_verdict(0.5, 0.0, 0.4, 0.0),
        claim_verdict(0.4, 0.0, 0.5, 0.0),
        claim_verdict(0.4, 0.0, 0.4, 0.0),
    ] == [
        "held",
        "reversed",
        "within noise",
    ]


def _row(arm, dataset, seed, mAP, precision=0.5, minutes=2.0):
    return {
        "arm": arm,
        "dataset": dataset,
        "seed": seed,
        "mAP": mAP,
        "rank1": mAP + 0.1,
        "final_precision": precision,
        "minutes": minutes,
    }


ROWS = [
    _row("A", "x", 0, 0.1, minutes=1.0),
    _row("A", "x", 1, 0.2, minutes=2.0),
    _row("A", "x", 2, 0.3, minutes=6.0),
    _row("B", "x", 0, 0.5, precision=None),
    _row("B", "x", 1, 0.6, precision=0.8),
    _row("B", "x", 2, 0.7, precision=0.6),
    _row("A", "y", 0, 0.4),
    _row("C", "x", 0, 0.9),
    _row("C", "x", 1, 0.3),
]


def _by_key(table):
    return {(row["arm"], row["dataset"]): row for row in table}


def test_summarize_closed_form():
    summary = summarize(ROWS)
    assert [(s["arm"], s["dataset"]) for s in summary] == [("A", "x"), ("B", "x"), ("A", "y"), ("C", "x")]
    a, b, a_y, c = (_by_key(summary)[key] for key in (("A", "x"), ("B", "x"), ("A", "y"), ("C", "x")))
    assert a["runs"] == 3 and a["mAP_mean"] == pytest.approx(0.2) and a["mAP_std"] == pytest.approx(0.1)
    assert a["rank1_mean"] == pytest.approx(0.3) and a["rank1_std"] == pytest.approx(0.1)
    assert a["minutes_mean"] == pytest.approx(3.0) and a["minutes_std"] == pytest.approx(
        math.sqrt(7.0)
    )  # (4 + 1 + 9) / 2
    assert a["final_precision_mean"] == pytest.approx(0.5) and a["final_precision_std"] == pytest.approx(0.0)
    # a run without a precision (it never left warm-up) is left out of that figure only
    assert b["runs"] == 3 and b["final_precision_mean"] == pytest.approx(0.7)
    assert b["final_precision_std"] == pytest.approx(math.sqrt(0.02))
    nan_rows = [
        {**row, "final_precision": math.nan if row["final_precision"] is None else row["final_precision"]}
        for row in ROWS
    ]
    assert _by_key(summarize(nan_rows))[("B", "x")] == b  # NaN, as a None comes back from pandas, is missing too
    assert a_y["runs"] == 1 and a_y["mAP_mean"] == pytest.approx(0.4) and a_y["mAP_std"] is None
    assert c["mAP_std"] == pytest.approx(math.sqrt(0.18))  # (0.3^2 + 0.3^2) / 1
    by_arm = _by_key([{**s, "dataset": None} for s in summarize(ROWS, by=("arm",))])
    assert by_arm[("A", None)]["runs"] == 4 and by_arm[("A", None)]["mAP_mean"] == pytest.approx(0.25)
    assert summarize(ROWS[::-1])[0]["arm"] == "C" and _by_key(summarize(ROWS[::-1]))[("A", "x")] == a


def test_compare_to_the_baseline_by_name():
    table = compare(summarize(ROWS), baseline_arm="A")
    rows = _by_key(table)
    assert set(rows) == {("B", "x"), ("C", "x")}  # no row for the baseline itself
    assert rows[("B", "x")]["mAP_gap"] == pytest.approx(0.4) and rows[("B", "x")]["largest_std"] == pytest.approx(0.1)
    assert rows[("B", "x")]["verdict"] == "better"  # 0.4 > 0.1
    assert (
        rows[("C", "x")]["mAP_gap"] == pytest.approx(0.4) and rows[("C", "x")]["verdict"] == "within noise"
    )  # std 0.42
    assert _by_key(compare(summarize(ROWS)[::-1], baseline_arm="A")) == rows  # order does not matter
    on_x = [row for row in ROWS if row["dataset"] == "x"]
    assert _by_key(compare(summarize(on_x), baseline_arm="B"))[("A", "x")]["verdict"] == "worse"
    with pytest.raises(ConfigError, match="no 'B' runs on 'y'"):
        compare(summarize(ROWS), baseline_arm="B")


def test_plus_minus():
    assert plus_minus(0.6123, 0.0131) == "61.2 ± 1.3"
    assert plus_minus(12.34, None, scale=1.0) == "12.3"
    assert plus_minus(None, None) == "n/a"
    assert plus_minus(0.5, float("nan")) == "50.0"  # a missing std in a pandas column
    assert plus_minus(float("nan"), None) == "n/a"


# --- the grid on disk ---------------------------------------------------------------------------

BASE = load_config(overrides={"arch": "resnet_mini", "feat_dim": 32, "num_parts": 4, "epochs": 3, "warmup_epochs": 1})
ARMS_2 = select_arms("recipe (camera groups + band 20 + camera debias),Jaccard", BEYOND_ARMS)
DATASETS = {"a": "data/a", "b": "data/b"}


def _epoch(epoch, precision, seconds):
    return {
        "epoch": epoch,
        "warmup": precision is None,
        "pos_precision": precision,
        "pos_recall": precision,
        "pos_per_anchor": None if precision is None else 2.0,
        "seconds": seconds,
    }


def _fake_finished_run(run_dir, cfg, mAP):
    """What train leaves behind, written with the runs helpers."""
    runs.prepare_run_dir(run_dir, cfg)
    for row in (_epoch(1, None, 30.0), _epoch(2, 0.6, 60.0), _epoch(3, 0.75, 90.0)):
        runs.append_jsonl(run_dir / runs.METRICS_LOG, row)
    figures = {"mAP": mAP, "rank1": mAP + 0.1}
    metrics = {**figures, "by_feature": {"combined": figures, "global": figures, "parts": figures}}
    runs.write_json(run_dir / runs.METRICS, metrics)
    return metrics


def _cfg(arm, dataset, seed):
    return apply_overrides(BASE, {**arm.overrides, "data_dir": DATASETS[dataset], "seed": seed})


def test_finished_runs_are_read_not_retrained(tmp_path, monkeypatch):
    for arm in ARMS_2:
        for name in DATASETS:
            for seed in (0, 1):
                _fake_finished_run(
                    tmp_path / slug(arm.name) / name / f"seed-{seed}", _cfg(arm, name, seed), 0.1 * seed + 0.3
                )

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(trainer, "train", no_training)
    monkeypatch.setattr(grid, "read_dataset", no_training)  # nothing to train: no data read either
    rows = run_grid(BASE, tmp_path, DATASETS, [0, 1], ARMS_2)
    assert len(rows) == 8
    row = {(r["arm"], r["dataset"], r["seed"]): r for r in rows}[("Jaccard", "b", 1)]
    assert row["run_dir"] == str(tmp_path / "jaccard" / "b" / "seed-1")
    assert row["mAP"] == pytest.approx(0.4) and row["rank1"] == pytest.approx(0.5)
    assert row["minutes"] == pytest.approx(3.0)  # (30 + 60 + 90) s
    assert (row["final_precision"], row["final_recall"], row["positives_per_anchor"]) == (0.75, 0.75, 2.0)

    curves = [c for c in epoch_curves(rows) if (c["arm"], c["dataset"], c["seed"]) == ("Jaccard", "b", 1)]
    assert [c["epoch"] for c in curves] == [1, 2, 3]
    assert [c["pos_precision"] for c in curves] == [None, 0.6, 0.75]
    assert set(curves[0]) == {"arm", "dataset", "seed", "epoch", *CURVE_FIGURES}
    assert curves[0]["true_kept"] is None  # a log written before the gap figures: None, not an error


def test_unfinished_or_changed_runs_are_trained(tmp_path, monkeypatch):
    recipe, reciprocal = ARMS_2
    finished = tmp_path / slug(recipe.name) / "a" / "seed-0"
    _fake_finished_run(finished, _cfg(recipe, "a", 0), 0.5)
    runs.prepare_run_dir(finished.parent / "seed-1", _cfg(recipe, "a", 1))  # started, never finished
    changed = tmp_path / "jaccard" / "a" / "seed-0"  # finished, with another config
    _fake_finished_run(changed, apply_overrides(_cfg(reciprocal, "a", 0), {"lr": 0.1}), 0.9)
    trained = []

    def fake_train(cfg, run_dir, data=None):
        trained.append((cfg, Path(run_dir), data))
        return {"mAP": 0.2, "rank1": 0.3, "by_feature": {"combined": {"mAP": 0.2, "rank1": 0.3}}}

    monkeypatch.setattr(trainer, "train", fake_train)
    monkeypatch.setattr(grid, "read_dataset", lambda path, layout: f"data of {path}")
    rows = run_grid(BASE, tmp_path, {"a": "data/a"}, [0, 1], ARMS_2)
    assert trained == [
        (_cfg(reciprocal, "a", 0), changed, "data of data/a"),  # train refuses it, naming the difference
        (_cfg(recipe, "a", 1), finished.parent / "seed-1", "data of data/a"),
        (_cfg(reciprocal, "a", 1), tmp_path / "jaccard" / "a" / "seed-1", "data of data/a"),
    ]
    assert [(r["arm"], r["seed"], r["mAP"]) for r in rows] == [
        (RECIPE, 0, 0.5),
        ("Jaccard", 0, 0.2),
        (RECIPE, 1, 0.2),
        ("Jaccard", 1, 0.2),
    ]  # seeds outermost: an interrupted grid holds every arm with the first seed
    assert runs.is_finished(finished, _cfg(recipe, "a", 0))
    assert not runs.is_finished(changed, _cfg(reciprocal, "a", 0))
    assert not runs.is_finished(finished.parent / "seed-1", _cfg(recipe, "a", 1))


def test_a_finished_run_names_its_data_folder_by_any_path(tmp_path, monkeypatch):
    """The same folder by its absolute or a relative path is the same run; another folder is not."""
    recipe = ARMS_2[0]
    (tmp_path / "data" / "a").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    cfg = lambda folder: apply_overrides(BASE, {**recipe.overrides, "data_dir": folder, "seed": 0})  # noqa: E731
    _fake_finished_run(tmp_path / "run", cfg(str(tmp_path / "data" / "a")), 0.5)
    assert runs.is_finished(tmp_path / "run", cfg("../data/a"))
    assert not runs.is_finished(tmp_path / "run", cfg("../data/b"))


def test_train_missing_false_reads_only_finished_runs(tmp_path, monkeypatch):
    """A report over part of a grid lists the runs it lacks and never trains them."""
    recipe, other = ARMS_2
    _fake_finished_run(tmp_path / slug(recipe.name) / "a" / "seed-0", _cfg(recipe, "a", 0), 0.5)

    def no_training(*args, **kwargs):
        raise AssertionError("train_missing=False must not train")

    monkeypatch.setattr(trainer, "train", no_training)
    monkeypatch.setattr(grid, "read_dataset", no_training)
    rows = run_grid(BASE, tmp_path, {"a": "data/a"}, [0], ARMS_2, train_missing=False)
    assert [(r["arm"], r["status"]) for r in rows] == [(RECIPE, "done"), (other.name, "not run")]
    assert [s["arm"] for s in summarize(rows)] == [RECIPE]  # the missing run is in no summary
    assert {c["arm"] for c in epoch_curves(rows)} == {RECIPE}


def test_share_of_ceiling_per_dataset_and_seed():
    """Each run over the ceiling's run of the same dataset and seed, then mean and std per arm."""
    rows = [
        {"arm": CEILING.name, "dataset": "a", "seed": 0, "mAP": 0.5},
        {"arm": CEILING.name, "dataset": "a", "seed": 1, "mAP": 0.4},
        {"arm": "rule", "dataset": "a", "seed": 0, "mAP": 0.25},
        {"arm": "rule", "dataset": "a", "seed": 1, "mAP": 0.3},
        {"arm": "rule", "dataset": "b", "seed": 0, "mAP": 0.3},  # no ceiling on b: left out
        {"arm": "rule", "dataset": "a", "seed": 2, "status": "not run"},
    ]
    table = {(r["arm"], r["dataset"]): r for r in share_of_ceiling(rows, CEILING.name)}
    assert set(table) == {(CEILING.name, "a"), ("rule", "a")}
    assert table[(CEILING.name, "a")]["share_mean"] == pytest.approx(1.0)
    rule = table[("rule", "a")]
    assert rule["runs"] == 2 and rule["share_mean"] == pytest.approx((0.5 + 0.75) / 2)
    assert rule["share_std"] == pytest.approx(math.sqrt(((0.5 - 0.625) ** 2 + (0.75 - 0.625) ** 2) / 1))
