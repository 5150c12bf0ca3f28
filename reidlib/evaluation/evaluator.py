"""Features of a model and their evaluation: the test split's query -> gallery figures.

Shape letters: n images (or tracklets), F frames, D feature dim, P stripes.

Used by training (evaluation every few epochs, the final figures), by ``python -m reidlib
evaluate`` on a run's checkpoint, and by the analysis notebooks. Evaluation follows the standard
Market-1501 protocol unless the non-standard camera-aware distance is asked for by name. A video
set is evaluated tracklet against tracklet under the MARS protocol, the same rule (a gallery
tracklet of the query's identity seen by the query's camera is junk) one level up: each
tracklet's feature averages its frames' (:func:`reidlib.model.average_frames`).

Two test-time choices of the config change how the test split is embedded and ranked, never
training: ``eval.flip_test`` (each crop mirrored too, :func:`view_features`) and
``eval.test_lambda_g`` (the combined figure's global share, :func:`eval_lambda_g`).

A set without a query and a gallery (camera folders, :mod:`reidlib.data.cameras`) cannot be
evaluated: :func:`require_test_split` names it, and a run trained on one without a labelled set to
evaluate on records why in ``metrics.json`` (:func:`unevaluated_metrics`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from reidlib.utils import runs
from reidlib.config import Config
from reidlib.data import ImageRecord, ReidData, ReidDataset, build_transforms, read_dataset
from reidlib.data.records import evenly_spaced
from reidlib.distances import query_gallery_distance
from reidlib.errors import ConfigError, DataError, RunDirError
from reidlib.evaluation.rank import evaluate
from reidlib.model import Features, ReidModel, build_model, frame_sums, normalize_features


def setup_torch(cfg: Config) -> torch.device:
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    torch.use_deterministic_algorithms(t.deterministic)
    try:
        return torch.device(t.device)
    except RuntimeError as err:
        raise ConfigError(f"config key 'train.device': {err}") from err


def make_model(cfg: Config, device: torch.device, *, load_pretrained: bool = True) -> ReidModel:
    """The model of ``cfg.model`` on ``device``; ``load_pretrained=False`` skips the start weights
    (when a checkpoint will replace them anyway)."""
    m = cfg.model
    model = build_model(
        m.arch,
        feat_dim=m.feat_dim,
        num_parts=m.num_parts,
        pretrained=m.pretrained if load_pretrained else None,
        last_stride=m.last_stride,
    ).to(device)
    return model.to(memory_format=memory_format(cfg))


def memory_format(cfg: Config) -> torch.memory_format:
    """The layout of weights and image batches (``train.channels_last``)."""
    return torch.channels_last if cfg.train.channels_last else torch.contiguous_format


def tracklet_frames(records: list[ImageRecord], max_frames: int) -> tuple[list[ImageRecord], torch.Tensor]:
    """The frames whose features make each record's: every frame of a tracklet (at most
    ``max_frames``, evenly spaced; 0: all), a still image itself.

    Returns:
        one record per frame (the tracklet's pid and camid) and ``owner`` (F,), the position in
        ``records`` of each frame's tracklet.
    """
    frames, owner = [], []
    for position, record in enumerate(records):
        paths = record.frames or (record.path,)
        paths = [paths[i] for i in evenly_spaced(len(paths), max_frames)]
        frames += [ImageRecord(path, record.pid, record.camid) for path in paths]
        owner += [position] * len(paths)
    return frames, torch.tensor(owner, dtype=torch.int64)


@torch.no_grad()
def extract_features(
    model: ReidModel,
    records: list[ImageRecord],
    cfg: Config,
    device: torch.device,
    desc: str,
    *,
    progress: bool = True,
    images: Mapping[str, torch.Tensor] | None = None,
    flip: bool = False,
) -> dict[str, np.ndarray]:
    """Run the model (eval mode, test transforms) over ``records``.

    ``flip`` (``eval.flip_test``) also runs each crop mirrored left to right and takes the
    normalised sum of the two features (:func:`view_features`).

    A tracklet's feature averages its frames' (at most ``data.max_frames``,
    :func:`tracklet_frames`), summed batch by batch, so a long video never sits in memory.
    ``images`` (:func:`reidlib.data.load_images`) supplies decoded crops instead of the files.

    Returns:
        ``global`` (n, D) and ``parts`` (n, P, D/P) float32, ``pids``, ``camids`` and ``paths``
        (a tracklet's: its middle frame).
    """
    video = any(r.frames for r in records)
    frames, owner = tracklet_frames(records, cfg.data.max_frames) if video else (records, None)
    transform = build_transforms(cfg.data.height, cfg.data.width, train=False, from_cache=images is not None)
    loader = DataLoader(
        ReidDataset(frames, transform, images),
        batch_size=cfg.eval.eval_batch_size,
        shuffle=False,
        num_workers=cfg.data.num_workers,
    )
    was_training = model.training
    model.eval()
    globals_, parts = [], []
    sums, start = None, 0  # tracklets: running sums of their frames' features
    for batch in tqdm(loader, desc=desc, leave=False, unit="batch", disable=not progress):
        feats = view_features(model, batch["img"].to(device, memory_format=memory_format(cfg)), flip)
        if owner is None:
            globals_.append(feats.global_)
            parts.append(feats.parts)
        else:
            sums = frame_sums(feats, owner[start : start + len(feats.global_)], len(records), sums)
            start += len(feats.global_)
    model.train(was_training)
    if sums is not None:
        mean = normalize_features(sums)  # the mean of each tracklet's frame features, normalised
        globals_, parts = [mean.global_], [mean.parts]
    return {
        "global": torch.cat(globals_).numpy(),
        "parts": torch.cat(parts).numpy(),
        "pids": np.array([r.pid for r in records], dtype=np.int64),
        "camids": np.array([r.camid for r in records], dtype=np.int64),
        "paths": np.array([r.path for r in records]),
    }


def view_features(model: ReidModel, images: torch.Tensor, flip: bool) -> Features:
    """The model's features of ``images`` (B, 3, H, W) on the CPU in float32; with ``flip``, the
    normalised sum of the features of the crops and of their mirror images (the stripes are
    horizontal, so mirroring keeps each stripe's rows and the sum stays stripe by stripe)."""
    feats = model(images)
    if flip:
        mirrored = model(images.flip(3))  # flip keeps the batch's memory format (channels-last too)
        feats = normalize_features(Features(feats.global_ + mirrored.global_, feats.parts + mirrored.parts))
    return Features(feats.global_.float().cpu(), feats.parts.float().cpu())


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
            "mAP": float(res.mAP),
            "rank1": float(res.cmc[0]),
            "rank5": float(res.cmc[min(4, len(res.cmc) - 1)]),
            "rank10": float(res.cmc[min(9, len(res.cmc) - 1)]),
            "mINP": float(res.mINP),
            "skipped_queries": int(res.num_skipped_queries),
            "valid_queries": int(res.num_valid_queries),
            "protocol": protocol,
            "flip_test": cfg.eval.flip_test,
            "lambda_g": lambda_g,
        }
    return out


def evaluate_model(
    model: ReidModel, cfg: Config, data: ReidData, device: torch.device,
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
    run_dir: str | Path, data_dir: str | None = None, camera_aware: bool = False, flip_test: bool | None = None
) -> dict[str, Any]:
    """Evaluate the checkpoint of ``run_dir`` on its (or another) dataset's test split;
    ``flip_test`` True / False overrides the run's ``eval.flip_test`` (None keeps it).

    A run trained on camera folders has none: ``data_dir`` must name a labelled set (read with
    ``layout="auto"``, since the run's layout is ``cameras``).
    """
    cfg, model, device, checkpoint = load_trained_model(run_dir)
    if camera_aware:
        cfg = replace(cfg, eval=replace(cfg.eval, camera_aware=True))
    if flip_test is not None:
        cfg = replace(cfg, eval=replace(cfg.eval, flip_test=flip_test))
    layout = "auto" if data_dir and cfg.data.layout == "cameras" else cfg.data.layout
    data = require_test_split(read_dataset(data_dir or cfg.data.data_dir, layout=layout), "--data")
    results, _, _ = evaluate_model(model, cfg, data, device)
    return final_metrics(results, int(checkpoint["epoch"]))
