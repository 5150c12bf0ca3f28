"""The results of ``python -m reidlib query``: each query's top matches as pictures, and ``ranks.csv``
(one row per query and rank: query path, rank, gallery path, distance).

Shape letters: Q queries, G gallery images, k matches per query.

Every picture is a JPEG thumbnail 128 pixels high (about 3 KB), made once per distinct image
however many rows show it (:mod:`reidlib.retrieval.thumbnails`). Two layouts, by the number of
queries (:func:`count_pages`):

- **One page**, up to ``SINGLE_PAGE_MAX`` queries (500; ``query --single-page-max N``): a
  self-contained ``index.html`` that shows its pictures when it is moved or mailed, or when the
  crops are gone. Each thumbnail is embedded once, as a CSS class (``.t7 {background-image:
  url(data:...)}``) that every picture of that image names, so a gallery crop in forty rows costs
  its bytes once. No script, no file beside it.
- **Pages**, above it: ``index.html`` lists the pages, each with its queries and figures (how
  many found their own identity at rank 1, ...); ``page-0001.html``, ``page-0002.html``, ... hold
  ``QUERIES_PER_PAGE`` (200) queries each, with links to the previous and the next page. Each
  thumbnail is a file ``thumbs/ID.jpg`` (ID: a hash of the image's path, the same in every run),
  written once and loaded lazily by the pages that show it. A page's size depends on its 200 rows,
  not on the number of queries. Every page opens from the folder alone: relative links and
  ``<img>`` only (no server, no network, no script reading local files, which browsers block).
  Move the folder, not one page.

Identities: when every query and gallery file name starts like Market-1501's ``PPPP_cC``
(:func:`reidlib.retrieval.embedding.name_identities`), the matches of the query's identity are
outlined in green and counted; otherwise, as for your own crops, they are unknown.

Everything is written into a hidden folder beside ``out_dir``, then moved into place: an image
that has gone since it was embedded stops the command with its path and leaves nothing behind,
and ``--overwrite`` replaces an earlier result's files (its pages and ``thumbs/`` too) and no other.
"""

from __future__ import annotations

import csv
import html
import io
import os
import re
import shutil
import tempfile
from pathlib import Path
from string import Template
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from reidlib.errors import ConfigError, DataError
from reidlib.retrieval.embedding import name_identities
from reidlib.retrieval.thumbnails import (
    THUMB_HEIGHT,
    THUMBS,
    Picture,
    embedded_thumbnails,
    shown_paths,
    thumbnail_files,
)
from reidlib.utils import runs

SINGLE_PAGE_MAX = 500  # queries up to which index.html is one self-contained page
QUERIES_PER_PAGE = 200  # queries on each page-NNNN.html above it
CSV_COLUMNS = ("query_path", "rank", "gallery_path", "distance")
PAGE_NAME = re.compile(r"page-\d{4,}\.html")

STYLE = f"""
body {{ font-family: sans-serif; margin: 1.5em; }}
table.about td, table.pages td, table.pages th {{ padding: 0 1em 0 0; font-size: 13px; text-align: left; }}
nav {{ margin: 1em 0; font-size: 14px; }}
.row {{ display: flex; gap: 6px; align-items: flex-start; margin: 18px 0; }}
figure {{ margin: 0; width: min-content; min-width: 64px; text-align: center; font-size: 11px;
  overflow-wrap: anywhere; }}
figure.query {{ border-right: 3px solid #333; padding-right: 8px; margin-right: 4px; }}
.pic {{ height: {THUMB_HEIGHT}px; display: block; margin: 0 auto 2px; background-size: 100% 100%; }}
figure.same .pic {{ outline: 3px solid #1a1; outline-offset: -3px; }}
"""

