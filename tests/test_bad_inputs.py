"""Every bad input docs/reliability.md's "What happens when..." table lists, through the command line.

Each case must end with exit code 2 and one line on stderr that names the problem, no traceback,
and nothing written: the run dir is not even created.
"""

import shutil
from pathlib import Path

import pytest

from reidlib.cli import main
from tests.helpers import TINY, assert_one_line_error, camera_folders, run_cli

TINY_SETS = [f"{k}={v}" for k, v in TINY.items()]


def damaged_copy(src: Path, dst: Path, damage) -> Path:
    """A copy of the tiny set with ``damage(root) -> None`` applied to it."""
    shutil.copytree(src, dst)
    damage(dst)
    return dst


def first_train_image(root: Path) -> Path:
    return sorted((root / "bounding_box_train").glob("*.jpg"))[0]


def garbage(root):
    first_train_image(root).write_bytes(b"\xff\xd8 this is not a JPEG " * 20)


def truncated(root):
    path = first_train_image(root)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])


def empty(root):
    first_train_image(root).write_bytes(b"")


def bad_name(root):
    shutil.copy(first_train_image(root), root / "bounding_box_train" / "person_seven.jpg")


def bad_query(root):
    (root / "query" / "0013_c1s1_000059_01.jpg").rename(root / "query" / "0013_camera1.jpg")


DATA_CASES = {  # name: (damage, what stderr must say)
    "corrupt JPEG": (garbage, "unreadable image"),
    "truncated JPEG": (truncated, "unreadable image"),
    "zero-byte image": (empty, "empty image file (0 bytes)"),
    "unparsable training name": (bad_name, "person_seven.jpg: name does not parse"),
    "unparsable query name": (bad_query, "0013_camera1.jpg: name does not parse"),
}


@pytest.mark.parametrize("case", DATA_CASES, ids=list(DATA_CASES))
def test_bad_data(case, tiny_synthetic, tmp_path, capsys):
    damage, needle = DATA_CASES[case]
    root = damaged_copy(tiny_synthetic, tmp_path / "data", damage)
    run_dir = tmp_path / "run"
    code, err = run_cli(["train", "--data", root, "--run-dir", run_dir, "--set", *TINY_SETS], capsys)
    assert_one_line_error(code, err, needle, str(root))
    assert not run_dir.exists()


def test_missing_empty_and_wrongly_laid_out_data(tiny_synthetic, tmp_path, capsys):
    run_dir = tmp_path / "run"
    base = ["--run-dir", run_dir, "--set", *TINY_SETS]
    code, err = run_cli(["train", "--data", tmp_path / "nowhere", *base], capsys)
    assert_one_line_error(code, err, "dataset root not found", "nowhere")
    (tmp_path / "empty").mkdir()
    code, err = run_cli(["train", "--data", tmp_path / "empty", *base], capsys)
    assert_one_line_error(code, err, "missing folder", "bounding_box_train")
    code, err = run_cli(["train", "--data", tiny_synthetic, *base, "layout=msmt17"], capsys)
    assert_one_line_error(code, err, "missing list file", "list_train.txt")
    assert not run_dir.exists()


CONFIG_CASES = {  # --set overrides: what stderr must say
    "unknown key": (["kk=3"], "unknown config key 'kk'"),
    "wrong type": (["k=seven"], "'scl.k' expects int, got str 'seven'"),
    "k >= N": (
        ["k=59", "m=0"],
        "scl.k + scl.m = 59 must be at most 58, the slots besides an anchor's own in a bank of 59 training images; "
        "e.g. --set k=29 m=29",
    ),
    "m < 0": (["m=-1"], "'scl.m' must be >= 0"),
    "lambda above 1": (["lambda_t=1.5"], "'scl.lambda_t' must lie in [0, 1], got 1.5"),
    "lambda below 0": (["lambda_g=-0.1"], "'scl.lambda_g' must lie in [0, 1], got -0.1"),
    "temperature 0": (["temperature=0"], "'scl.temperature' must be > 0, got 0.0"),
    "batch > dataset": (["batch_size=60"], "train.batch_size (60) is larger than the training split (59 images)"),
    "bad choice": (["mixture_writers=stripes"], "'scl.mixture_writers' must be one of both, combined, global, parts"),
}


@pytest.mark.parametrize("case", CONFIG_CASES, ids=list(CONFIG_CASES))
def test_bad_config(case, tiny_synthetic, tmp_path, capsys):
    sets, needle = CONFIG_CASES[case]
    run_dir = tmp_path / "run"
    code, err = run_cli(["train", "--data", tiny_synthetic, "--run-dir", run_dir, "--set", *TINY_SETS, *sets], capsys)
    assert_one_line_error(code, err, needle)
    assert not run_dir.exists()


