"""A newcomer's first hour (issue 25): runs that resume as expected, outputs that never vanish, a
command table that tells the truth. Each test failed on the code before these fixes."""

import json
import re

import pytest

from reidlib.cli import build_parser, main
from reidlib.engine.trainer import train
from reidlib.utils import runs
from tests.helpers import ROOT, TINY, assert_one_line_error, camera_folders, run_cli, tiny_cfg

TINY_SETS = [f"{k}={v}" for k, v in TINY.items() if k != "m"]


@pytest.fixture(scope="module")
def cams(tiny_synthetic, tmp_path_factory):
    return camera_folders(tiny_synthetic, tmp_path_factory.mktemp("cams") / "cams")


def test_a_small_folder_trains_with_the_recipe_config(cams, tmp_path, capsys, caplog):
    """scl.m follows the data: capped with a logged line, recorded in config.yaml; the same command
    again resumes (the capped config is the run's)."""
    argv = ["train", "--data", cams, "--run-dir", tmp_path / "run", "--config", ROOT / "configs" / "real-cpu.yaml",
            "--set", *TINY_SETS, "k=7", "epochs=2", "pretrained=null"]  # fmt: skip
    code, err = run_cli(argv, capsys)
    assert code == 0, err
    # 59 images: 58 slots besides the anchor's own, minus k 7 and the recipe's band of 20
    assert "scl.m = 500 does not fit the 59 training images: capped to 31" in caplog.text
    assert runs.read_run_config(tmp_path / "run").scl.m == 31
    assert run_cli(argv, capsys)[0] == 0  # resumes: the capped config is the run's own


def test_a_run_dir_remembers_its_config_and_more_epochs_continue_it(tiny_synthetic, tmp_path, capsys):
    run = tmp_path / "run"
    base = ["train", "--data", tiny_synthetic, "--run-dir", run, "--set", *TINY_SETS, "epochs=2", "lr_schedule=step"]
    assert run_cli(base, capsys)[0] == 0
    first = runs.read_metrics(run)
    # no --config, no --data: the run's own config (the defaults would be resnet50 on no data)
    assert run_cli(["train", "--run-dir", run], capsys)[0] == 0
    assert runs.read_metrics(run) == first  # finished: read, nothing retrained
    code, err = run_cli(["train", "--run-dir", run, "--set", "epochs=4"], capsys)
    assert code == 0, err
    rows = runs.read_jsonl(run / runs.METRICS_LOG)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4] and runs.read_metrics(run)["epochs"] == 4
    # the schedule of 4 epochs from epoch 3 on: the x0.1 drop comes at 70% of 4 (epoch 4), not of 2
    assert [r["lr"] for r in rows] == pytest.approx([1e-3, 1e-4, 1e-3, 1e-4])
    assert runs.read_run_config(run).train.epochs == 4
    code, err = run_cli(["train", "--run-dir", run, "--set", "epochs=3"], capsys)
    assert_one_line_error(code, err, "has trained 4 epochs: train.epochs must be at least 4")
    code, err = run_cli(["train", "--run-dir", run, "--set", "lr=0.1"], capsys)
    assert_one_line_error(code, err, "train.lr: 0.001 -> 0.1", "only epochs may change")
    code, err = run_cli(["train", "--run-dir", tmp_path / "new"], capsys)
    assert_one_line_error(code, err, "--data is required")


