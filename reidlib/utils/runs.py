"""Run directories: what a training run writes, written atomically, and how a run is resumed.

A run dir holds

- ``config.yaml``: the resolved config; a run dir made with another config is refused;
- ``metrics.jsonl``: one JSON line per epoch (loss, selection diagnostics, evaluation when due);
- ``metrics.json``: the final figures (``mAP``, ``rank1``, ``rank5``, ``rank10``, ``protocol``, ...);
- ``last.pt`` (and ``previous.pt``, the checkpoint before it): model, optimiser, the three banks,
  and within an epoch the step reached, its running sums and the random generators' states;
- ``features.npz``: the test set's features (global, parts, pids, camids, paths) for the notebooks;
- ``provenance.json``: one entry per start or resume: command, git commit, package versions,
  machine, and a fingerprint of the data (and the synthetic set's manifest);
- ``evaluations.json``: one entry per ``python -m reidlib evaluate``: its figures, data and options.

Every file is written to a temporary name in the same folder and renamed into place, so an
interrupted write never leaves a partial file behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from reidlib.config import Config, config_from_dict
from reidlib.errors import ConfigError, RunDirError

CONFIG = "config.yaml"
CHECKPOINT = "last.pt"
PREVIOUS = "previous.pt"
METRICS_LOG = "metrics.jsonl"
METRICS = "metrics.json"
FEATURES = "features.npz"
PROVENANCE = "provenance.json"
EVALUATIONS = "evaluations.json"

log = logging.getLogger(__name__)


def _atomic(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a run's files are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_output(path: str | Path, *, overwrite: bool, folder: bool = False, holds: tuple[str, ...] = ()) -> Path:
    """``path`` if a command may write it, checked before the work starts; else a ConfigError that
    names it. An existing output is kept unless ``overwrite``.

    Args:
        path: a file to write, or with ``folder`` a folder to write ``holds`` (its files) into.
        overwrite: replace an existing output (the command's ``--overwrite``).
    """
    path = Path(path)
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"{path}: {parent} is a file, not a folder")
    if folder:
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{path}: exists and is not a folder")
        taken = [name for name in holds if (path / name).exists()]
        if taken and not overwrite:
            raise ConfigError(f"{path} already holds {', '.join(taken)}; give --overwrite to replace them")
        return path
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; name a file to write")
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} exists; give --overwrite to replace it")
    return path


def write_text(path: Path, text: str) -> None:
    _atomic(Path(path), lambda fh: fh.write(text), mode="w")


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def append_jsonl(path: Path, obj: dict[str, Any]) -> None:
    """Append one line, rewriting the file atomically (it stays small: one line per epoch)."""
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    write_text(path, old + json.dumps(obj) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """The final figures of a finished run (``metrics.json``)."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        raise RunDirError(f"{path} not found: has {run_dir} finished training?")
    return json.loads(path.read_text())


def save_features(path: Path, **arrays: np.ndarray) -> None:
    _atomic(Path(path), lambda fh: np.savez(fh, **arrays))


def write_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """Write ``last.pt``, keeping the one before it as ``previous.pt``.

    At every moment ``last.pt`` is a complete checkpoint, the old one or the new one: the new one
    is written under a temporary name, the old one is hard-linked to ``previous.pt``, and only
    then does a rename put the new one in place.
    """
    run_dir = Path(run_dir)
    last = run_dir / CHECKPOINT
    new = run_dir / f".{CHECKPOINT}.new.tmp"
    _atomic(new, lambda fh: torch.save(state, fh))
    if last.exists():
        link = run_dir / f".{PREVIOUS}.link.tmp"
        link.unlink(missing_ok=True)
        try:
            os.link(last, link)
        except OSError:  # a filesystem without hard links
            shutil.copyfile(last, link)
        os.replace(link, run_dir / PREVIOUS)
    os.replace(new, last)


def checkpoint_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete checkpoint (truncated, corrupt), or None if it is.

    ``torch.save`` writes a zip archive; its directory and every member's CRC are checked
    without unpickling anything.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        return f"{type(err).__name__}: {err}"
    return f"member {bad} fails its CRC check" if bad else None


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of ``run_dir`` (``last.pt``, else ``previous.pt``), or None.

    A damaged ``last.pt`` is reported, renamed ``last.pt.damaged`` (kept, never deleted) and
    ``previous.pt`` is used. If every checkpoint is damaged, nothing is renamed and the error
    names each file and its fault.
    """
    run_dir = Path(run_dir)
    problems = []
    for name in (CHECKPOINT, PREVIOUS):
        path = run_dir / name
        if not path.exists():
            continue
        problem = checkpoint_problem(path)
        if problem is None:
            for bad, why in problems:
                kept = bad.with_name(bad.name + ".damaged")
                os.replace(bad, kept)
                log.warning("%s is damaged (%s); kept as %s, resuming from %s", bad, why, kept.name, name)
            return path
        problems.append((path, problem))
    if problems:
        raise RunDirError("no readable checkpoint: " + "; ".join(f"{path}: {why}" for path, why in problems))
    return None


def read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises several types for a file it cannot unpickle
        raise RunDirError(f"{path}: cannot read the checkpoint ({type(err).__name__}: {err})") from err


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The newest complete checkpoint of ``run_dir`` (see :func:`latest_checkpoint`), or None."""
    path = latest_checkpoint(run_dir)
    return None if path is None else read_checkpoint(path)


def truncate_metrics_log(run_dir: Path, epochs_done: int) -> None:
    """Drop ``metrics.jsonl`` rows of epochs after ``epochs_done``: they were written by a run
    whose checkpoint for them was lost, and the resumed run writes them again."""
    path = Path(run_dir) / METRICS_LOG
    rows = read_jsonl(path)
    kept = [row for row in rows if row["epoch"] <= epochs_done]
    if len(kept) < len(rows):
        log.warning("%s: dropping rows of epochs after %d (their checkpoint was lost)", path, epochs_done)
        write_text(path, "".join(json.dumps(row) + "\n" for row in kept))


def append_evaluation(run_dir: Path, entry: dict[str, Any]) -> None:
    """Add one evaluation of ``python -m reidlib evaluate`` (its figures, data and options) to
    ``evaluations.json``."""
    path = Path(run_dir) / EVALUATIONS
    evaluations = json.loads(path.read_text())["evaluations"] if path.exists() else []
    write_json(path, {"evaluations": [*evaluations, entry]})


def append_provenance(run_dir: Path, entry: dict[str, Any]) -> None:
    """Add one session (a start or a resume) to ``provenance.json``."""
    path = Path(run_dir) / PROVENANCE
    sessions = json.loads(path.read_text())["sessions"] if path.exists() else []
    write_json(path, {"sessions": [*sessions, entry]})


def prepare_run_dir(run_dir: Path, cfg: Config) -> bool:
    """Create ``run_dir`` for ``cfg``, or check that it already belongs to ``cfg``.

    One change is allowed to a run dir's config: ``train.epochs``, to at least the epochs it has
    trained (more epochs continue a finished run). The epochs already trained keep the learning
    rates they had; the rest follow the schedule for the new length (``lr_schedule``, the
    ``lambda_c`` ramp). The new length is written to ``config.yaml``.

    Returns:
        True if the folder already held this config (the run may resume), False if it is new.

    Raises:
        RunDirError: the folder holds another config, or files but no config.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG
    if config_path.exists():
        try:
            saved = config_from_dict(yaml.safe_load(config_path.read_text()))
        except Exception as err:
            raise RunDirError(f"{config_path}: cannot read the saved config ({err})") from err
        if replace(saved, train=replace(saved.train, epochs=cfg.train.epochs)) != cfg:
            diff = _diff(saved.to_dict(), cfg.to_dict())
            raise RunDirError(
                f"{run_dir} belongs to another config ({diff}); choose a new --run-dir, or resume it without "
                "--config and --set (only epochs may change: more epochs continue the run)"
            )
        if cfg.train.epochs != saved.train.epochs:
            trained = len(read_jsonl(run_dir / METRICS_LOG))
            if cfg.train.epochs < trained:
                raise RunDirError(f"{run_dir} has trained {trained} epochs: train.epochs must be at least {trained}")
            log.warning(
                "%s: train.epochs %d -> %d; the epochs trained keep their learning rates, the rest follow the "
                "schedule for %d epochs",
                run_dir,
                saved.train.epochs,
                cfg.train.epochs,
                cfg.train.epochs,
            )
            write_text(config_path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        for stale in run_dir.glob(".*.tmp"):  # a write that a kill -9 cut short
            log.info("removing %s, an unfinished write of an earlier run", stale)
            stale.unlink()
        return True
    if run_dir.exists() and any(run_dir.iterdir()):
        raise RunDirError(f"{run_dir} is not empty and holds no {CONFIG}; choose a new --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(config_path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return False


def _diff(old: dict, new: dict) -> str:
    changes = [
        f"{section}.{key}: {old[section][key]!r} -> {new[section][key]!r}"
        for section in new
        for key in new[section]
        if old[section][key] != new[section][key]
    ]
    return "; ".join(changes)


def is_finished(run_dir: Path, cfg: Config) -> bool:
    """Whether ``run_dir`` holds a finished run of ``cfg`` (``metrics.json`` and the same saved
    config): a grid reads such a run instead of training it again. ``data.data_dir`` is compared
    as the folder it names (a relative one from the working directory), so a run trained on
    ``/abs/path/cuhk01`` is the same run for ``../path/cuhk01`` when both name that folder."""
    run_dir = Path(run_dir)
    return (run_dir / METRICS).is_file() and _data_resolved(read_run_config(run_dir)) == _data_resolved(cfg)


def _data_resolved(cfg: Config) -> Config:
    folder = cfg.data.data_dir
    return replace(cfg, data=replace(cfg.data, data_dir=os.path.realpath(folder) if folder else ""))


def read_run_config(run_dir: Path) -> Config:
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise RunDirError(f"{run_dir} holds no {CONFIG}: is it a reidlib run dir?")
    return config_from_dict(yaml.safe_load(path.read_text()))
