"""`python -m reidlib query` over a 100,000-image gallery: time and peak memory, measured in one run;
with ``--page``, the page it writes for 10,000 queries, beside the single page it wrote before.

    .venv/bin/python -m benchmarks.bench_query [--gallery 100000] [--top 10] [--threads 0]
    .venv/bin/python -m benchmarks.bench_query --page [--queries 10000] [--crops 20000] [--compare 1000] [--top 10]

**The gallery is a features file of synthetic vectors, not 100,000 rendered images**: unit-norm
random global (D) and stripe (P x D/P) features, written by ``reidlib.retrieval.embedding.save_features``
with the run's fingerprint, whose paths point at the synthetic ``tiny`` set's 29 gallery crops in
turn (so that the page can draw them). The queries are that set's 23 query crops; their own
features are planted in the gallery at random rows, and each must come back at rank 1 (checked).
The run is the CPU recipe's model (``configs/real-cpu.yaml``: MobileNetV2, D 512, P 4, 128x64),
untrained (``epochs=0``, no ImageNet start): speed and memory do not depend on the weights.

Rows, each timed with its peak resident memory:

1. ``python -m reidlib query`` end to end, in a child process as a user runs it (Python and torch
   start-up, the run's model, reading the gallery file, embedding the queries, ranking, the page).
2. Its steps in this process: reading the gallery file, and the exact blocked ranking
   (``rank_gallery``) that ``query`` uses, for the 23 crops and for 256 random query vectors
   (how its cost grows with the number of queries).
3. What faiss would cost instead. The evaluation's distance (a sum of two Euclidean distances) is
   no single L2 or inner-product distance, so faiss can only propose candidates under the squared
   distance (``faiss_search.embed``) to be re-ranked exactly; the rows time building the index and
   searching top-R candidates, before any re-ranking, and say how many of the exact top k the
   candidates hold. A flat index is the same matrix product as the exact ranking; IVF must be
   trained on the gallery first.

``--page``: only the page (:func:`reidlib.retrieval.page.write_results`), no model. The crops are
``--crops`` gallery and ``--queries`` query JPEGs, each a copy, under its own Market-1501 name, of
one of the synthetic ``tiny`` set's 52 rendered crops (realistic thumbnails, quick to make); the
ranking is made up: ``--top`` distinct gallery rows per query, the query's identity at rank 1 for
every other query. Rows, each written into a fresh folder, timed, and measured on disk:

1. the page as ``query`` wrote it before (:func:`per_row_page`: one ``index.html``, every thumbnail
   embedded in every row that shows it), for ``--compare`` queries, where it is still feasible;
2. the one self-contained page now (each thumbnail embedded once), forced to ``--compare`` queries;
3. the pages now, for ``--compare`` and for ``--queries`` queries (``thumbs/`` and pages of 200).

A browser opens the index and one page at a time, so the largest HTML file is what decides how
fast a page opens; the thumbnails of a page load lazily, as it scrolls.
"""

from __future__ import annotations

import argparse
import base64
import html
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks.memory_usage import reset_peak, rss_gib
from reidlib.config import load_config
from reidlib.data.synthetic import generate
from reidlib.engine.trainer import train
from reidlib.neighbours.faiss_index import build_index, embed
from reidlib.retrieval import embed_images, load_features, load_run, rank_gallery, save_features
from reidlib.retrieval.page import QUERIES_PER_PAGE, ranks_csv, write_results
from reidlib.retrieval.thumbnails import thumbnail

ROOT = Path(__file__).resolve().parents[1]
MANY_QUERIES = 256  # a second query set, random vectors: how the ranking's cost grows with the queries


def make_run(tmp: Path) -> tuple[Path, Path]:
    """The tiny synthetic set and an untrained run of the CPU recipe's model on it."""
    data = tmp / "tiny"
    generate(data, preset="tiny", seed=0)
    cfg = load_config(
        ROOT / "configs" / "real-cpu.yaml",
        {
            "data_dir": str(data),
            "epochs": 0,
            "pretrained": None,
            "m": 20,
            "batch_size": 16,
            "threads": 0,
        },
    )
    train(cfg, tmp / "run")
    return data, tmp / "run"


