"""Notebooks: stored without outputs, parameters that are config fields, run by papermill, exported."""

import json
import re
from pathlib import Path

import nbformat
import pytest

from reidlib.cli import main
from reidlib.config import parse_set, save_config
from reidlib.engine.trainer import train
from reidlib.errors import ConfigError
from reidlib.reports.notebooks import NOTEBOOK_DIR, check_parameters, notebook_parameters, render, report, run_notebook
from tests.helpers import ROOT, tiny_cfg

pytestmark = pytest.mark.slow  # each runs a notebook in a kernel of its own

NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def test_there_are_notebooks():
    assert {"01_train.ipynb", "03_visualise.ipynb", "05_methods_side_by_side.ipynb"} <= {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_without_outputs(path):
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name} carries outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_are_config_fields(path):
    params = notebook_parameters(path)
    assert params, f"{path.name} has no parameters cell"
    check_parameters(path, {})  # raises if a parameter is neither a config field nor run_dir
    tagged = [c for c in nbformat.read(str(path), as_version=4).cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1


def test_grid_parameters_belong_to_their_notebook(tmp_path):
    grid = NOTEBOOK_DIR / "04_beyond_the_paper.ipynb"
    assert {"config", "datasets", "seeds", "arms"} <= set(notebook_parameters(grid))
    methods = NOTEBOOK_DIR / "05_methods_side_by_side.ipynb"
    assert {"config", "datasets", "seeds", "train_missing", "queries"} <= set(notebook_parameters(methods))
    nb = nbformat.read(str(NOTEBOOK_DIR / "01_train.ipynb"), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source += '\ndatasets = "a:b"'
    other = tmp_path / "05_other.ipynb"
    nbformat.write(nb, str(other))
    with pytest.raises(ConfigError, match=r"\['datasets'\] are not config fields"):
        check_parameters(other, {})


def test_unknown_parameter_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no parameter 'epochz'"):
        run_notebook(NOTEBOOK_DIR / "01_train.ipynb", tmp_path / "out.ipynb", {"epochz": 3})
    assert not (tmp_path / "out.ipynb").exists()


@pytest.fixture(scope="module")
def tiny_run(tiny_synthetic, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    train(tiny_cfg(tiny_synthetic, epochs=3, warmup_epochs=1, eval_every=2), run_dir)
    return run_dir


def test_report_runs_the_notebooks_and_embeds_images(tiny_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the page goes to the current folder by default
    before = {p.name: p.stat().st_mtime_ns for p in tiny_run.iterdir()}
    html = report(tiny_run)
    assert html == Path("tiny.html")
    text = html.read_text()
    # 01: loss, diagnostics, where the true matches sit, test curves; 03: UMAP, cluster scores, retrievals, distances
    assert text.count("data:image/png;base64,") >= 8
    assert "python -m reidlib report --run-dir" in text and "batch/s" not in text
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    last = re.search(r"\{(&quot;|\")mAP(&quot;|\"): ([0-9.e-]+)", text)  # 01's last cell states the figures
    assert last and float(last.group(3)) == pytest.approx(metrics["mAP"])
    assert re.search(r"(&quot;|\")before(&quot;|\"): \{(&quot;|\")purity", text)  # 03's last cell
    assert {p.name: p.stat().st_mtime_ns for p in tiny_run.iterdir()} == before  # the run is only read


def test_report_cli_errors(tmp_path, capsys):
    assert main(["report", "--run-dir", str(tmp_path / "nothing")]) == 2
    assert "holds no config.yaml" in capsys.readouterr().err


def test_walkthrough_runs_on_tiny_data(tiny_synthetic, tmp_path, capsys):
    out = tmp_path / "walkthrough.html"
    argv = [
        "notebook",
        "00_walkthrough",
        "--set",
        f"data_dir={tiny_synthetic}",
        "k=2",
        "m=10",
        f"run_dir={tmp_path / 'no-run'}",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    text = out.read_text()
    assert text.count("data:image/png;base64,") >= 4  # bank, selection, weights, first epochs
    assert "closed form" in text and "python -m reidlib notebook 00_walkthrough" in text
    assert main(["notebook", "00_walkthrough", "--set", "kk=2", "--out", str(tmp_path / "x.html")]) == 2
    assert "no parameter 'kk'" in capsys.readouterr().err and not (tmp_path / "x.html").exists()


def test_ablation_notebook_and_resumable_grid(tiny_synthetic, tmp_path):
    from reidlib.config import load_config
    from reidlib.experiments.ablations import ARMS, ablation_base
    from reidlib.experiments.grid import run_grid

    grid = tmp_path / "grid"
    out = tmp_path / "ablations.html"
    argv = [
        "notebook",
        "02_ablations",
        "--set",
        f"data_dir={tiny_synthetic}",
        "epochs=1",
        "m=10",
        f"run_dir={grid}",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    text = out.read_text()
    assert "data:image/png;base64," in text
    assert any(verdict in text for verdict in ("held", "reversed", "within noise"))
    assert not out.with_suffix(".ipynb").exists()  # the CLI keeps the executed notebook out of reports/
    assert len(list(grid.glob("*/demo/seed-*/metrics.json"))) == len(ARMS) * 3

    # a second pass reads the finished runs instead of training them again
    stamps = {p: p.stat().st_mtime_ns for p in grid.glob("*/demo/seed-*/metrics.json")}
    base = ablation_base(ROOT / "configs" / "demo.yaml", {"data_dir": str(tiny_synthetic), "epochs": 1, "m": 10})
    rows = run_grid(base, grid, {"demo": str(tiny_synthetic)}, [0, 1, 2], ARMS)
    assert len(rows) == len(ARMS) * 3 and {p: p.stat().st_mtime_ns for p in stamps} == stamps
    k0 = load_config(grid / "single-positive-k-0" / "demo" / "seed-1" / "config.yaml")
    assert k0.scl.k == 0 and k0.train.seed == 1
    assert (k0.scl.positive_rule, k0.scl.mixture_writers) == ("knn", "both")  # the paper's method, not demo.yaml's


def test_beyond_notebook_on_tiny_data(tiny_synthetic, tmp_path):
    from reidlib.experiments.beyond import RECIPE

    config = tmp_path / "tiny.yaml"
    save_config(tiny_cfg(tiny_synthetic), config)
    grid, out = tmp_path / "grid", tmp_path / "beyond.html"
    params = parse_set(
        [
            f"run_dir={grid}",
            f"config={config}",
            f"datasets=tiny:{tiny_synthetic}",
            "seeds=0",
            f"arms={RECIPE},Jaccard",
            "epochs=2",
        ]
    )  # as `--set` gives them
    render("04_beyond_the_paper", params, out, out_notebook=tmp_path / "executed.ipynb")
    text = out.read_text()
    assert text.count("data:image/png;base64,") >= 2  # precision per epoch, mAP per arm
    assert "within noise" in text  # one seed: no std, no verdict beyond noise
    runs_done = sorted(p.relative_to(grid).parts[:3] for p in grid.glob("*/*/seed-*/metrics.json"))
    assert runs_done == [
        ("jaccard", "tiny", "seed-0"),
        ("recipe-camera-groups-band-20-camera-debias", "tiny", "seed-0"),
    ]
    executed = nbformat.read(str(tmp_path / "executed.ipynb"), as_version=4)
    summary = {row["arm"]: row for row in json.loads(executed.cells[-1].outputs[0]["text"])}
    assert set(summary) == {RECIPE, "Jaccard"}
    recipe = summary[RECIPE]
    assert recipe["runs"] == 1 and recipe["mAP_std"] is None and recipe["dataset"] == "tiny"
    recipe_run = grid / "recipe-camera-groups-band-20-camera-debias" / "tiny" / "seed-0"
    assert recipe["mAP_mean"] == pytest.approx(json.loads((recipe_run / "metrics.json").read_text())["mAP"])
    assert 0.0 <= recipe["final_precision_mean"] <= 1.0 and recipe["minutes_mean"] > 0


def test_methods_notebook_on_tiny_data(tiny_synthetic, tmp_path):
    from reidlib.experiments.side_by_side import CLUSTER_CONTRAST, METHOD_ARMS, SCL
    from tests.experiments.test_side_by_side import TINY_CLUSTERS

    config = tmp_path / "tiny.yaml"
    save_config(tiny_cfg(tiny_synthetic, **TINY_CLUSTERS), config)
    grid, out = tmp_path / "grid", tmp_path / "methods.html"
    params = parse_set(
        [f"run_dir={grid}", f"config={config}", f"datasets=tiny:{tiny_synthetic}", "seeds=0", "epochs=2", "queries=2"]
    )  # as `--set` gives them
    render("05_methods_side_by_side", params, out, out_notebook=tmp_path / "executed.ipynb")
    text = out.read_text()
    assert text.count("data:image/png;base64,") >= 3  # mAP / Rank-1 against minutes, label quality, retrievals
    assert "within noise" in text  # one seed: no std, no verdict beyond noise
    runs_done = sorted(p.relative_to(grid).parts[:3] for p in grid.glob("*/*/seed-*/metrics.json"))
    assert runs_done == [
        (slug, "tiny", "seed-0")
        for slug in (
            "cluster-contrast-published-settings",
            "scl-the-cpu-recipe",
            "supervised-ceiling-every-true-match-a-positive-none-a-negative",
            "untrained-imagenet-start",
        )
    ]
    executed = nbformat.read(str(tmp_path / "executed.ipynb"), as_version=4)
    retrievals = next(c for c in executed.cells if "methods_retrieval_grid(picks" in c.source)
    assert any("image/png" in o.get("data", {}) for o in retrievals.outputs)  # the one dataset has every arm
    summary = {row["arm"]: row for row in json.loads(executed.cells[-1].outputs[0]["text"])}
    assert set(summary) == {arm.name for arm in METHOD_ARMS}
    cc = summary[CLUSTER_CONTRAST]
    assert cc["runs"] == 1 and cc["mAP_std"] is None and cc["dataset"] == "tiny" and cc["minutes_mean"] > 0
    cc_run = grid / "cluster-contrast-published-settings" / "tiny" / "seed-0"
    assert cc["mAP_mean"] == pytest.approx(json.loads((cc_run / "metrics.json").read_text())["mAP"])
    assert 0.0 <= summary[SCL]["final_precision_mean"] <= 1.0 and 0.0 <= cc["final_precision_mean"] <= 1.0
