"""Search with a trained run: embed and query end to end, the blocked ranking against the dense
evaluation distance, cameras from names or folders, and every bad input (exit 2, one line, nothing written)."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from reidlib.cli import main
from reidlib.data import read_market_layout
from reidlib.engine.trainer import train
from reidlib.evaluation.evaluator import query_gallery_distance
from reidlib.retrieval.embedding import FEATURE_KEYS, camera_labels, find_images, model_sha256
from reidlib.retrieval.page import CSV_COLUMNS
from reidlib.retrieval.ranking import rank_gallery
from reidlib.utils import runs
from tests.helpers import assert_one_line_error, run_cli, tiny_cfg, write_jpeg

THUMBNAIL = "url(data:image/jpeg;base64,"


@pytest.fixture(scope="module")
def trained_run(tiny_synthetic, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("retrieval") / "run"
    train(tiny_cfg(tiny_synthetic, epochs=1), run_dir)
    return run_dir


@pytest.fixture(scope="module")
def gallery_file(trained_run, tiny_synthetic):
    out = trained_run.parent / "gallery.npz"
    argv = ["embed", "--run-dir", trained_run, "--images", tiny_synthetic / "bounding_box_test", "--out", out]
    assert main([str(a) for a in argv]) == 0
    return out


def copies(sources: list[Path], folder: Path) -> Path:
    """Copies of ``sources`` under new names in ``folder`` (names that say no camera)."""
    folder.mkdir(parents=True)
    for i, src in enumerate(sources):
        shutil.copy(src, folder / f"query{i}.jpg")
    return folder


def test_embed_writes_what_numpy_and_pandas_read(gallery_file, trained_run, tiny_synthetic):
    f = np.load(gallery_file, allow_pickle=False)  # no pickled objects in the file
    assert set(f.files) == set(FEATURE_KEYS)
    records = read_market_layout(tiny_synthetic).gallery  # sorted by name, as embed finds them
    assert list(f["paths"]) == [str(Path(r.path).absolute()) for r in records]
    assert list(f["camids"]) == [r.camid for r in records]  # from the Market-1501 names
    assert list(f["cameras"]) == [f"c{r.camid + 1}" for r in records]
    checkpoint = runs.load_checkpoint(trained_run)
    assert int(f["model_epoch"]) == 1 and str(f["model_sha256"]) == model_sha256(checkpoint["model"])
    # the features the run's own final evaluation extracted from the same model and images
    run_feats = np.load(trained_run / runs.FEATURES)
    assert np.allclose(f["global"], run_feats["gallery_global"], atol=1e-5)
    assert np.allclose(f["parts"], run_feats["gallery_parts"], atol=1e-5)
    # docs/own-cameras.md's two lines
    f = np.load(gallery_file)
    df = pd.DataFrame({"path": f["paths"], "camera": f["cameras"]}).join(pd.DataFrame(f["global"]).add_prefix("g"))
    assert df.shape == (len(records), 2 + 32)


def test_query_finds_its_own_copy_at_rank_1(gallery_file, trained_run, tiny_synthetic, tmp_path, capsys):
    sources = sorted((tiny_synthetic / "bounding_box_test").glob("*.jpg"))[::6]  # 5 of the 29
    query = copies(sources, tmp_path / "query")
    code, err = run_cli(
        [
            "query",
            "--run-dir",
            trained_run,
            "--gallery",
            gallery_file,
            "--query",
            query,
            "--top",
            3,
            "--out",
            tmp_path / "out",
        ],
        capsys,
    )
    assert code == 0, err
    ranks = pd.read_csv(tmp_path / "out" / "ranks.csv")
    assert tuple(ranks.columns) == CSV_COLUMNS and len(ranks) == 5 * 3
    assert list(ranks["rank"]) == [1, 2, 3] * 5
    first = ranks[ranks["rank"] == 1]
    assert list(first["query_path"]) == [str(query / f"query{i}.jpg") for i in range(5)]
    assert list(first["gallery_path"]) == [str(s.absolute()) for s in sources]
    assert (first["distance"] < 1e-3).all()
    assert (ranks.groupby("query_path")["distance"].diff().dropna() >= 0).all()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["index.html", "ranks.csv"]  # one page
    page = (tmp_path / "out" / "index.html").read_text()
    pictures = set(ranks["query_path"]) | set(ranks["gallery_path"])
    assert page.count(THUMBNAIL) == len(pictures)  # each picture embedded once: the page works when moved
    assert page.count("<figure") == 5 * (1 + 3)
    assert "src=" not in page and "file:" not in page

    # a gallery folder instead of its features file: the same ranking; above 2 queries, pages
    code, err = run_cli(
        [
            "query",
            "--run-dir",
            trained_run,
            "--gallery",
            tiny_synthetic / "bounding_box_test",
            "--query",
            query,
            "--top",
            3,
            "--single-page-max",
            2,
            "--out",
            tmp_path / "again",
        ],
        capsys,
    )
    assert code == 0, err
    written = sorted(p.name for p in (tmp_path / "again").iterdir())
    assert written == ["index.html", "page-0001.html", "ranks.csv", "thumbs"]  # 5 queries, 200 a page
    assert len(list((tmp_path / "again" / "thumbs").iterdir())) == len(pictures)
    again = pd.read_csv(tmp_path / "again" / "ranks.csv")
    assert again[["query_path", "rank", "gallery_path"]].equals(ranks[["query_path", "rank", "gallery_path"]])
    assert np.allclose(again["distance"], ranks["distance"], atol=2e-4)


def test_one_query_image_and_a_top_beyond_the_gallery(gallery_file, trained_run, tiny_synthetic, tmp_path, capsys):
    image = sorted((tiny_synthetic / "bounding_box_test").glob("*.jpg"))[4]
    code, err = run_cli(
        [
            "query",
            "--run-dir",
            trained_run,
            "--gallery",
            gallery_file,
            "--query",
            image,
            "--top",
            100,
            "--out",
            tmp_path / "out",
        ],
        capsys,
    )
    assert code == 0, err
    ranks = pd.read_csv(tmp_path / "out" / "ranks.csv")
    assert len(ranks) == 29 and ranks["gallery_path"].iloc[0] == str(
        image.absolute()
    )  # the whole gallery, itself first
    assert sorted(ranks["gallery_path"]) == sorted(str(p.absolute()) for p in image.parent.glob("*.jpg"))


def random_features(rng, n, dim=12, parts=3):
    g = rng.standard_normal((n, dim)).astype(np.float32)
    p = rng.standard_normal((n, parts, dim // parts)).astype(np.float32)
    return {
        "global": g / np.linalg.norm(g, axis=1, keepdims=True),
        "parts": p / np.linalg.norm(p, axis=2, keepdims=True),
        "camids": np.zeros(n, dtype=np.int64),
    }


@pytest.mark.parametrize("lambda_g", [0.0, 0.3, 1.0])
def test_blocked_ranking_equals_the_dense_evaluation_distance(lambda_g):
    rng = np.random.default_rng(0)
    query, gallery = random_features(rng, 7), random_features(rng, 50)
    dense = query_gallery_distance(query, gallery, lambda_g=lambda_g)  # (7, 50), the oracle
    ranking = rank_gallery(query, gallery, lambda_g=lambda_g, top=5, query_chunk=3, gallery_chunk=8, progress=False)
    assert np.array_equal(ranking.order, np.argsort(dense, axis=1)[:, :5])
    assert np.allclose(ranking.dist, np.sort(dense, axis=1)[:, :5], atol=1e-6)
    whole = rank_gallery(query, gallery, lambda_g=lambda_g, top=80, gallery_chunk=16, progress=False)
    assert whole.order.shape == (7, 50) and np.array_equal(whole.order, np.argsort(dense, axis=1))


def test_images_and_their_cameras(tmp_path):
    named = tmp_path / "named"
    for name in ("0001_c1s1_000001_01.jpg", "0002_c3_f0000100.jpg", "sub/0003_c2_01.png"):
        write_jpeg(named / name)
    (named / "Thumbs.db").write_bytes(b"x")  # a known non-image
    paths = find_images(named)
    assert [p.name for p in paths] == ["0001_c1s1_000001_01.jpg", "0002_c3_f0000100.jpg", "0003_c2_01.png"]
    camids, cameras, source = camera_labels(named, paths)
    assert source == "file names" and list(camids) == [0, 2, 1] and list(cameras) == ["c1", "c3", "c2"]

    folders = tmp_path / "folders"
    for name in ("lobby/a.jpg", "gate/b.bmp", "lobby/day2/c.jpg"):
        write_jpeg(folders / name)
    paths = find_images(folders)
    camids, cameras, source = camera_labels(folders, paths)
    assert source == "folders" and list(cameras) == ["gate", "lobby", "lobby"] and list(camids) == [0, 1, 1]

    write_jpeg(folders / "loose.jpg")  # not every image in a camera folder: no camera at all
    camids, cameras, source = camera_labels(folders, find_images(folders))
    assert source == "unknown" and set(camids) == {-1} and set(cameras) == {""}
    one = find_images(named / "0002_c3_f0000100.jpg")
    assert list(camera_labels(one[0], one)[0]) == [2]


def test_the_fingerprint_follows_the_weights_not_their_layout():
    net = torch.nn.Conv2d(3, 4, 3)
    before = model_sha256(net.state_dict())
    assert (
        model_sha256(
            {k: v.to(memory_format=torch.channels_last) if v.dim() == 4 else v for k, v in net.state_dict().items()}
        )
        == before
    )
    with torch.no_grad():
        net.bias[0] += 1e-6
    assert model_sha256(net.state_dict()) != before


# ---------------------------------------------------------------------------------------------
# Bad input: exit code 2, one line that names the path, and nothing written.


def rewritten(src: Path, dst: Path, **changes) -> Path:
    """A copy of the features file ``src`` with some arrays replaced."""
    with np.load(src) as f:
        arrays = {key: f[key] for key in f.files}
    np.savez(dst, **{**arrays, **changes})
    return dst


def broken(folder: Path, content: bytes) -> Path:
    write_jpeg(folder / "good.jpg")
    (folder / "bad.jpg").write_bytes(content)
    return folder / "bad.jpg"


EMBED_CASES = {  # name: (make(tmp_path) -> (images path, what stderr must name), what stderr must say)
    "missing folder": (lambda t: (t / "nowhere",) * 2, "no such image or folder"),
    "empty folder": (lambda t: ((t / "empty").mkdir() or t / "empty",) * 2, "no images in this folder"),
    "corrupt image": (lambda t: (t / "crops", broken(t / "crops", b"\xff\xd8 not a JPEG" * 20)), "unreadable image"),
    "zero-byte image": (lambda t: (t / "crops", broken(t / "crops", b"")), "empty image file (0 bytes)"),
    "not an image": (
        lambda t: (t / "crops", broken(t / "crops", b"x").rename(t / "crops" / "notes.txt")),
        "not an image",
    ),
}


@pytest.mark.parametrize("case", EMBED_CASES, ids=list(EMBED_CASES))
def test_bad_images_to_embed(case, trained_run, tmp_path, capsys):
    make, needle = EMBED_CASES[case]
    images, culprit = make(tmp_path)
    out = tmp_path / "out.npz"
    code, err = run_cli(["embed", "--run-dir", trained_run, "--images", images, "--out", out], capsys)
    assert_one_line_error(code, err, needle, str(culprit))
    assert not out.exists()


def test_bad_run_dirs_and_out_file(trained_run, tiny_synthetic, tmp_path, capsys):
    images = tiny_synthetic / "query"
    no_checkpoint = tmp_path / "fresh"
    no_checkpoint.mkdir()
    shutil.copy(trained_run / runs.CONFIG, no_checkpoint)
    cases = [
        (no_checkpoint, tmp_path / "a.npz", ["holds no checkpoint", str(no_checkpoint)]),
        (tmp_path, tmp_path / "b.npz", ["holds no config.yaml", str(tmp_path)]),
        (trained_run, tmp_path / "c.feats", ["must end in .npz", "c.feats"]),
    ]
    for run_dir, out, needles in cases:
        code, err = run_cli(["embed", "--run-dir", run_dir, "--images", images, "--out", out], capsys)
        assert_one_line_error(code, err, *needles)
        assert not out.exists()
    code, err = run_cli(
        ["query", "--run-dir", no_checkpoint, "--gallery", images, "--query", images, "--out", tmp_path / "out"], capsys
    )
    assert_one_line_error(code, err, "holds no checkpoint", str(no_checkpoint))
    assert not (tmp_path / "out").exists()


def test_bad_galleries_and_queries(gallery_file, trained_run, tiny_synthetic, tmp_path, capsys):
    query = tiny_synthetic / "query"
    with np.load(gallery_file) as f:
        small = {"global": f["global"][:, :16], "parts": f["parts"][:, :, :4]}
    text = tmp_path / "text.npz"
    text.write_text("not a zip archive")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not a JPEG" * 20)
    (tmp_path / "a_file").write_text("x")
    cases = {  # (gallery, query, extra args): what stderr must say
        (rewritten(gallery_file, tmp_path / "dim.npz", **small), query, ()): [
            "dim.npz: features of another model's dimension",
            "(16,)",
            "(32,)",
        ],
        (
            rewritten(gallery_file, tmp_path / "other.npz", model_sha256=np.array("0" * 64), model_epoch=np.array(7)),
            query,
            (),
        ): ["other.npz: embedded by another model (epoch 7, sha256 000000000000", "epoch 1"],
        (text, query, ()): ["text.npz: not a readable .npz features file"],
        (trained_run / runs.FEATURES, query, ()): ["features.npz: not a features file of `reidlib embed`"],
        (tmp_path / "nowhere.npz", query, ()): ["nowhere.npz: no such folder of images or .npz features file"],
        (gallery_file, tmp_path / "missing.jpg", ()): ["missing.jpg: no such image or folder"],
        (gallery_file, corrupt, ()): ["corrupt.jpg: unreadable image"],
        (gallery_file, query, ("--top", 0)): ["--top must be at least 1, got 0"],
    }
    for (gallery, q, extra), needles in cases.items():
        code, err = run_cli(
            ["query", "--run-dir", trained_run, "--gallery", gallery, "--query", q, *extra, "--out", tmp_path / "out"],
            capsys,
        )
        assert_one_line_error(code, err, *needles)
        assert not (tmp_path / "out").exists()
    code, err = run_cli(
        ["query", "--run-dir", trained_run, "--gallery", gallery_file, "--query", query, "--out", tmp_path / "a_file"],
        capsys,
    )
    assert_one_line_error(code, err, "a_file: exists and is not a folder")


def test_a_gallery_image_gone_since_embedding(trained_run, tiny_synthetic, tmp_path, capsys):
    crops = tmp_path / "crops"
    shutil.copytree(tiny_synthetic / "bounding_box_test", crops)
    gallery = tmp_path / "gallery.npz"
    assert run_cli(["embed", "--run-dir", trained_run, "--images", crops, "--out", gallery], capsys)[0] == 0
    gone = min(crops.glob("*.jpg"))
    query = copies([gone], tmp_path / "query")
    gone.unlink()  # its features are in the file, the picture is not: the page cannot show it
    code, err = run_cli(
        ["query", "--run-dir", trained_run, "--gallery", gallery, "--query", query, "--out", tmp_path / "out"], capsys
    )
    assert_one_line_error(code, err, "image file not found", str(gone))
    assert not (tmp_path / "out").exists()
