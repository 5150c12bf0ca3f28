"""The newcomer's path of README + docs/own-cameras.md, end to end, on 300 real crops of
../shared/data/cuhk01 in camera folders (skipped when the data are absent): from a folder of crops
to a page of matches, with the commands the docs give, as they give them."""

import shutil
import time

import pytest

from reidlib.config import load_config
from reidlib.utils import runs
from tests.helpers import ROOT, run_cli

CROPS = 300


def camera_folders_of(cuhk01, root, count=CROPS):
    """The first ``count`` training crops of cuhk01, sorted, in ``root/cam-<C>/`` by their camera."""
    for path in sorted((cuhk01 / "bounding_box_train").glob("*.jpg"))[:count]:
        camera = path.name.split("_")[1][:2]  # c1s1 -> c1
        (root / f"cam-{camera[1]}").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / f"cam-{camera[1]}" / path.name)
    return root


@pytest.mark.slow
def test_from_a_folder_of_crops_to_a_page_of_matches(shared_data, tmp_path, capsys, monkeypatch):
    cuhk01 = shared_data / "cuhk01"
    cams = camera_folders_of(cuhk01, tmp_path / "cams")
    monkeypatch.chdir(tmp_path)
    recipe = str(ROOT / "configs" / "real-cpu.yaml")
    commands = [  # docs/own-cameras.md, "Training on your own camera folders", then "Three commands"
        ["describe", cams],
        ["sheet", cams, "cams.png", "--ids", "6"],
        ["train", "--data", cams, "--run-dir", "runs/cams", "--config", recipe, "--eval-data", cuhk01],
        ["embed", "--run-dir", "runs/cams", "--images", cams, "--out", "gallery.npz"],
        ["query", "--run-dir", "runs/cams", "--gallery", "gallery.npz", "--query", cams / "cam-1", "--out", "matches"],
    ]
    start = time.monotonic()
    for argv in commands:
        code, err = run_cli(argv, capsys)
        assert code == 0, (argv, err)
    minutes = (time.monotonic() - start) / 60
    page = (tmp_path / "matches" / "index.html").read_text()
    assert page.count("<figure") > 100 and (tmp_path / "matches" / "ranks.csv").is_file()
    band = load_config(ROOT / "configs" / "real-cpu.yaml").scl.negative_band
    assert runs.read_run_config(tmp_path / "runs" / "cams").scl.m == CROPS - 1 - 7 - band  # capped to fit, recorded
    assert run_cli(["train", "--run-dir", "runs/cams"], capsys)[0] == 0  # resumes (here: reads) as it was
    print(f"{len(commands)} commands from a folder of {CROPS} crops to a page of matches in {minutes:.1f} minutes")
