"""A trained run's features of a folder of crops, and the features file that ``embed`` writes.

Shape letters: n images, D feature dim, P stripes, d = D / P.

``python -m reidlib embed`` is :func:`embed`; each step is a function:

- :func:`load_run`: a run's model (its newest checkpoint) and the model's fingerprint.
- :func:`find_images` and :func:`camera_labels`: every image under a folder, and its camera when
  the names or the folders say it; :func:`embed_images` runs the model over them, a batch at a time.
- :func:`save_features` / :func:`load_features`: the ``.npz`` features file, which records the
  model's fingerprint so that a gallery of another model is refused, not ranked.

``query`` ranks a gallery with these (:mod:`reidlib.retrieval.ranking`).

Cameras are read from the file names when every name starts like Market-1501's ``PPPP_cC``
(DukeMTMC-reID and CUHK03-NP names too): camera C, ``camid`` C - 1. Otherwise, when every image
lies in a sub-folder, the first sub-folder below the root names the camera (``ROOT/<camera>/...``)
and ``camid`` counts the names in sorted order. Otherwise cameras are unknown (``camid`` -1).
Such names also give identities (PPPP, :func:`name_identities`), which only the query page uses:
to mark the matches of the query's identity and count them.
"""

from __future__ import annotations

import hashlib
import logging
import re
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from reidlib.config import Config
from reidlib.data import ImageRecord
from reidlib.data.folders import find_images, folder_cameras
from reidlib.data.records import UNKNOWN_PID
from reidlib.errors import ConfigError, DataError
from reidlib.evaluation.evaluator import load_trained_model
from reidlib.evaluation.features import extract_features
from reidlib.model import ReidModel
from reidlib.utils import runs

log = logging.getLogger(__name__)

# PPPP_cC at the start of a name: identity PPPP, camera C (from 1)
MARKET_NAME = re.compile(r"(-?\d+)_c([1-9]\d*)")
# What `embed` writes; numpy reads it with np.load, without pickles.
FEATURE_KEYS = ("global", "parts", "paths", "camids", "cameras", "model_sha256", "model_epoch", "run_dir")


class SearchRun(NamedTuple):
    """A trained run ready to embed images: its config, model and the model's fingerprint."""

    run_dir: Path
    cfg: Config
    model: ReidModel
    device: torch.device
    epoch: int  # epochs the checkpoint had trained
    sha256: str  # of the model's weights (model_sha256)


def model_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over every weight's name, dtype, shape and bytes (in the standard memory layout, so a
    channels-last copy of the same weights gives the same digest)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name} {t.dtype} {tuple(t.shape)}\n".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_run(run_dir: str | Path) -> SearchRun:
    """The model of ``run_dir``'s newest checkpoint; RunDirError if it has no config or checkpoint."""
    cfg, model, device, checkpoint = load_trained_model(run_dir)
    return SearchRun(Path(run_dir), cfg, model, device, int(checkpoint["epoch"]), model_sha256(checkpoint["model"]))


def camera_labels(root: str | Path, paths: list[Path]) -> tuple[np.ndarray, np.ndarray, str]:
    """Each image's camera (see the module docstring for the rules).

    Returns:
        ``camids`` (n,) int64 (-1: unknown), ``cameras`` (n,) names (``c3``, the sub-folder's
        name, or ``""``), and where they came from (``file names``, ``folders`` or ``unknown``).
    """
    root = Path(root).absolute()
    named = [MARKET_NAME.match(p.name) for p in paths]
    if all(named):
        numbers = np.array([int(m.group(2)) for m in named], dtype=np.int64)
        return numbers - 1, np.array([f"c{c}" for c in numbers]), "file names"
    folders = folder_cameras(root, paths)
    if folders is not None:
        return *folders, "folders"
    return np.full(len(paths), -1, dtype=np.int64), np.full(len(paths), ""), "unknown"


def name_identities(paths) -> np.ndarray | None:
    """Each image's identity, when every file name starts like Market-1501's ``PPPP_cC`` (the rule
    of the cameras): (n,) int64 PPPP, with the distractors (0) and junk (-1) read as unknown, -1.
    None when some name does not say: identities of your own crops are unknown."""
    named = [MARKET_NAME.match(Path(p).name) for p in paths]
    if not all(named):
        return None
    pids = np.array([int(m.group(1)) for m in named], dtype=np.int64)
    return np.where(pids > 0, pids, -1)