DOCUMENT = Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>$title</title>
<style>$style</style></head>
<body>
<h1>$title</h1>
$body
</body></html>
""")


def page_name(number: int) -> str:
    """The file of page ``number`` (from 1): ``page-0001.html``."""
    return f"page-{number:04d}.html"


def earlier_outputs(out_dir: Path) -> list[Path]:
    """What an earlier ``query`` wrote into ``out_dir``: index.html, ranks.csv, thumbs/ and its pages."""
    if not out_dir.is_dir():
        return []
    named = [out_dir / name for name in ("index.html", "ranks.csv", THUMBS) if (out_dir / name).exists()]
    return named + sorted(p for p in out_dir.iterdir() if PAGE_NAME.fullmatch(p.name))


def check_out_dir(out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """``out_dir`` if ``query`` may write its results there: a folder (created when the results are
    written) that holds no earlier results, unless ``overwrite``; else a ConfigError naming it."""
    out_dir = Path(out_dir)
    found = [p.name for p in earlier_outputs(out_dir)]
    pages = [name for name in found if PAGE_NAME.fullmatch(name)]
    named = [name for name in found if name not in pages]
    return runs.check_output(out_dir, overwrite=overwrite, folder=True, holds=(*named, *pages[:1]))


def count_pages(num_queries: int, single_page_max: int = SINGLE_PAGE_MAX, per_page: int = QUERIES_PER_PAGE) -> int:
    """How many ``page-NNNN.html`` the results of ``num_queries`` take: 0 up to ``single_page_max``
    (one self-contained ``index.html``), else one per ``per_page`` queries. A ConfigError naming
    the value unless ``single_page_max >= 0`` and ``per_page >= 1``."""
    if single_page_max < 0:
        raise ConfigError(f"--single-page-max must be at least 0, got {single_page_max}")
    if per_page < 1:
        raise ConfigError(f"per_page must be at least 1, got {per_page}")
    return 0 if num_queries <= single_page_max else -(-num_queries // per_page)


class Results(NamedTuple):
    """What the page shows (:func:`results`)."""

    query: dict  # paths (Q,), cameras (Q,) ("" when unknown)
    gallery: dict  # paths (G,), cameras (G,)
    order: np.ndarray  # (Q, k) gallery rows, nearest first
    dist: np.ndarray  # (Q, k) their distances
    same: np.ndarray | None  # (Q, k) True where a match has the query's identity; None: identities unknown
    known: np.ndarray | None  # (Q,) True where the query's identity is known


def results(query: dict, gallery: dict, order: np.ndarray, dist: np.ndarray) -> Results:
    """The page's :class:`Results`, with the identities the names give (:func:`name_identities`),
    when every query and gallery name gives one; a DataError naming the array at fault unless
    ``order`` and ``dist`` are (Q, k) and ``order`` holds gallery rows."""
    num_q, num_g = len(query["paths"]), len(gallery["paths"])
    if order.ndim != 2 or order.shape != dist.shape or len(order) != num_q:
        raise DataError(f"order {order.shape} and dist {dist.shape} must both be (Q, k) with Q = {num_q} queries")
    if order.size and not 0 <= order.min() <= order.max() < num_g:
        raise DataError(f"order holds gallery rows {order.min()}..{order.max()}; the gallery has {num_g} images")
    q_ids, g_ids = name_identities(query["paths"]), name_identities(gallery["paths"])
    if q_ids is None or g_ids is None:
        return Results(query, gallery, order, dist, None, None)
    known = q_ids > 0
    return Results(query, gallery, order, dist, (g_ids[order] == q_ids[:, None]) & known[:, None], known)


def summary(res: Results, rows: slice) -> dict[str, str]:
    """The figures of the queries in ``rows``: how many have a match of their identity at rank 1
    (when the names give identities), how many a rank-1 match in another camera (when cameras are
    known), and the median rank-1 distance. Every range of the same results has the same keys."""
    figures = {}
    if res.same is not None:
        figures["rank 1 same identity"] = f"{int(res.same[rows, 0].sum())} of {int(res.known[rows].sum())}"
    q_cams, g_cams = np.asarray(res.query["cameras"]), np.asarray(res.gallery["cameras"])
    if (q_cams != "").any() and (g_cams != "").any():
        q_cams, g_cams = q_cams[rows], g_cams[res.order[rows, 0]]
        both = (q_cams != "") & (g_cams != "")
        figures["rank 1 in another camera"] = f"{int((both & (q_cams != g_cams)).sum())} of {int(both.sum())}"
    figures["median rank-1 distance"] = f"{np.median(res.dist[rows, 0]):.3f}"
    return figures


def _picture(pic: Picture, name: str, embedded: bool) -> str:
    if embedded:  # the class carries the width and the embedded image
        return f'<i class="pic {pic.src}" role="img" aria-label="{name}"></i>'
    return f'<img class="pic" src="{pic.src}" width="{pic.width}" height="{THUMB_HEIGHT}" loading="lazy" alt="{name}">'


def _figure(pic: Picture, path: str, caption: str, css: str, embedded: bool) -> str:
    """One picture: the thumbnail, the caption and the file's folder and name (its full path on hover)."""
    name = html.escape("/".join(Path(path).parts[-2:]))
    css = f' class="{css}"' if css else ""
    return (
        f'<figure{css} title="{html.escape(path)}">{_picture(pic, name, embedded)}'
        f"<figcaption>{caption}<br>{name}</figcaption></figure>"
    )


