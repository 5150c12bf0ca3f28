"""The two methods side by side: the untrained start, SCL and Cluster Contrast, datasets x seeds.

Every arm of :data:`METHOD_ARMS` changes one base config (``configs/real-cpu.yaml``), so all three
share the backbone, its ImageNet start, the input size, the batch size, the optimiser and the
number of epochs (Cluster Contrast's epoch has as many steps as SCL's: ``cluster_iters: 0``). The
grid is :func:`reidlib.experiments.grid.run_grid` (run dirs ``OUT/<slug(arm)>/<dataset>/seed-<n>``,
resumable) and so are its summaries; this module adds what differs between the methods:

- each method's label quality per epoch on one axis (:func:`label_curves`): SCL's positive
  precision (selected positives of the anchor's identity) beside Cluster Contrast's same-cluster
  pair precision (pairs in one cluster of one identity), and the clusters' number and sizes;
- the same queries ranked under each arm's own test distance (:func:`same_queries`), for
  :func:`reidlib.reports.figures.methods_retrieval_grid`.

Cluster Contrast's ``test_lambda_g: 1.0`` makes its headline (combined) distance the global
feature alone, the one it trains. ``05_methods_side_by_side.ipynb`` is the view; ``make methods`` runs it.
Shape letters: Q chosen queries, G gallery images, T top ranks shown.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from reidlib.config import Config
from reidlib.errors import ConfigError, RunDirError
from reidlib.evaluation.evaluator import eval_lambda_g, query_gallery_distance
from reidlib.evaluation.protocol import protocol_ranking
from reidlib.experiments.grid import CEILING, Arm, run_grid
from reidlib.reports.analysis import load_test_features
from reidlib.utils import runs

UNTRAINED = "untrained (ImageNet start)"
SCL = "SCL: the CPU recipe"  # the base config as it is: the reference of every comparison
CLUSTER_CONTRAST = "Cluster Contrast (published settings)"
METHOD_ARMS: tuple[Arm, ...] = (
    Arm(UNTRAINED, {"epochs": 0}),
    Arm(SCL, {}),
    Arm(CLUSTER_CONTRAST, {"method": "cluster_contrast", "test_lambda_g": 1.0, "num_instances": 4}),
    CEILING,  # the yardstick: every method's runs as a share of it
)

# each method's label quality in its metrics rows: (precision, recall) keys
LABEL_KEYS = {"scl": ("pos_precision", "pos_recall"), "cluster_contrast": ("pair_precision", "pair_recall")}
CLUSTER_KEYS = ("clusters", "outlier_share", "largest_cluster", "cluster_ari")


def _method(run_dir: str | Path) -> str:
    method = runs.read_run_config(Path(run_dir)).train.method
    if method not in LABEL_KEYS:
        raise ConfigError(f"{run_dir}: no label-quality keys known for method {method!r}")
    return method


def run_methods(
    base: Config,
    out_dir: str | Path,
    datasets: dict[str, str],
    seeds: Iterable[int],
    arms: tuple[Arm, ...] = METHOD_ARMS,
    train_missing: bool = True,
) -> list[dict[str, Any]]:
    """:func:`reidlib.experiments.grid.run_grid` over ``arms``, each row told its method.

    Returns:
        run_grid's rows, where a finished run also has ``method`` (``train.method``),
        ``final_precision`` and ``final_recall`` of *its* labels (SCL: positives; Cluster
        Contrast: same-cluster pairs; None with no epoch), and ``minutes`` 0.0 with no epoch.
    """
    rows = run_grid(base, out_dir, datasets, seeds, arms, train_missing=train_missing)
    for row in (r for r in rows if r["status"] == "done"):
        row["method"] = method = _method(row["run_dir"])
        epochs = runs.read_jsonl(Path(row["run_dir"]) / runs.METRICS_LOG)
        precision, recall = LABEL_KEYS[method]
        row["final_precision"] = epochs[-1].get(precision) if epochs else None
        row["final_recall"] = epochs[-1].get(recall) if epochs else None
        row["minutes"] = 0.0 if row["minutes"] is None else row["minutes"]  # nothing trained
    return rows


def _train_images(run_dir: Path) -> int | None:
    """The training split's size, from the run's last session in ``provenance.json``."""
    path = run_dir / runs.PROVENANCE
    sessions = json.loads(path.read_text())["sessions"] if path.is_file() else []
    return sessions[-1].get("data", {}).get("counts", {}).get("train") if sessions else None


def label_curves(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per finished run and epoch: the method's label quality on one axis.

    Returns:
        rows with ``arm``, ``dataset``, ``seed``, ``method``, ``epoch``, ``minutes`` (training time
        up to the epoch's end), ``precision`` and ``recall`` (SCL: ``pos_precision`` /
        ``pos_recall``, None in warm-up; Cluster Contrast: ``pair_precision`` / ``pair_recall``),
        and Cluster Contrast's ``clusters``, ``outlier_share``, ``largest_cluster``,
        ``cluster_ari`` and ``largest_share`` (largest cluster / training images); None for SCL.
    """
    curves = []
    for row in (r for r in rows if r.get("status", "done") == "done"):
        run_dir = Path(row["run_dir"])
        method = _method(run_dir)
        precision, recall = LABEL_KEYS[method]
        train_images = _train_images(run_dir) if method == "cluster_contrast" else None
        seconds = 0.0
        for epoch in runs.read_jsonl(run_dir / runs.METRICS_LOG):
            seconds += epoch["seconds"]
            largest = epoch.get("largest_cluster")
            curves.append(
                {
                    **{key: row[key] for key in ("arm", "dataset", "seed")},
                    "method": method,
                    "epoch": epoch["epoch"],
                    "minutes": seconds / 60,
                    "precision": epoch.get(precision),
                    "recall": epoch.get(recall),
                    **{key: epoch.get(key) for key in CLUSTER_KEYS},
                    "largest_share": largest / train_images if largest is not None and train_images else None,
                }
            )
    return curves


