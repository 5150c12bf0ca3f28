"""The evaluator: a model's (or a run's) figures on a test split, and what ``metrics.json`` holds.

Used by training (evaluation every few epochs, the final figures), by ``python -m reidlib
evaluate`` on a run's checkpoint, and by the analysis notebooks. Evaluation follows the standard
Market-1501 protocol (:mod:`reidlib.evaluation.protocol`) unless the non-standard camera-aware
distance is asked for by name. A video set is evaluated tracklet against tracklet under the MARS
protocol, the same rule (a gallery tracklet of the query's identity seen by the query's camera is
junk) one level up.

- :func:`evaluate_features` / :func:`evaluate_model` / :func:`evaluate_run`: the combined,
  global-only and part-only figures of features, of a model, of a run's newest checkpoint;
- :func:`final_metrics`, :func:`unevaluated_metrics`, :func:`is_evaluated`: ``metrics.json``;
- :func:`format_metrics`: the table the command line prints;
- :func:`load_trained_model`: a run's config and model with its checkpoint's weights.

Two test-time choices of the config change how the test split is embedded and ranked, never
training: ``eval.flip_test`` (each crop mirrored too,
:func:`reidlib.evaluation.features.view_features`) and ``eval.test_lambda_g`` (the combined
figure's global share, :func:`eval_lambda_g`).

A set without a query and a gallery (camera folders, :mod:`reidlib.data.cameras`) cannot be
evaluated: :func:`require_test_split` names it, and a run trained on one without a labelled set to
evaluate on records why in ``metrics.json`` (:func:`unevaluated_metrics`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reidlib.config import Config
from reidlib.data import ReidData, read_dataset
from reidlib.distances import combined_distance
from reidlib.errors import DataError, ReidlibError, RunDirError
from reidlib.evaluation.features import extract_features
from reidlib.evaluation.protocol import describe_protocol, evaluate, figures, format_table
from reidlib.model import ReidModel, make_model
from reidlib.neighbours.exact import distance_matrix
from reidlib.utils import runs
from reidlib.utils.torch_env import setup_torch


def query_gallery_distance(
    query: dict[str, np.ndarray],
    gallery: dict[str, np.ndarray],
    *,
    lambda_g: float,
    lambda_c: float = 0.0,
    chunk: int = 1024,
) -> np.ndarray:
    """The evaluation distmat (Euclidean, :func:`reidlib.distances.combined_distance` with
    ``squared=False``), computed ``chunk`` queries at a time by the blocked loop of
    :mod:`reidlib.neighbours.exact`.

    Args:
        query, gallery: dicts with ``global`` (n, D), ``parts`` (n, P, d) and ``camids`` (n,).
        lambda_g: 1 global only, 0 parts only, else the combination.
        lambda_c: 0 for the standard protocol; > 0 adds it to same-camera pairs
            (the original research code's non-standard test-time distance, ``eval.camera_aware``).
        chunk: queries per block, to bound memory.

    Returns:
        (num_query, num_gallery) float32 distmat.
    """
    g_global = torch.from_numpy(np.asarray(gallery["global"], dtype=np.float32))
    g_parts = torch.from_numpy(np.asarray(gallery["parts"], dtype=np.float32))
    g_cams = torch.from_numpy(np.asarray(gallery["camids"]))
    q_global = torch.from_numpy(np.asarray(query["global"], dtype=np.float32))
    q_parts = torch.from_numpy(np.asarray(query["parts"], dtype=np.float32))
    q_cams = torch.from_numpy(np.asarray(query["camids"]))

    def block(rows: slice, items: slice) -> torch.Tensor:
        return combined_distance(
            q_global[rows],
            q_parts[rows],
            g_global[items],
            g_parts[items],
            lambda_g=lambda_g,
            squared=False,
            lambda_c=lambda_c,
            q_camids=q_cams[rows],
            g_camids=g_cams[items],
        )

    return distance_matrix(block, len(q_global), len(g_global), query_block=chunk).numpy()


FEATURE_SPACES = {"combined": None, "global": 1.0, "parts": 0.0}  # lambda_g forced, or None: config


def eval_lambda_g(cfg: Config) -> float:
    """The global share of the test distance (the "combined" figure, ranked pages): ``eval.test_lambda_g``,
    or the selection's ``scl.lambda_g`` when it is null."""
    return cfg.scl.lambda_g if cfg.eval.test_lambda_g is None else cfg.eval.test_lambda_g


def evaluate_features(
    query: dict[str, np.ndarray], gallery: dict[str, np.ndarray], cfg: Config, *, tracklets: bool = False
) -> dict[str, dict[str, Any]]:
    """Query -> gallery figures for the combined, global-only and part-only distances.

    The standard Market-1501 protocol (for ``tracklets``, features of a video set, the MARS
    protocol: the same rule, tracklet against tracklet), unless ``eval.camera_aware`` adds the
    training camera penalty to same-camera pairs (the original research code's test-time trick),
    in which case every figure is labelled with that protocol.
    """
    protocol = ("mars" if tracklets else "market1501") + ("+camera-penalty" if cfg.eval.camera_aware else "")
    out = {}
    for name, forced in FEATURE_SPACES.items():
        lambda_g = eval_lambda_g(cfg) if forced is None else forced
        distmat = query_gallery_distance(
            query,
            gallery,
            lambda_g=lambda_g,
            lambda_c=cfg.scl.lambda_c if cfg.eval.camera_aware else 0.0,
        )
        res = evaluate(distmat, query["pids"], gallery["pids"], query["camids"], gallery["camids"])
        out[name] = {
            **figures(res),
            "protocol": protocol,
            "flip_test": cfg.eval.flip_test,
            "lambda_g": lambda_g,
        }
    return out


def evaluate_model(
    model: ReidModel,
    cfg: Config,
    data: ReidData,
    device: torch.device,
    images: Mapping[str, torch.Tensor] | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The test split's figures (:func:`evaluate_features`) and its query / gallery features."""
    flip = cfg.eval.flip_test
    query = extract_features(model, data.query, cfg, device, desc="query features", images=images, flip=flip)
    gallery = extract_features(model, data.gallery, cfg, device, desc="gallery features", images=images, flip=flip)
    return evaluate_features(query, gallery, cfg, tracklets=data.is_video), query, gallery


def require_test_split(data: ReidData, flag: str) -> ReidData:
    """``data`` if it has a query and a gallery, else a DataError naming its root and ``flag``,
    the option that gives a labelled set instead (``--eval-data``, ``--data``)."""
    if not data.has_test_split:
        raise DataError(
            f"{data.root}: no query and gallery to evaluate on ({data.name} layout); give a labelled set "
            f"in a known layout (Market-1501, DukeMTMC-reID, MSMT17, CUHK03-NP) with {flag} DIR"
        )
    return data


def unevaluated_metrics(epochs: int, reason: str) -> dict[str, Any]:
    """``metrics.json`` of a run that was not evaluated, and why."""
    return {"evaluated": False, "reason": reason, "epochs": epochs}


def is_evaluated(metrics: dict[str, Any]) -> bool:
    """Whether ``metrics`` (``metrics.json``) holds evaluation figures (:func:`unevaluated_metrics`
    writes ``"evaluated": false``; an evaluated run has no such key)."""
    return metrics.get("evaluated", True)


def final_metrics(results: dict[str, dict[str, Any]], epochs: int) -> dict[str, Any]:
    """``metrics.json``: the combined figures on top, each feature space beside them."""
    top = results["combined"]
    return {
        "mAP": top["mAP"],
        "rank1": top["rank1"],
        "rank5": top["rank5"],
        "rank10": top["rank10"],
        "mINP": top["mINP"],
        "protocol": top["protocol"],
        "flip_test": top["flip_test"],
        "epochs": epochs,
        "by_feature": results,
    }


def load_trained_model(run_dir: str | Path) -> tuple[Config, ReidModel, torch.device, dict[str, Any]]:
    """A run's config, its model with the newest checkpoint's weights (on the config's device), and
    that checkpoint.

    Raises:
        RunDirError: ``run_dir`` holds no config.yaml, or no checkpoint.
    """
    cfg = runs.read_run_config(run_dir)
    checkpoint = runs.load_checkpoint(Path(run_dir))
    if checkpoint is None:
        raise RunDirError(f"{run_dir} holds no checkpoint ({runs.CHECKPOINT}); train first")
    device = setup_torch(cfg)
    model = make_model(cfg, device, load_pretrained=False)
    model.load_state_dict(checkpoint["model"])
    return cfg, model, device, checkpoint


def evaluate_run(
    run_dir: str | Path,
    data_dir: str | None = None,
    camera_aware: bool = False,
    flip_test: bool | None = None,
    *,
    record: bool = True,
) -> dict[str, Any]:
    """Evaluate the checkpoint of ``run_dir`` on a test split, and record what it measured.

    Args:
        run_dir: a run dir with a checkpoint.
        data_dir: the labelled set to evaluate on (read with layout ``auto``); None: the run's
            ``eval.eval_data``, else its own dataset (in its layout). A run trained on camera
            folders has no test split of its own.
        camera_aware: the public code's non-standard test distance (labelled as such).
        flip_test: True / False overrides the run's ``eval.flip_test`` (None keeps it).
        record: append the figures, their data and options to ``evaluations.json`` in the run dir;
            a run that was never evaluated (camera folders) also gets ``metrics.json`` and
            ``features.npz`` from a standard evaluation, so that ``report`` can read it.

    Returns:
        The figures, as ``metrics.json`` holds them, with ``eval_data`` (the set evaluated on).
    """
    cfg, model, device, checkpoint = load_trained_model(run_dir)
    if camera_aware:
        cfg = replace(cfg, eval=replace(cfg.eval, camera_aware=True))
    if flip_test is not None:
        cfg = replace(cfg, eval=replace(cfg.eval, flip_test=flip_test))
    source = data_dir or cfg.eval.eval_data or cfg.data.data_dir
    layout = cfg.data.layout if source == cfg.data.data_dir else "auto"
    data = require_test_split(read_dataset(source, layout=layout), "--data")
    results, query, gallery = evaluate_model(model, cfg, data, device)
    metrics = {**final_metrics(results, int(checkpoint["epoch"])), "eval_data": str(source)}
    if record:
        _record(Path(run_dir), metrics, query, gallery, camera_aware)
    return metrics


def _record(run_dir: Path, metrics: dict[str, Any], query: dict, gallery: dict, camera_aware: bool) -> None:
    """Append an evaluation to ``evaluations.json``; give a never-evaluated run its ``metrics.json``."""
    entry = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), **metrics}
    runs.append_evaluation(run_dir, entry)
    never = not (run_dir / runs.METRICS).is_file() or not is_evaluated(runs.read_metrics(run_dir))
    if never and not camera_aware:
        runs.save_features(
            run_dir / runs.FEATURES,
            **{f"query_{k}": v for k, v in query.items()},
            **{f"gallery_{k}": v for k, v in gallery.items()},
        )
        runs.write_json(run_dir / runs.METRICS, metrics)