def embed_images(run: SearchRun, path: str | Path, *, progress: bool = True) -> dict[str, np.ndarray]:
    """Features of one image, or of every image below a folder (:func:`find_images`).

    Every image is decoded; a broken one stops the run with a DataError naming it.

    Returns:
        ``global`` (n, D) and ``parts`` (n, P, d) float32, ``paths`` (n,), ``camids`` (n,) and
        ``cameras`` (n,) (:func:`camera_labels`).
    """
    paths = find_images(path)
    camids, cameras, source = camera_labels(path, paths)
    log.info("%s: %d images, cameras from %s", path, len(paths), source)
    records = [ImageRecord(str(p), UNKNOWN_PID, int(c)) for p, c in zip(paths, camids)]
    # Decoding in this process: a worker process would wrap the DataError that names a broken
    # image in a traceback, and the command line's one-line message would be lost.
    cfg = replace(run.cfg, data=replace(run.cfg.data, num_workers=0))
    feats = extract_features(
        run.model,
        records,
        cfg,
        run.device,
        desc=f"embedding {Path(path).name}",
        progress=progress,
        flip=cfg.eval.flip_test,
    )
    return {
        "global": feats["global"],
        "parts": feats["parts"],
        "paths": feats["paths"],
        "camids": camids,
        "cameras": cameras,
    }


def check_features_path(path: str | Path, *, overwrite: bool = False) -> Path:
    """``path`` if ``embed`` may write it there: a ``.npz`` name, not a folder, not an existing file
    unless ``overwrite``; else a ConfigError naming it."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ConfigError(f"{path}: a features file's name must end in .npz")
    return runs.check_output(path, overwrite=overwrite)


def save_features(path: str | Path, feats: dict[str, np.ndarray], run: SearchRun) -> Path:
    """Write ``feats`` (:func:`embed_images`) and the model's fingerprint to ``path`` (.npz), atomically."""
    path = Path(path)
    runs.save_features(
        path,
        **{key: feats[key] for key in ("global", "parts", "paths", "camids", "cameras")},
        model_sha256=np.array(run.sha256),
        model_epoch=np.array(run.epoch),
        run_dir=np.array(str(run.run_dir.absolute())),
    )
    return path


def load_features(path: str | Path, run: SearchRun) -> dict[str, np.ndarray]:
    """A features file of ``embed``, checked against ``run``'s model.

    Raises:
        DataError naming ``path``: not a readable .npz, not written by ``embed``, features of
        another dimension, or of another model (another fingerprint).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            feats = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not a readable .npz features file ({type(err).__name__}: {err})") from err
    missing = [key for key in FEATURE_KEYS if key not in feats]
    if missing:
        raise DataError(f"{path}: not a features file of `reidlib embed` (it lacks {', '.join(missing)})")
    m = run.cfg.model
    want = ((m.feat_dim,), (m.num_parts, m.feat_dim // m.num_parts))
    got = (feats["global"].shape[1:], feats["parts"].shape[1:])
    if got != want:
        raise DataError(
            f"{path}: features of another model's dimension (global {got[0]}, parts {got[1]}; {run.run_dir} "
            f"makes global {want[0]}, parts {want[1]}); embed the gallery with this run"
        )
    lengths = {key: len(feats[key]) for key in ("global", "parts", "paths", "camids", "cameras")}
    if len(set(lengths.values())) != 1 or not lengths["paths"]:
        raise DataError(f"{path}: damaged features file (rows: {lengths})")
    if str(feats["model_sha256"]) != run.sha256:
        raise DataError(
            f"{path}: embedded by another model (epoch {int(feats['model_epoch'])}, sha256 "
            f"{str(feats['model_sha256'])[:12]}; {run.run_dir} is epoch {run.epoch}, sha256 {run.sha256[:12]}); "
            "embed the gallery with this run"
        )
    return feats


def read_gallery(run: SearchRun, gallery: str | Path) -> dict[str, np.ndarray]:
    """A gallery given as a features file (:func:`load_features`) or as a folder (embedded now)."""
    gallery = Path(gallery)
    if gallery.is_file():
        return load_features(gallery, run)
    if not gallery.is_dir():
        raise DataError(f"{gallery}: no such folder of images or .npz features file")
    return embed_images(run, gallery)


def embed(
    run_dir: str | Path, images: str | Path, out: str | Path, *, overwrite: bool = False
) -> tuple[dict[str, np.ndarray], SearchRun]:
    """``python -m reidlib embed``: the features of a folder of crops, written to ``out`` (.npz);
    ``out`` is checked before any image is read, and an existing one kept unless ``overwrite``."""
    check_features_path(out, overwrite=overwrite)
    run = load_run(run_dir)
    feats = embed_images(run, images)
    save_features(out, feats, run)
    return feats, run