def unit_features(rng, size: int, dim: int, parts: int) -> dict[str, np.ndarray]:
    """``size`` random unit global (size, dim) and stripe (size, parts, dim / parts) features."""
    g = rng.standard_normal((size, dim), dtype=np.float32)
    p = rng.standard_normal((size, parts, dim // parts), dtype=np.float32)
    return {
        "global": g / np.linalg.norm(g, axis=1, keepdims=True),
        "parts": p / np.linalg.norm(p, axis=2, keepdims=True),
    }


def synthetic_gallery(rng, run, query: dict, crops: list[str], size: int) -> tuple[dict, np.ndarray]:
    """``size`` random unit features with the queries' own features planted at random rows."""
    gallery = unit_features(rng, size, run.cfg.model.feat_dim, run.cfg.model.num_parts)
    paths = np.array(crops)[np.arange(size) % len(crops)]
    planted = rng.choice(size, len(query["paths"]), replace=False)
    gallery["global"][planted], gallery["parts"][planted], paths[planted] = (
        query["global"],
        query["parts"],
        query["paths"],
    )
    camids = np.arange(size) % 6
    cameras = np.array([f"c{c + 1}" for c in range(6)])[camids]
    return {**gallery, "paths": paths, "camids": camids, "cameras": cameras}, planted


def measure(name: str, rows: list, fn, *args, **kwargs) -> object:
    """Run ``fn(*args, **kwargs)``; add (name, seconds, peak RSS, its rise above the RSS before) to ``rows``."""
    before = rss_gib()[0]
    reset_peak()
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    seconds, peak = time.perf_counter() - start, rss_gib()[1]
    rows.append((name, seconds, peak, peak - before))
    return result


# The command line's own main in a fresh interpreter, which then reports its peak RSS (VmHWM: the
# child's own, unlike getrusage's, which can carry the parent's size over the fork).
CHILD = (
    "import sys; from benchmarks.memory_usage import rss_gib; from reidlib.cli import main; code = main(sys.argv[1:]); "
    "print('peak', rss_gib()[1]); sys.exit(code)"
)


def end_to_end(argv: list[str]) -> tuple[float, float]:
    """Seconds and peak RSS (GiB) of ``python -m reidlib ARGS``, run in a child process."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, *argv], cwd=ROOT, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    return seconds, float(done.stdout.split()[-1])


def faiss_rows(
    gallery: dict, queries: dict[str, dict], exact: dict[str, np.ndarray], lambda_g: float, top_r: int, rows: list
) -> None:
    """Build a flat and an IVF index over the squared-distance embedding; search each query set's
    top-R candidates and count how many of its exact top k they hold."""
    g_global, g_parts = torch.from_numpy(gallery["global"]), torch.from_numpy(gallery["parts"])

    def slots(r):
        return embed(g_global[r], g_parts[r], None, lambda_g=lambda_g)

    dim = 2 * g_global.shape[1]
    for kind in ("flat", "ivf"):
        index = measure(
            f"faiss {kind}: build over the gallery",
            rows,
            build_index,
            kind,
            slots,
            len(g_global),
            dim,
            device=torch.device("cpu"),
            nprobe=64,
        )
        for name, query in queries.items():
            q = embed(torch.from_numpy(query["global"]), torch.from_numpy(query["parts"]), None, lambda_g=lambda_g)
            cand = measure(f"faiss {kind}: top-{top_r} candidates, {name}", rows, index.search, q, top_r).numpy()
            held = np.mean([len(set(e) & set(c)) / len(e) for e, c in zip(exact[name], cand)])
            rows[-1] = (*rows[-1], f"hold {100 * held:.0f}% of the exact top {exact[name].shape[1]}")


def page_crops(folder: Path, templates: list[Path], gallery: int, queries: int) -> tuple[dict, dict]:
    """``gallery`` and ``queries`` JPEG copies of the ``templates`` under Market-1501 names (the
    gallery: 4 images per identity in cameras c1-c4; the queries: camera c5), as the page's dicts."""

    def copies(sub: str, names: list[str]) -> dict:
        (folder / sub).mkdir(parents=True)
        paths = [folder / sub / name for name in names]
        for n, path in enumerate(paths):
            shutil.copyfile(templates[n % len(templates)], path)
        return {"paths": np.array([str(p) for p in paths]), "cameras": np.array([n.split("_")[1][:2] for n in names])}

    ids = gallery // 4
    g_names = [f"{1 + n // 4:04d}_c{1 + n % 4}s1_{n:06d}_01.jpg" for n in range(gallery)]
    q_names = [f"{1 + q % ids:04d}_c5s1_{q:06d}_00.jpg" for q in range(queries)]
    return copies("query", q_names), copies("gallery", g_names)


def made_up_ranking(rng, num_q: int, num_g: int, top: int) -> tuple[np.ndarray, np.ndarray]:
    """(num_q, top) distinct gallery rows, a random start and stride each; every other query starts
    at its identity's first gallery image (as :func:`page_crops` names them), so it is right at rank 1."""
    own = 4 * (np.arange(num_q) % (num_g // 4))
    start = np.where(np.arange(num_q) % 2 == 0, own, rng.integers(0, num_g, num_q))
    stride = rng.integers(1, num_g // top, num_q)
    order = (start[:, None] + stride[:, None] * np.arange(top)) % num_g
    return order, np.sort(rng.random((num_q, top), dtype=np.float32), axis=1)


def per_row_page(out: Path, query: dict, gallery: dict, order: np.ndarray, dist: np.ndarray) -> None:
    """The page as ``query`` wrote it before paging (commit b05e71f), for the comparison: one
    ``index.html`` whose every picture carries its thumbnail, each image encoded once but embedded
    in every row that shows it (its style and table of what it shows left out: under 1 KB); and
    ``ranks.csv``."""
    uris: dict[str, str] = {}

    def figure(path: str, caption: str, css: str = "") -> str:
        if path not in uris:
            uris[path] = "data:image/jpeg;base64," + base64.b64encode(thumbnail(path)[1]).decode("ascii")
        name = html.escape("/".join(Path(path).parts[-2:]))
        return (
            f'<figure{css} title="{html.escape(path)}"><img src="{uris[path]}" alt="{name}">'
            f"<figcaption>{caption}<br>{name}</figcaption></figure>"
        )

    rows = []
    for q in range(len(order)):
        cells = [figure(str(query["paths"][q]), f"query<br>camera {query['cameras'][q]}", ' class="query"')]
        for rank, (g, d) in enumerate(zip(order[q], dist[q]), start=1):
            cells.append(figure(str(gallery["paths"][g]), f"{rank} &middot; {d:.3f}<br>camera {gallery['cameras'][g]}"))
        rows.append('<div class="row">' + "".join(cells) + "</div>")
    out.mkdir()
    (out / "index.html").write_text("<!doctype html><html><body>\n" + "\n".join(rows) + "\n</body></html>\n")
    (out / "ranks.csv").write_text(ranks_csv(query["paths"], gallery["paths"], order, dist))


def measured_folder(out: Path) -> dict[str, float]:
    """What a layout wrote: index.html (KB), the largest HTML file, thumbs/ and the whole (MB); files in thumbs/."""
    html_sizes = [p.stat().st_size for p in out.glob("*.html")]
    thumbs = [p.stat().st_size for p in (out / "thumbs").glob("*.jpg")]
    everything = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {
        "index": (out / "index.html").stat().st_size / 1e3,
        "largest": max(html_sizes) / 1e6,
        "thumbs": sum(thumbs) / 1e6,
        "total": everything / 1e6,
        "files": len(thumbs),
        "pages": len(html_sizes) - 1,
    }


def page_benchmark(args: argparse.Namespace) -> None:
    """The ``--page`` rows: the layouts side by side (see the module docstring)."""
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate(tmp / "tiny", preset="tiny", seed=0)
        templates = sorted((tmp / "tiny").glob("[bq]*/*.jpg"))
        start = time.perf_counter()
        query, gallery = page_crops(tmp / "crops", templates, args.crops, args.queries)
        made = time.perf_counter() - start
        order, dist = made_up_ranking(rng, args.queries, args.crops, args.top)
        some = {key: value[: args.compare] for key, value in query.items()}
        q, d, n = order[: args.compare], dist[: args.compare], args.compare
        layouts = [  # name, queries, write into a folder
            ("before: one page, a thumbnail per picture", n, lambda out: per_row_page(out, some, gallery, q, d)),
            (
                "now: one page, each thumbnail once",
                n,
                lambda out: write_results(out, some, gallery, q, d, {}, single_page_max=n),
            ),
            ("now: pages", n, lambda out: write_results(out, some, gallery, q, d, {}, single_page_max=0)),
            ("now: pages", args.queries, lambda out: write_results(out, query, gallery, order, dist, {})),
        ]
        for i, (name, num_q, write) in enumerate(layouts):
            out = tmp / f"out{i}"
            start = time.perf_counter()
            write(out)
            rows.append(
                {"name": name, "queries": num_q, "seconds": time.perf_counter() - start, **measured_folder(out)}
            )
            shutil.rmtree(out)

    before, one, paged, large = rows
    print(
        f"query page: {args.queries:,} made-up queries x top {args.top} over {args.crops:,} gallery crops "
        f"(copies of the tiny set's rendered crops, made in {made:.1f} s); pages of {QUERIES_PER_PAGE} queries"
    )
    print(
        f"{'layout':<44} {'queries':>8} {'seconds':>8} {'index KB':>9} {'largest MB':>11} {'pages':>6} "
        f"{'thumbs MB':>10} {'files':>7} {'total MB':>9} {'KB/query':>9}"
    )
    for r in rows:
        print(
            f"{r['name']:<44} {r['queries']:>8,} {r['seconds']:8.1f} {r['index']:9,.0f} {r['largest']:11.2f} "
            f"{r['pages']:>6} {r['thumbs']:10.2f} {r['files']:>7,} {r['total']:9.2f} "
            f"{1e3 * r['total'] / r['queries']:9.1f}"
        )
    print(
        f"at {args.compare:,} queries, before / now: the one page {before['total'] / one['total']:.1f}x larger "
        f"than with each thumbnail once; its one file {before['largest'] / paged['largest']:.0f}x the largest "
        f"of the pages"
    )
    html_growth = (large["total"] - large["thumbs"]) / (paged["total"] - paged["thumbs"])
    print(
        f"{args.queries:,} / {args.compare:,} queries ({args.queries / args.compare:.0f}x), pages: the total "
        f"{large['total'] / paged['total']:.1f}x, HTML and ranks.csv {html_growth:.1f}x, the largest page "
        f"{large['largest'] / paged['largest']:.2f}x, index.html {large['index'] / paged['index']:.1f}x, seconds "
        f"{large['seconds'] / paged['seconds']:.1f}x; the largest file a browser opens: {large['largest']:.2f} MB at "
        f"{args.queries:,} queries, {before['largest']:.1f} MB before at {args.compare:,} "
        f"(load average {os.getloadavg()[0]:.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gallery", type=int, default=100_000, help="gallery size")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--page", action="store_true", help="the page's benchmark instead (no model)")
    parser.add_argument("--queries", type=int, default=10_000, help="--page: queries")
    parser.add_argument("--crops", type=int, default=20_000, help="--page: gallery crops")
    parser.add_argument("--compare", type=int, default=1_000, help="--page: queries of the before / after rows")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.page:
        page_benchmark(args)
        return
    logging.getLogger("reidlib").setLevel(logging.ERROR)  # the tiny run's notes on its small gallery
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data, run_dir = make_run(tmp)
        run = load_run(run_dir)
        query = embed_images(run, data / "query", progress=False)
        crops = sorted(str(p) for p in (data / "bounding_box_test").glob("*.jpg"))
        rng = np.random.default_rng(0)
        gallery, planted = synthetic_gallery(rng, run, query, crops, args.gallery)
        gallery_file = save_features(tmp / "gallery.npz", gallery, run)
        del gallery

        out = tmp / "out"
        seconds, peak = end_to_end(
            [
                "query",
                "--run-dir",
                str(run_dir),
                "--gallery",
                str(gallery_file),
                "--query",
                str(data / "query"),
                "--top",
                str(args.top),
                "--out",
                str(out),
            ]
        )
        ranks = pd.read_csv(out / "ranks.csv")
        first = ranks[ranks["rank"] == 1]
        assert (first["gallery_path"].to_numpy() == first["query_path"].to_numpy()).all(), "a query missed its copy"
        rows = [("python -m reidlib query, end to end (child process)", seconds, peak, peak)]

        gallery = measure("read the gallery file (load_features)", rows, load_features, gallery_file, run)
        lambda_g = run.cfg.scl.lambda_g
        many = unit_features(rng, MANY_QUERIES, run.cfg.model.feat_dim, run.cfg.model.num_parts)
        queries = {f"{len(query['paths'])} crops": query, f"{MANY_QUERIES} random": many}
        exact = {}
        for name, q in queries.items():
            exact[name] = measure(
                f"rank_gallery (exact, blocked torch), {name}",
                rows,
                rank_gallery,
                q,
                gallery,
                lambda_g=lambda_g,
                top=args.top,
                progress=False,
            ).order
        assert (exact[f"{len(query['paths'])} crops"][:, 0] == planted).all()
        faiss_rows(gallery, queries, exact, lambda_g, 10 * args.top, rows)

    num_q, (num_g, dim), parts = len(query["paths"]), gallery["global"].shape, gallery["parts"].shape[1]
    print(
        f"query: {num_q} query crops x a gallery of {num_g:,} synthetic features (D {dim}, P {parts}; "
        f"{gallery_file.name} {(num_g * 2 * dim * 4) / 2**20:,.0f} MiB of features), top {args.top}; "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"{'step':<56} {'seconds':>8} {'peak RSS GiB':>13} {'(above its start)':>18}")
    for name, seconds, peak, rise, *note in rows:
        print(f"{name:<56} {seconds:8.2f} {peak:13.2f} {rise:18.2f}  {' '.join(note)}")
    print(
        f"(every query found its planted copy at rank 1; a dense distmat would be {num_q} x {num_g:,}; "
        f"load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end)"
    )


if __name__ == "__main__":
    main()