def describe_distance(lambda_g: float) -> str:
    """The test distance of a global share, in words: ``parts``, ``global`` or ``0.5 g + 0.5 p``."""
    if lambda_g == 0:
        return "parts"
    if lambda_g == 1:
        return "global"
    return f"{lambda_g:g} g + {1 - lambda_g:g} p"


def format_comparison(run_dirs: list[str | Path]) -> str:
    """The final figures of run dirs side by side (``python -m reidlib compare``): each run's data set,
    epochs, test distance and flip test beside its headline figures, under the protocol(s) they
    used. A run that has not finished (no ``metrics.json``), was not evaluated, or is not a run dir
    gets a row that says so; the others are still compared."""
    rows = []
    for run_dir in run_dirs:
        row = {"run": str(run_dir), "data": "?", "epochs": "", "distance": "", "flip": "", "note": ""}
        try:
            cfg = runs.read_run_config(run_dir)
        except ReidlibError as err:
            rows.append({**row, "note": str(err)})
            continue
        row["data"] = cfg.data.data_dir
        if not (Path(run_dir) / runs.METRICS).is_file():
            done = len(runs.read_jsonl(Path(run_dir) / runs.METRICS_LOG))
            rows.append({**row, "epochs": done, "note": f"unfinished: {done} of {cfg.train.epochs} epochs trained"})
            continue
        m = runs.read_metrics(run_dir)
        row["epochs"] = m["epochs"]
        if not is_evaluated(m):
            rows.append({**row, "note": f"not evaluated: {m['reason']}"})
            continue
        combined = m["by_feature"]["combined"]
        rows.append(
            {
                **row,
                "data": m.get("eval_data") or cfg.data.data_dir,
                "distance": describe_distance(combined.get("lambda_g", eval_lambda_g(cfg))),
                "flip": "yes" if m.get("flip_test") else "no",
                "protocol": m["protocol"],
                "figures": m,
                "note": m.get("supervised", ""),
            }
        )
    protocols = sorted({describe_protocol(r["protocol"]) for r in rows if "protocol" in r})
    widths = {key: max(len(key), *(len(str(r[key])) for r in rows)) for key in ("run", "data", "distance")}
    lines = [
        "protocol: " + ("; ".join(protocols) or "none") + "; distance: the test distance of the headline figures "
        "(g global, p the concatenated stripes)",
        f"{'run':<{widths['run']}} {'data':<{widths['data']}} {'epochs':>6} {'distance':<{widths['distance']}} "
        f"{'flip':>4} {'mAP':>6} {'R-1':>6} {'R-5':>6} {'R-10':>6}",
    ]
    for r in rows:
        head = f"{r['run']:<{widths['run']}} {r['data']:<{widths['data']}} {r['epochs']!s:>6} "
        head += f"{r['distance']:<{widths['distance']}} {r['flip']:>4}"
        if "figures" in r:
            values = " ".join(f"{100 * r['figures'][k]:6.1f}" for k in ("mAP", "rank1", "rank5", "rank10"))
            lines.append(f"{head} {values}" + (f"  {r['note']}" if r["note"] else ""))
        else:
            lines.append(f"{head} {r['note']}")
    scored = [r for r in rows if "figures" in r]
    if len(rows) == 2 and len(scored) == 2 and scored[0]["figures"]["mAP"] > 0:
        lines.append(f"mAP ratio (last / first): {scored[1]['figures']['mAP'] / scored[0]['figures']['mAP']:.1f}x")
    return "\n".join(lines)


def format_metrics(metrics: dict[str, Any], title: str) -> str:
    """``metrics.json`` as a table of the combined, global-only and part-only figures, naming the
    protocol and the test-time choices (or, for a run that was not evaluated, why)."""
    if not is_evaluated(metrics):
        return f"{title} (epochs trained: {metrics['epochs']}): not evaluated: {metrics['reason']}"
    protocol = metrics["protocol"]
    flip = ", flip test" if metrics.get("flip_test") else ""
    header = f"{title} (epochs trained: {metrics['epochs']}; protocol: {describe_protocol(protocol)}{flip})"
    if metrics.get("supervised"):
        header = f"{metrics['supervised']}\n{header}"
    return format_table(metrics["by_feature"], header, label="features")