def complete_datasets(rows: Iterable[dict[str, Any]], seed: int, arms: tuple[Arm, ...] = METHOD_ARMS) -> list[str]:
    """The datasets, in the grid's order, on which every arm has a finished run with ``seed``."""
    done: dict[str, set[str]] = {}
    for row in rows:
        if row["seed"] == seed and row.get("status", "done") == "done":
            done.setdefault(row["dataset"], set()).add(row["arm"])
    return [name for name, have in done.items() if have >= {arm.name for arm in arms}]


class SameQueries(NamedTuple):
    """The same queries ranked under several arms (:func:`same_queries`)."""

    query: dict[str, np.ndarray]  # paths, pids, camids of the Q chosen queries
    gallery: dict[str, np.ndarray]  # paths, pids, camids (G,)
    ranked: dict[str, np.ndarray]  # arm name -> (Q, T) gallery indices, nearest first
    first_match: dict[str, np.ndarray]  # arm name -> (Q,) rank of the first true match


def same_queries(
    rows: Iterable[dict[str, Any]],
    dataset: str,
    seed: int,
    arms: tuple[Arm, ...] = METHOD_ARMS,
    num_queries: int = 4,
    top: int = 8,
    draw_seed: int = 0,
) -> SameQueries:
    """Rank the same ``num_queries`` queries of ``dataset`` under each arm's run with ``seed``.

    Each arm's distance is its evaluation's combined distance with its run's own global share
    (:func:`reidlib.evaluation.evaluator.eval_lambda_g` of its ``config.yaml``), no camera penalty. The
    queries are a seeded draw (``draw_seed``) among those with a true match in another camera, so
    every row has something to find.
    """
    run_dirs = {
        r["arm"]: r["run_dir"]
        for r in rows
        if (r["dataset"], r["seed"]) == (dataset, seed) and r.get("status", "done") == "done"
    }
    missing = [arm.name for arm in arms if arm.name not in run_dirs]
    if missing:
        raise RunDirError(f"no finished run of {missing} on {dataset!r} with seed {seed}")
    feats = {arm.name: load_test_features(run_dirs[arm.name]) for arm in arms}
    first = feats[arms[0].name]
    for name, f in feats.items():
        if not np.array_equal(f["paths"], first["paths"]) or not np.array_equal(f["is_query"], first["is_query"]):
            raise RunDirError(f"{run_dirs[name]}: its test set is not that of {run_dirs[arms[0].name]}")
    q, g = first["is_query"], ~first["is_query"]
    pids, camids = first["pids"], first["camids"]
    matched = (pids[q][:, None] == pids[g][None, :]) & (camids[q][:, None] != camids[g][None, :])  # (all Q, G)
    candidates = np.flatnonzero(matched.any(axis=1) & (pids[q] > 0))
    rng = np.random.default_rng(draw_seed)
    chosen = np.flatnonzero(q)[np.sort(rng.choice(candidates, size=min(num_queries, len(candidates)), replace=False))]
    labels = ("paths", "pids", "camids")
    query, gallery = {k: first[k][chosen] for k in labels}, {k: first[k][g] for k in labels}
    ranked, first_match = {}, {}
    for arm in arms:
        f = feats[arm.name]
        lambda_g = eval_lambda_g(runs.read_run_config(Path(run_dirs[arm.name])))
        distmat = query_gallery_distance(  # (Q, G)
            {key: f[key][chosen] for key in ("global", "parts", "camids")},
            {key: f[key][g] for key in ("global", "parts", "camids")},
            lambda_g=lambda_g,
        )
        ranked[arm.name], first_match[arm.name] = protocol_ranking(
            distmat, query["pids"], query["camids"], gallery["pids"], gallery["camids"], top
        )
    return SameQueries(query, gallery, ranked, first_match)
