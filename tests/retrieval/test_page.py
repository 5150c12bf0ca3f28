"""The query page (reidlib/retrieval/page.py, thumbnails.py) on tiny made-up results, no model: each
distinct image embedded or written once, the one page self-contained, every query on exactly one of
the pages, links that resolve, sizes that grow with the queries only where they should, earlier
results kept or replaced, and nothing left behind by a failure."""

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidlib.cli import build_parser
from reidlib.errors import ConfigError, DataError
from reidlib.retrieval import thumbnails
from reidlib.retrieval.page import SINGLE_PAGE_MAX, count_pages, results, write_results
from reidlib.retrieval.thumbnails import THUMB_HEIGHT, picture_id
from tests.helpers import write_jpeg

K = 4  # matches per query
GALLERY = 30  # images of 10 identities, 3 each, in cameras c1-c3
QUERIES = 40  # identities 1-10 in turn, in camera c4
ABOUT = {"run": "a made-up ranking"}


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """The gallery and the queries, as dicts of ``paths`` and ``cameras``, Market-1501 names."""
    root = tmp_path_factory.mktemp("page")
    g_names = [f"{1 + n // 3:04d}_c{1 + n % 3}s1_{n:06d}_01.jpg" for n in range(GALLERY)]
    q_names = [f"{1 + q % 10:04d}_c4s1_{q:06d}_00.jpg" for q in range(QUERIES)]
    gallery = np.array([str(write_jpeg(root / "gallery" / name, seed=n)) for n, name in enumerate(g_names)])
    query = np.array([str(write_jpeg(root / "query" / name, seed=100 + n)) for n, name in enumerate(q_names)])
    return (
        {"paths": query, "cameras": np.array(["c4"] * QUERIES)},
        {"paths": gallery, "cameras": np.array([f"c{1 + n % 3}" for n in range(GALLERY)])},
    )