def test_missing_config_file_and_unknown_notebook_parameter(tiny_synthetic, tmp_path, capsys):
    code, err = run_cli(
        ["train", "--data", tiny_synthetic, "--run-dir", tmp_path / "run", "--config", tmp_path / "nope.yaml"], capsys
    )
    assert_one_line_error(code, err, "config file not found", "nope.yaml")
    assert not (tmp_path / "run").exists()
    out = tmp_path / "report.html"
    code, err = run_cli(["notebook", "01_train", "--set", "epochz=3", "--out", out], capsys)
    assert_one_line_error(code, err, "01_train.ipynb has no parameter 'epochz'")
    assert not out.exists()


def test_run_dir_of_another_config_is_refused_untouched(tiny_synthetic, tmp_path, capsys):
    run_dir = tmp_path / "run"
    base = ["train", "--data", tiny_synthetic, "--run-dir", run_dir, "--set", *TINY_SETS]
    assert run_cli([*base, "epochs=0"], capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    code, err = run_cli([*base, "epochs=0", "k=3"], capsys)
    assert_one_line_error(code, err, "belongs to another config", "scl.k: 2 -> 3")
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


def test_query_without_a_valid_match_is_skipped_and_counted(tiny_synthetic, tmp_path, capsys):
    def same_camera_only(root):  # identity 13 stays in the gallery only in camera 1
        for path in (root / "bounding_box_test").glob("0013_c[23]*.jpg"):
            path.unlink()

    root = damaged_copy(tiny_synthetic, tmp_path / "data", same_camera_only)
    code = main(["train", "--data", str(root), "--run-dir", str(tmp_path / "run"), "--set", *TINY_SETS, "epochs=0"])
    out = capsys.readouterr().out
    assert code == 0
    assert "(1 query had no valid gallery match and was skipped; 22 were scored)" in out


# --- camera folders (ROOT/<camera>/...) ------------------------------------------------------------


def first_crop(root: Path) -> Path:
    return min(root.rglob("*.jpg"))


def wide_crop(root):
    from PIL import Image

    Image.new("RGB", (200, 100), "grey").save(root / "cam-2" / "frame.jpg")


CAMERA_CASES = {  # name: (damage, what stderr must say, the path it must name)
    "empty camera folder": (lambda root: (root / "cam-9").mkdir(), "empty camera folder", "cam-9"),
    "one camera only": (
        lambda root: [shutil.rmtree(root / c) for c in ("cam-2", "cam-3")],
        "only one camera folder (cam-1); camera folders need at least 2 cameras",
        "",
    ),
    "image directly in the root": (
        lambda root: shutil.copy(first_crop(root), root / "loose.jpg"),
        "loose.jpg: a file directly in",
        "",
    ),
    "not an image": (lambda root: (root / "cam-1" / "notes.csv").write_text("x"), "notes.csv: not an image", ""),
    "corrupt image": (lambda root: first_crop(root).write_bytes(b"\xff\xd8 no JPEG " * 20), "unreadable image", ""),
    "truncated image": (
        lambda root: first_crop(root).write_bytes(first_crop(root).read_bytes()[:300]),
        "unreadable image",
        "",
    ),
    "zero-byte image": (lambda root: first_crop(root).write_bytes(b""), "empty image file (0 bytes)", ""),
    "crop wider than tall": (wide_crop, "frame.jpg: 200x100 pixels, wider than tall", ""),
}


@pytest.mark.parametrize("case", CAMERA_CASES, ids=list(CAMERA_CASES))
def test_bad_camera_folders(case, tiny_synthetic, tmp_path, capsys):
    damage, needle, name = CAMERA_CASES[case]
    root = camera_folders(tiny_synthetic, tmp_path / "cams")
    damage(root)
    run_dir = tmp_path / "run"
    code, err = run_cli(["train", "--data", root, "--run-dir", run_dir, "--set", *TINY_SETS], capsys)
    assert_one_line_error(code, err, needle, str(root / name))
    assert not run_dir.exists()


def test_eval_data_must_be_labelled(tiny_synthetic, tmp_path, capsys):
    root = camera_folders(tiny_synthetic, tmp_path / "cams")
    run_dir = tmp_path / "run"
    base = ["train", "--data", root, "--run-dir", run_dir, "--set", *TINY_SETS]
    code, err = run_cli([*base, "--eval-data", root], capsys)
    assert_one_line_error(code, err, f"{root}: no query and gallery to evaluate on (cameras layout)", "--eval-data DIR")
    code, err = run_cli([*base, "--eval-data", tmp_path / "nowhere"], capsys)
    assert_one_line_error(code, err, "dataset root not found", "nowhere")
    assert not run_dir.exists()


def test_a_labelled_root_is_never_camera_folders(tiny_synthetic, tmp_path, capsys):
    code, err = run_cli(["describe", tiny_synthetic, "--layout", "cameras"], capsys)
    assert_one_line_error(code, err, f"{tiny_synthetic}/bounding_box_train: {tiny_synthetic} is a labelled layout")
    partial = damaged_copy(
        tiny_synthetic, tmp_path / "partial", lambda root: shutil.rmtree(root / "bounding_box_train")
    )
    code, err = run_cli(["describe", partial], capsys)  # auto: still Market-1501, missing a folder
    assert_one_line_error(code, err, "missing folder", "bounding_box_train")
