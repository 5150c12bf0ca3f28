"""Selection rules screened on a finished run's banks (reidlib.experiments.screen, ``reidlib screen``)."""

import pytest

from reidlib.cli import main
from reidlib.engine.trainer import train
from reidlib.errors import ConfigError, RunDirError
from reidlib.experiments.screen import RUN_RULE, format_screen, screen_rules
from tests.helpers import assert_one_line_error, run_cli, tiny_cfg


@pytest.fixture(scope="module")
def finished_run(tiny_synthetic, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("screen") / "run"
    train(tiny_cfg(tiny_synthetic, epochs=2, positive_rule="ca_jaccard", m=8), run_dir)
    return run_dir


def test_rules_side_by_side_on_the_banks(finished_run):
    rules = {
        "band 4": {"negative_band": 4},
        "ceiling": {"oracle": "ceiling"},
        "kNN": {"positive_rule": "knn"},
    }
    rows = {r["rule"]: r for r in screen_rules(finished_run, rules)}
    assert list(rows) == [RUN_RULE, *rules]
    own, band, ceiling = rows[RUN_RULE], rows["band 4"], rows["ceiling"]
    # a band changes the negatives only: the same positives, some true matches left alone
    for key in ("pos_precision", "pos_recall", "pos_per_anchor"):
        assert band[key] == own[key]
    assert own["true_left_alone"] == 0 < band["true_left_alone"]
    assert own["pos_shared"] == own["neg_shared"] == band["pos_shared"] == 1.0
    assert band["neg_shared"] < 1.0  # the band's slots are no longer negatives
    # the identities choose: every true match a positive, none a negative
    assert ceiling["pos_precision"] == ceiling["pos_recall"] == 1.0
    assert ceiling["neg_false_per_anchor"] == 0.0
    assert rows["kNN"]["pos_per_anchor"] == 2  # k = 2, all kept
    assert rows["kNN"]["pos_shared"] < 1.0
    table = format_screen(list(rows.values()), "title")
    assert table.splitlines()[0] == "title" and "cross recall %" in table and len(table.splitlines()) == 6


def test_what_a_screen_refuses(finished_run, tiny_synthetic, tmp_path, capsys):
    with pytest.raises(ConfigError, match="scl.group_fill"):
        screen_rules(finished_run, {"bad": {"group_fill": "ca_jaccard"}})  # the run's rule is ca_jaccard
    with pytest.raises(RunDirError, match="no checkpoint"):
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "config.yaml").write_text((finished_run / "config.yaml").read_text())
        screen_rules(tmp_path / "empty", {})
    code, err = run_cli(["screen", "--run-dir", str(finished_run), "--rule", "nothing:"], capsys)
    assert_one_line_error(code, err, "--rule 'nothing:' changes nothing")


def test_the_command_prints_one_table(finished_run, capsys):
    code = main(["screen", "--run-dir", str(finished_run), "--rule", "band: negative_band=2"])
    out = capsys.readouterr().out
    assert code == 0
    assert "selection on the banks of" in out and "\nband " in out and RUN_RULE in out
