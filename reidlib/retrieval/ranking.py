"""Each query's nearest gallery crops under the evaluation's distance: ``python -m reidlib query``.

Shape letters: Q queries, G gallery images, D feature dim, P stripes, d = D / P, k matches kept
per query.

- :func:`rank_gallery`: each query's k nearest gallery images, in blocks, never the (Q, G) matrix
  (the blocked loop of :mod:`reidlib.neighbours.exact`);
- :func:`query`: the command: read or embed the gallery, embed the queries, rank, and write the
  page (one page, or an index of pages above 500 queries) and ``ranks.csv``
  (:mod:`reidlib.retrieval.page`).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from reidlib.distances import combined_distance
from reidlib.errors import ConfigError
from reidlib.evaluation.evaluator import eval_lambda_g
from reidlib.neighbours import exact
from reidlib.retrieval.embedding import embed_images, load_run, read_gallery
from reidlib.retrieval.page import SINGLE_PAGE_MAX, check_out_dir, count_pages, write_results

# Blocks of the ranking: 256 queries x 65,536 gallery images keep each (c, g) distance temporary at 64 MiB.
QUERY_CHUNK, GALLERY_CHUNK = 256, 65_536


class Ranking(NamedTuple):
    order: np.ndarray  # (Q, k) gallery rows, nearest first
    dist: np.ndarray  # (Q, k) their distances, ascending


@torch.no_grad()
def rank_gallery(
    query: dict[str, np.ndarray],
    gallery: dict[str, np.ndarray],
    *,
    lambda_g: float,
    top: int,
    query_chunk: int = QUERY_CHUNK,
    gallery_chunk: int = GALLERY_CHUNK,
    progress: bool = True,
) -> Ranking:
    """Each query's ``top`` nearest gallery images under the evaluation's distance.

    The distance is :func:`reidlib.distances.query_gallery_distance`'s (Euclidean,
    ``lambda_g |dg| + (1 - lambda_g) |dp|``, no camera term), computed exactly, a block of
    (query_chunk, gallery_chunk) at a time; each block's top k is merged into the queries' running
    top k, so memory stays at one block, whatever the gallery's size.

    Why not faiss: the distance is a sum of two Euclidean distances, not one L2 or inner-product
    distance, so a faiss index could only propose candidates (under the squared distance) for an
    exact re-ranking. In benchmarks/bench_query.py (100,000 gallery features, D 512, P 4, two
    threads of the development machine, a 2-core x86-64 CPU, under load) this ranking took 1.1 s
    for 23 queries and 3.3 s for 256; a faiss flat index took 4.3 s to build and 0.5 / 1.6 s to
    search its top-100 candidates, which held 95% of the exact top 10 for the 256 random queries;
    an IVF index took 32 s to build. Exact and blocked is both faster and exact at that size.

    Args:
        query, gallery: dicts with ``global`` (n, D) and ``parts`` (n, P, d).
        lambda_g: the global share (config ``scl.lambda_g``, as evaluation uses).
        top: k, cut to the gallery's size.
        query_chunk, gallery_chunk: the block's shape.

    Returns:
        :class:`Ranking`, (Q, k) gallery rows and distances.
    """
    if top < 1:
        raise ConfigError(f"top must be at least 1, got {top}")
    g_global = torch.as_tensor(np.asarray(gallery["global"], dtype=np.float32))  # (G, D)
    g_parts = torch.as_tensor(np.asarray(gallery["parts"], dtype=np.float32))  # (G, P, d)
    q_global = torch.as_tensor(np.asarray(query["global"], dtype=np.float32))  # (Q, D)
    q_parts = torch.as_tensor(np.asarray(query["parts"], dtype=np.float32))  # (Q, P, d)

    def distance(rows: slice, items: slice) -> torch.Tensor:
        return combined_distance(
            q_global[rows], q_parts[rows], g_global[items], g_parts[items], lambda_g=lambda_g, squared=False
        )

    blocks = exact.nearest(
        distance, len(q_global), len(g_global), top, query_block=query_chunk, item_block=gallery_chunk
    )
    orders, dists = [], []
    for found in tqdm(
        blocks, total=-(-len(q_global) // query_chunk), desc="ranking", unit="block", leave=False, disable=not progress
    ):
        orders.append(found.idx.numpy())
        dists.append(found.dist.numpy())
    return Ranking(np.concatenate(orders), np.concatenate(dists))


def query(
    run_dir: str | Path,
    gallery: str | Path,
    queries: str | Path,
    out_dir: str | Path,
    *,
    top: int = 10,
    single_page_max: int = SINGLE_PAGE_MAX,
    overwrite: bool = False,
) -> Ranking:
    """``python -m reidlib query``: rank the gallery for each of ``queries`` (an image or a folder);
    write the page and ``ranks.csv`` (:mod:`reidlib.retrieval.page`: one self-contained
    ``index.html`` up to ``single_page_max`` queries, else an index of pages). Every input is
    checked, and every picture made, before anything is written to ``out_dir``; an earlier page is
    kept unless ``overwrite``."""
    if top < 1:
        raise ConfigError(f"--top must be at least 1, got {top}")
    count_pages(0, single_page_max)  # its bounds, checked before the work
    check_out_dir(out_dir, overwrite=overwrite)
    run = load_run(run_dir)
    gallery_feats = read_gallery(run, gallery)
    query_feats = embed_images(run, queries)
    lambda_g = eval_lambda_g(run.cfg)
    ranking = rank_gallery(query_feats, gallery_feats, lambda_g=lambda_g, top=top)
    about = {
        "run": f"{Path(run_dir).absolute()} (epoch {run.epoch}, weights sha256 {run.sha256[:12]})",
        "gallery": str(Path(gallery).absolute()),
        "query": str(Path(queries).absolute()),
        "distance": f"{lambda_g:g} |global difference| + {1 - lambda_g:g} |parts difference| (Euclidean, "
        "as evaluation; no camera term)",
    }
    write_results(
        out_dir,
        query_feats,
        gallery_feats,
        ranking.order,
        ranking.dist,
        about,
        single_page_max=single_page_max,
        overwrite=overwrite,
    )
    return ranking