def test_evaluate_records_what_it_measured(cams, tiny_synthetic, tmp_path, capsys):
    """A camera-folder run, not evaluated when trained, gets its figures (and their data) from
    `evaluate --data`, atomically; every evaluation is kept in evaluations.json."""
    run = tmp_path / "run"
    train(tiny_cfg(cams, epochs=1), run)
    assert runs.read_metrics(run)["evaluated"] is False
    code, err = run_cli(["evaluate", "--run-dir", run, "--data", tiny_synthetic], capsys)
    assert code == 0, err
    metrics = runs.read_metrics(run)
    assert metrics["eval_data"] == str(tiny_synthetic) and 0 <= metrics["mAP"] <= 1 and "evaluated" not in metrics
    assert (run / runs.FEATURES).is_file()
    assert run_cli(["evaluate", "--run-dir", run, "--data", tiny_synthetic, "--no-flip-test"], capsys)[0] == 0
    entries = json.loads((run / runs.EVALUATIONS).read_text())["evaluations"]
    assert [e["flip_test"] for e in entries] == [False, False] and all(
        e["eval_data"] == str(tiny_synthetic) for e in entries
    )
    assert runs.read_metrics(run) == metrics  # a second evaluation is recorded, not written over the first
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_the_eval_data_is_a_config_key_a_resume_remembers(cams, tiny_synthetic, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--data", cams, "--eval-data", tiny_synthetic, "--run-dir", run, "--set", *TINY_SETS, "epochs=1"]
    assert run_cli(argv, capsys)[0] == 0
    assert runs.read_run_config(run).eval.eval_data == str(tiny_synthetic)
    assert run_cli(["train", "--run-dir", run, "--set", "epochs=2"], capsys)[0] == 0  # no --eval-data again
    assert runs.read_metrics(run)["eval_data"] == str(tiny_synthetic)


@pytest.fixture(scope="module")
def trained(tiny_synthetic, tmp_path_factory):
    run = tmp_path_factory.mktemp("first-hour") / "run"
    train(tiny_cfg(tiny_synthetic, epochs=1), run)
    return run


def test_outputs_are_checked_before_the_work_and_kept(trained, tiny_synthetic, tmp_path, capsys):
    folder = tmp_path / "dir.npz"
    folder.mkdir()
    code, err = run_cli(["embed", "--run-dir", trained, "--images", tiny_synthetic / "query", "--out", folder], capsys)
    assert_one_line_error(code, err, "dir.npz: is a folder")
    assert "embedding" not in err  # refused before any image was read
    gallery = tmp_path / "gallery.npz"
    embed = ["embed", "--run-dir", trained, "--images", tiny_synthetic / "bounding_box_test", "--out", gallery]
    assert run_cli(embed, capsys)[0] == 0
    before = gallery.read_bytes()
    code, err = run_cli(["embed", "--run-dir", trained, "--images", tiny_synthetic / "query", "--out", gallery], capsys)
    assert_one_line_error(code, err, "gallery.npz exists; give --overwrite to replace it")
    assert gallery.read_bytes() == before
    query = [
        "query",
        "--run-dir",
        trained,
        "--gallery",
        gallery,
        "--query",
        tiny_synthetic / "query",
        "--out",
        tmp_path / "m",
    ]
    assert run_cli(query, capsys)[0] == 0
    page = (tmp_path / "m" / "index.html").read_bytes()
    code, err = run_cli(query, capsys)
    assert_one_line_error(code, err, "already holds index.html, ranks.csv; give --overwrite")
    assert (tmp_path / "m" / "index.html").read_bytes() == page
    assert run_cli([*query, "--top", "3", "--overwrite"], capsys)[0] == 0
    assert (tmp_path / "m" / "index.html").read_bytes() != page
    code, err = run_cli(["sheet", tiny_synthetic, gallery], capsys)
    assert_one_line_error(code, err, "gallery.npz exists; give --overwrite")


def test_compare_names_data_distance_and_flip_and_marks_unfinished_runs(trained, tiny_synthetic, tmp_path, capsys):
    stripes = tmp_path / "stripes"  # ranked by the stripes alone, with flip test
    train(tiny_cfg(tiny_synthetic, epochs=1, flip_test=True, test_lambda_g=0.0), stripes)
    unfinished = tmp_path / "unfinished"
    runs.prepare_run_dir(unfinished, runs.read_run_config(trained))
    code = main(["compare", str(trained), str(stripes), str(unfinished), str(tmp_path / "nothing")])
    out = capsys.readouterr().out
    assert code == 0
    header, *rows = out.splitlines()[1:6]
    assert "data" in header and "distance" in header and "flip" in header
    assert str(tiny_synthetic) in rows[0] and "0.5 g + 0.5 p" in rows[0] and " no " in rows[0]
    assert "parts" in rows[1] and " yes " in rows[1]
    assert "unfinished: 0 of 1 epochs trained" in rows[2]
    assert "holds no config.yaml" in rows[3]
    assert "combined global + part distance" not in out


@pytest.mark.slow
def test_report_only_reads_the_run_and_renders_offline(trained, tmp_path, capsys, monkeypatch):
    before = {p.name: p.stat().st_mtime_ns for p in trained.iterdir()}
    monkeypatch.chdir(tmp_path)
    assert run_cli(["report", "--run-dir", trained], capsys)[0] == 0
    page = tmp_path / f"{trained.name}.html"  # by default beside the caller, not in the checkout
    assert {p.name: p.stat().st_mtime_ns for p in trained.iterdir()} == before  # nothing written into the run
    html = page.read_text()
    assert "data:image/png;base64," in html
    assert not re.search(r"https?://", html), "a report fetches nothing from the network"
    code, err = run_cli(["report", "--run-dir", trained], capsys)
    assert_one_line_error(code, err, "exists; give --overwrite")


def test_every_command_of_the_readme_table_matches_its_help():
    """The README's command table lists every command, and every option it shows is the command's."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Commands") : readme.index("## Your own cameras")]
    table = re.findall(r"^\| `([a-z]+)([^`]*)` \|", section, flags=re.M)
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 (argparse keeps them there)
    assert {name for name, _ in table} == set(commands)
    for name, usage in table:
        options = {s for action in commands[name]._actions for s in action.option_strings}  # noqa: SLF001
        for flag in re.findall(r"--[a-z][a-z-]*", usage):
            flag = flag.replace("--no-", "--") if flag.startswith("--no-") else flag
            assert flag in options or flag.replace("--", "--no-") in options, (name, flag)
    assert (
        "ImageNet MobileNetV2" in commands["baseline"].description
        or "MobileNetV2" in commands["baseline"].format_help()
    )