def _row(res: Results, q: int, pictures: dict[str, Picture], *, embedded: bool) -> str:
    """Query ``q``'s row: its picture, then its k matches with rank, distance and camera."""

    def camera(name: str) -> str:
        return f"<br>camera {html.escape(name)}" if name else ""

    q_path = str(res.query["paths"][q])
    cells = [_figure(pictures[q_path], q_path, "query" + camera(str(res.query["cameras"][q])), "query", embedded)]
    for rank, (g, d) in enumerate(zip(res.order[q], res.dist[q]), start=1):
        g_path = str(res.gallery["paths"][g])
        caption = f"{rank} &middot; {d:.3f}" + camera(str(res.gallery["cameras"][g]))
        same = res.same is not None and res.same[q, rank - 1]
        cells.append(_figure(pictures[g_path], g_path, caption, "same" if same else "", embedded))
    return '<div class="row">' + "".join(cells) + "</div>"


def _table(rows: dict[str, str]) -> str:
    return "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows.items())


def _document(title: str, body: str, style: str = STYLE) -> str:
    return DOCUMENT.substitute(title=html.escape(title), style=style, body=body)


def _what(res: Results, rows: slice | None = None) -> str:
    """``10,000 queries, top 10 of 20,000 gallery images``; of ``rows``: ``queries 201-400 of 10,000, ...``."""
    num_q, k = res.order.shape
    top = f"top {k} of {len(res.gallery['paths']):,} gallery images"
    if rows is None:
        return f"{num_q:,} {'query' if num_q == 1 else 'queries'}, {top}"
    return f"{'queries' if rows.stop - rows.start > 1 else 'query'} {_span(rows)} of {num_q:,}, {top}"


def _span(rows: slice) -> str:
    """The queries of ``rows``, counted from 1: ``201-400``, or ``401`` alone."""
    return f"{rows.start + 1:,}-{rows.stop:,}" if rows.stop - rows.start > 1 else f"{rows.stop:,}"


def _legend(res: Results) -> dict[str, str]:
    """What the green outline means, when the names give identities."""
    if res.same is None:
        return {}
    return {"outlined in green": "a match of the query's identity (read from the file names, PPPP_cC...)"}


def one_page(res: Results, about: dict[str, str], *, progress: bool = True) -> str:
    """The self-contained ``index.html``: a row per query, each distinct image embedded once."""
    shown = shown_paths(res.query["paths"], res.gallery["paths"], res.order)
    pictures, rules = embedded_thumbnails(shown, progress=progress)
    rows = [_row(res, q, pictures, embedded=True) for q in range(len(res.order))]
    figures = summary(res, slice(None))
    body = f'<table class="about">{_table({**about, **_legend(res), **figures})}</table>\n' + "\n".join(rows)
    return _document(_what(res), body, STYLE + rules)


def _nav(page: int, num_pages: int) -> str:
    """The links of a page: the index, the previous and the next page."""
    links = [f'<a href="index.html">all {num_pages} pages</a>']
    links += [f'<a href="{page_name(page - 1)}">previous</a>'] if page > 1 else []
    links += [f"page {page} of {num_pages}"]
    links += [f'<a href="{page_name(page + 1)}">next</a>'] if page < num_pages else []
    return "<nav>" + " &middot; ".join(links) + "</nav>"