def ranking(num_q: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(num_q, K) distinct random gallery rows, the query's own identity at rank 1 for every third
    query; ascending distances."""
    rng = np.random.default_rng(seed)
    order = np.stack([rng.permutation(GALLERY)[:K] for _ in range(num_q)])
    for q in range(0, num_q, 3):
        own = 3 * (q % 10)  # the first gallery image of query q's identity
        order[q] = [own, *[g for g in order[q] if g != own][: K - 1]]
    return order, np.sort(rng.random((num_q, K)), axis=1)


def subset(query: dict, num_q: int) -> dict:
    return {key: value[:num_q] for key, value in query.items()}


def shown(query: dict, gallery: dict, order: np.ndarray) -> Counter:
    """How often the rows show each image (the oracle, a plain loop)."""
    count = Counter()
    for q, row in enumerate(order):
        count[str(query["paths"][q])] += 1
        for g in row:
            count[str(gallery["paths"][g])] += 1
    return count


def same_identity(query: dict, gallery: dict, q: int, g: int) -> bool:
    """Query q and gallery image g share an identity, by the names' first four characters."""
    return Path(query["paths"][q]).name[:4] == Path(gallery["paths"][g]).name[:4]


@pytest.fixture
def encoded(monkeypatch):
    """Each path that is made into a thumbnail, counted."""
    calls = Counter()
    original = thumbnails.thumbnail

    def counting(path):
        calls[path] += 1
        return original(path)

    monkeypatch.setattr(thumbnails, "thumbnail", counting)
    return calls


def test_one_page_embeds_each_image_once_and_nothing_else(crops, encoded, tmp_path):
    query, gallery = subset(crops[0], 12), crops[1]
    order, dist = ranking(12)
    out = tmp_path / "out"
    write_results(out, query, gallery, order, dist, ABOUT, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "ranks.csv"]
    page = (out / "index.html").read_text()

    times = shown(query, gallery, order)
    assert len(times) < 12 * (1 + K)  # gallery crops recur: the test means something
    assert dict(encoded) == dict.fromkeys(times, 1)  # each distinct image made into a thumbnail once
    assert page.count("data:image/jpeg;base64,") == len(times)  # and embedded once
    defined = re.findall(r"^\.(t\d+) \{ width: \d+px; background-image: url\(data:image/jpeg;base64,", page, re.M)
    assert len(defined) == len(set(defined)) == len(times)
    # each picture names its image's class (one class an image), as often as the rows show the image
    pictures = re.findall(r'<figure[^>]* title="([^"]+)"><i class="pic (t\d+)"', page)
    assert Counter(path for path, _ in pictures) == times
    assert len(set(pictures)) == len({cls for _, cls in pictures}) == len(times)
    assert {cls for _, cls in pictures} == set(defined)
    # self-contained: no file, address or script outside it
    for outside in ("src=", "href=", "<script", "<link", "file:", "thumbs/", "http"):
        assert outside not in page, outside
    assert re.findall(r"url\((?!data:)", page) == []
    queries = re.findall(r'<figure class="query" title="([^"]+)"', page)
    assert queries == list(query["paths"])


def pages_of(out: Path) -> list[Path]:
    return sorted(out.glob("page-*.html"))


def links(html_file: Path) -> list[str]:
    return re.findall(r'(?:href|src)="([^"]+)"', html_file.read_text())


def test_pages_show_every_query_once_and_write_each_thumbnail_once(crops, encoded, tmp_path):
    query, gallery = subset(crops[0], 23), crops[1]
    order, dist = ranking(23)
    out = tmp_path / "out"
    write_results(out, query, gallery, order, dist, ABOUT, single_page_max=10, per_page=5, progress=False)
    pages = pages_of(out)
    assert [p.name for p in pages] == [f"page-000{n}.html" for n in range(1, 6)]  # 23 queries, 5 a page
    assert sorted(p.name for p in out.iterdir()) == ["index.html", *[p.name for p in pages], "ranks.csv", "thumbs"]

    times = shown(query, gallery, order)
    assert dict(encoded) == dict.fromkeys(times, 1)
    assert sorted(p.name for p in (out / "thumbs").iterdir()) == sorted(f"{picture_id(p)}.jpg" for p in times)
    with Image.open(next((out / "thumbs").iterdir())) as thumb:
        assert thumb.format == "JPEG" and thumb.height == THUMB_HEIGHT

    on_page = {p.name: re.findall(r'<figure class="query" title="([^"]+)"', p.read_text()) for p in pages}
    assert [len(qs) for qs in on_page.values()] == [5, 5, 5, 5, 3]
    assert sum(on_page.values(), []) == list(query["paths"])  # every query once, in order
    for html_file in [out / "index.html", *pages]:
        text = html_file.read_text()
        assert "data:" not in text and "<script" not in text and "http" not in text
        for target in links(html_file):
            assert not target.startswith("/") and (out / target).is_file(), (html_file.name, target)
    # the index links every page; each page the index, the one before and the one after
    assert links(out / "index.html") == [p.name for p in pages]
    for n, html_file in enumerate(pages, start=1):
        nav = [t for t in links(html_file) if not t.startswith("thumbs/")]
        expect = ["index.html"]
        expect += [f"page-{n - 1:04d}.html"] if n > 1 else []
        expect += [f"page-{n + 1:04d}.html"] if n < len(pages) else []
        assert nav == expect * 2, html_file.name  # above the rows and below them
        shown_here = re.findall(r'src="(thumbs/[^"]+)"', html_file.read_text())
        assert len(shown_here) == len(on_page[html_file.name]) * (1 + K)


def test_the_index_counts_each_page_s_rank_1_identities(crops, tmp_path):
    query, gallery = crops
    order, dist = ranking(QUERIES, seed=1)
    out = tmp_path / "out"
    write_results(out, query, gallery, order, dist, ABOUT, single_page_max=0, per_page=15, progress=False)
    index = (out / "index.html").read_text()
    rows = re.findall(r'<tr><td><a href="page-\d+\.html">\d+</a></td>(.*?)</tr>', index)
    assert len(rows) == 3
    for n, row in enumerate(rows):
        qs = range(15 * n, min(15 * (n + 1), QUERIES))
        hits = sum(same_identity(query, gallery, q, order[q, 0]) for q in qs)  # the oracle
        cells = re.findall(r"<td>(.*?)</td>", row)
        assert cells[:4] == [
            f"{qs[0] + 1}-{qs[-1] + 1}",
            Path(query["paths"][qs[0]]).name,
            Path(query["paths"][qs[-1]]).name,
            f"{hits} of {len(qs)}",
        ]
        assert cells[4] == f"{len(qs)} of {len(qs)}"  # every rank 1 in another camera than c4
        assert cells[5] == f"{np.median(dist[qs, 0]):.3f}"
    # the matches of the query's identity are outlined, wherever they rank
    outlined = sum(p.read_text().count('<figure class="same"') for p in pages_of(out))
    assert outlined == sum(same_identity(query, gallery, q, g) for q in range(QUERIES) for g in order[q])
    assert results(query, gallery, order, dist).same.sum() == outlined


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def test_a_page_s_size_is_bounded_and_the_total_grows_linearly(crops, tmp_path):
    sizes = {}
    for num_q in (20, 40):
        order, dist = ranking(num_q)
        out = tmp_path / str(num_q)
        write_results(
            out, subset(crops[0], num_q), crops[1], order, dist, ABOUT, single_page_max=0, per_page=5, progress=False
        )
        pages = [p.stat().st_size for p in pages_of(out)]
        sizes[num_q] = {"pages": sum(pages), "largest": max(pages), "all": folder_bytes(out)}
    assert sizes[40]["largest"] <= 1.05 * sizes[20]["largest"]  # twice the queries, not larger pages
    assert 1.9 <= sizes[40]["pages"] / sizes[20]["pages"] <= 2.1  # twice the rows
    # the thumbnails of the 30 gallery crops are shared: the whole grows at most in proportion
    assert 1.3 <= sizes[40]["all"] / sizes[20]["all"] <= 2.0


def test_earlier_results_are_kept_or_replaced_whole(crops, tmp_path):
    query, gallery = subset(crops[0], 12), crops[1]
    order, dist = ranking(12)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    write_results(out, query, gallery, order, dist, ABOUT, single_page_max=0, per_page=3, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(ConfigError, match=r"already holds index.html, ranks.csv, thumbs, page-0001.html; give --ov"):
        write_results(out, query, gallery, order, dist, ABOUT, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    write_results(out, query, gallery, order, dist, ABOUT, overwrite=True, progress=False)  # one page now
    assert sorted(p.name for p in out.iterdir()) == ["index.html", "notes.txt", "ranks.csv"]
    write_results(
        out, query, gallery, order, dist, ABOUT, single_page_max=0, per_page=5, overwrite=True, progress=False
    )
    assert [p.name for p in pages_of(out)] == ["page-0001.html", "page-0002.html", "page-0003.html"]
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("single_page_max", [SINGLE_PAGE_MAX, 0])
def test_an_image_gone_leaves_nothing_behind(crops, tmp_path, single_page_max):
    query, gallery = subset(crops[0], 6), dict(crops[1])
    order, dist = ranking(6)
    gone = tmp_path / "gone.jpg"
    gallery["paths"] = gallery["paths"].astype(object)  # room for a longer path
    gallery["paths"][order[5, 1]] = str(gone)  # the last image the rows show
    with pytest.raises(DataError, match=f"{gone}: image file not found"):
        write_results(
            tmp_path / "out",
            query,
            gallery,
            order,
            dist,
            ABOUT,
            single_page_max=single_page_max,
            per_page=2,
            progress=False,
        )
    assert list(tmp_path.iterdir()) == []  # no out folder, no hidden folder beside it


def test_layouts_and_bad_values():
    assert count_pages(SINGLE_PAGE_MAX) == 0 and count_pages(SINGLE_PAGE_MAX + 1) == 3
    assert count_pages(10, 0, 5) == 2 and count_pages(11, 0, 5) == 3 and count_pages(10, 10) == 0
    with pytest.raises(ConfigError, match="--single-page-max must be at least 0, got -1"):
        count_pages(5, -1)
    with pytest.raises(ConfigError, match="per_page must be at least 1, got 0"):
        count_pages(5, 0, 0)
    args = build_parser().parse_args(["query", "--run-dir", "r", "--gallery", "g", "--query", "q", "--out", "o"])
    assert args.single_page_max == SINGLE_PAGE_MAX  # the command's default is the library's
    query = {"paths": np.array(["a.jpg", "b.jpg"]), "cameras": np.array(["", ""])}
    gallery = {"paths": np.array(["c.jpg", "d.jpg", "e.jpg"]), "cameras": np.array(["", "", ""])}
    order = np.array([[0, 1], [2, 1]])
    with pytest.raises(DataError, match=r"order \(2, 2\) and dist \(2, 3\) must both be \(Q, k\) with Q = 2"):
        results(query, gallery, order, np.zeros((2, 3)))
    with pytest.raises(DataError, match="order holds gallery rows 0..3; the gallery has 3 images"):
        results(query, gallery, order + np.array([[0, 0], [0, 2]]), np.zeros((2, 2)))
    assert results(query, gallery, order, np.zeros((2, 2))).same is None  # names without identities
