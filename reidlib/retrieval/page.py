"""The results of ``python -m reidlib query``: ``index.html`` (each query's top matches as pictures)
and ``ranks.csv`` (one row per query and rank: query path, rank, gallery path, distance).

Shape letters: Q queries, G gallery images, k matches per query.

The pictures are embedded in the page as JPEG thumbnails (base64, 128 pixels high, about 4 KB
each), so the page still shows them when it is moved, mailed or the crops are gone; one picture
per query and per match, each image encoded once however often it appears.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from pathlib import Path
from string import Template

import numpy as np
from tqdm.auto import tqdm

from reidlib.data import read_image
from reidlib.utils import runs

THUMB_HEIGHT = 128
CSV_COLUMNS = ("query_path", "rank", "gallery_path", "distance")

PAGE = Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>$title</title>
<style>
body { font-family: sans-serif; margin: 1.5em; }
table.about td { padding: 0 1em 0 0; font-size: 13px; }
.row { display: flex; gap: 6px; align-items: flex-start; margin: 18px 0; }
figure { margin: 0; width: min-content; min-width: 64px; text-align: center; font-size: 11px; overflow-wrap: anywhere; }
figure.query { border-right: 3px solid #333; padding-right: 8px; margin-right: 4px; }
img { height: ${height}px; display: block; margin: 0 auto 2px; }
</style></head>
<body>
<h1>$title</h1>
<table class="about">$about</table>
$rows
</body></html>
""")


def check_out_dir(out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """``out_dir`` if ``query`` may write its page there: a folder (created when the results are
    written) that holds no earlier page, unless ``overwrite``; else a ConfigError naming it."""
    return runs.check_output(out_dir, overwrite=overwrite, folder=True, holds=("index.html", "ranks.csv"))


def thumbnail(path: str) -> str:
    """The image at ``path`` as a ``data:`` URI: a JPEG ``THUMB_HEIGHT`` pixels high (DataError if unreadable)."""
    img = read_image(path)
    width = max(1, round(img.width * THUMB_HEIGHT / img.height))
    buf = io.BytesIO()
    img.resize((width, THUMB_HEIGHT)).save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(uri: str, path: str, caption: str, query: bool = False) -> str:
    """One picture: the thumbnail, the caption and the file's folder and name (its full path on hover)."""
    name = html.escape("/".join(Path(path).parts[-2:]))
    css = ' class="query"' if query else ""
    return (
        f'<figure{css} title="{html.escape(path)}"><img src="{uri}" alt="{name}">'
        f"<figcaption>{caption}<br>{name}</figcaption></figure>"
    )


def page_html(
    query: dict, gallery: dict, order: np.ndarray, dist: np.ndarray, about: dict[str, str], *, progress: bool = True
) -> str:
    """The page: a row per query, its picture, then its k matches with rank, distance and camera.

    Args:
        query, gallery: dicts with ``paths`` and ``cameras`` (``""`` when unknown).
        order: (Q, k) gallery rows per query, nearest first; dist: (Q, k) their distances.
        about: what the page shows, as label -> text (run, model, gallery, ...).
    """
    uris: dict[str, str] = {}

    def uri(path: str) -> str:
        if path not in uris:
            uris[path] = thumbnail(path)
        return uris[path]

    def camera(name: str) -> str:
        return f"<br>camera {html.escape(name)}" if name else ""

    rows = []
    for q in tqdm(range(len(order)), desc="drawing the page", unit="query", disable=not progress):
        q_path = str(query["paths"][q])
        cells = [_figure(uri(q_path), q_path, "query" + camera(str(query["cameras"][q])), query=True)]
        for rank, (g, d) in enumerate(zip(order[q], dist[q]), start=1):
            g_path = str(gallery["paths"][g])
            cells.append(_figure(uri(g_path), g_path, f"{rank} &middot; {d:.3f}" + camera(str(gallery["cameras"][g]))))
        rows.append('<div class="row">' + "".join(cells) + "</div>")
    queries = f"{len(order)} {'query' if len(order) == 1 else 'queries'}"
    title = f"{queries}, top {order.shape[1]} of {len(gallery['paths'])} gallery images"
    about_rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in about.items())
    return PAGE.substitute(title=html.escape(title), height=THUMB_HEIGHT, about=about_rows, rows="\n".join(rows))


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


def write_results(
    out_dir: str | Path, query: dict, gallery: dict, order: np.ndarray, dist: np.ndarray, about: dict[str, str]
) -> tuple[Path, Path]:
    """Write ``out_dir/index.html`` and ``out_dir/ranks.csv`` (see :func:`page_html` for the arguments).

    The page, which reads every picture, is built before either file is written, so an image that
    has gone since it was embedded stops the command with its path and leaves nothing behind.
    """
    out_dir = Path(out_dir)
    page = page_html(query, gallery, order, dist, about)
    table = ranks_csv(query["paths"], gallery["paths"], order, dist)
    runs.write_text(out_dir / "ranks.csv", table)
    runs.write_text(out_dir / "index.html", page)
    return out_dir / "index.html", out_dir / "ranks.csv"