def write_pages(
    folder: Path, res: Results, about: dict[str, str], *, per_page: int = QUERIES_PER_PAGE, progress: bool = True
) -> int:
    """Write ``thumbs/``, ``page-0001.html``, ... (``per_page`` queries each) and the ``index.html``
    that lists them, with each page's figures, into ``folder``; returns the number of pages."""
    pictures = thumbnail_files(
        shown_paths(res.query["paths"], res.gallery["paths"], res.order), folder, progress=progress
    )
    num_q = len(res.order)
    num_pages = count_pages(num_q, 0, per_page)
    listed = []
    for page in tqdm(range(1, num_pages + 1), desc="writing pages", unit="page", disable=not progress):
        rows = slice((page - 1) * per_page, min(page * per_page, num_q))
        figures = summary(res, rows)
        drawn = "\n".join(_row(res, q, pictures, embedded=False) for q in range(rows.start, rows.stop))
        nav = _nav(page, num_pages)
        table = _table({**about, **_legend(res), **figures})
        body = f'{nav}\n<table class="about">{table}</table>\n{drawn}\n{nav}'
        (folder / page_name(page)).write_text(_document(_what(res, rows), body), encoding="utf-8")
        first, last = (html.escape(Path(str(res.query["paths"][q])).name) for q in (rows.start, rows.stop - 1))
        cells = [f'<a href="{page_name(page)}">{page}</a>', _span(rows), first, last]
        listed.append("<tr>" + "".join(f"<td>{c}</td>" for c in [*cells, *figures.values()]) + "</tr>")
    figures = summary(res, slice(None))
    layout = {
        "pages": f"{num_pages:,} of up to {per_page} queries each; {len(pictures):,} thumbnails in {THUMBS}/ "
        "(move the folder, not one page)"
    }
    header = "".join(f"<th>{h}</th>" for h in ["page", "queries", "first query", "last query", *figures])
    body = (
        f'<table class="about">{_table({**about, **layout, **figures})}</table>\n'
        f'<table class="pages"><tr>{header}</tr>\n' + "\n".join(listed) + "</table>"
    )
    (folder / "index.html").write_text(_document(_what(res), body), encoding="utf-8")
    return num_pages


def ranks_csv(query_paths: np.ndarray, gallery_paths: np.ndarray, order: np.ndarray, dist: np.ndarray) -> str:
    """``ranks.csv``: a header (CSV_COLUMNS), then Q x k rows, query by query, rank 1 first."""
    num_q, k = order.shape
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(
        zip(
            np.repeat(np.asarray(query_paths), k),
            np.tile(np.arange(1, k + 1), num_q),
            np.asarray(gallery_paths)[order.reshape(-1)],
            (f"{d:.4f}" for d in dist.reshape(-1)),
        )
    )
    return buf.getvalue()


def _publish(stage: Path, out_dir: Path) -> None:
    """Move the results written in ``stage`` into ``out_dir``: the folder itself when ``out_dir`` is
    new; else each file, after removing the earlier results (``check_out_dir`` allowed it)."""
    if not out_dir.exists():
        stage.chmod(0o755)  # mkdtemp makes it private; the results are an ordinary folder
        os.replace(stage, out_dir)
        return
    for old in earlier_outputs(out_dir):
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink()
    for item in sorted(stage.iterdir()):
        os.replace(item, out_dir / item.name)
    stage.rmdir()


def write_results(
    out_dir: str | Path,
    query: dict,
    gallery: dict,
    order: np.ndarray,
    dist: np.ndarray,
    about: dict[str, str],
    *,
    single_page_max: int = SINGLE_PAGE_MAX,
    per_page: int = QUERIES_PER_PAGE,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write the page (one page up to ``single_page_max`` queries, else pages of ``per_page``) and
    ``ranks.csv`` into ``out_dir``; see the module docstring.

    Args:
        query, gallery: dicts with ``paths`` and ``cameras`` (``""`` when unknown).
        order: (Q, k) gallery rows per query, nearest first; dist: (Q, k) their distances.
        about: what the page shows, as label -> text (run, model, gallery, ...).
        overwrite: replace the earlier results in ``out_dir`` (else they are kept: ConfigError).

    Returns:
        ``out_dir/index.html``.
    """
    out_dir = Path(out_dir)
    paged = count_pages(len(order), single_page_max, per_page) > 0
    res = results(query, gallery, order, dist)
    check_out_dir(out_dir, overwrite=overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        if paged:
            write_pages(stage, res, about, per_page=per_page, progress=progress)
        else:
            (stage / "index.html").write_text(one_page(res, about, progress=progress), encoding="utf-8")
        (stage / "ranks.csv").write_text(ranks_csv(query["paths"], gallery["paths"], order, dist), encoding="utf-8")
        _publish(stage, out_dir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # gone already when published
    return out_dir / "index.html"
