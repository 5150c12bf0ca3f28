"""Run directories: what a training run writes, written atomically, and how a run is resumed.

A run dir holds

- ``config.yaml``: the resolved config; a run dir made with another config is refused;
- ``metrics.jsonl``: one JSON line per epoch (loss, selection diagnostics, evaluation when due);
- ``metrics.json``: the final figures (``mAP``, ``rank1``, ``rank5``, ``rank10``, ``protocol``, ...);
- ``last.pt`` (and ``previous.pt``, the checkpoint before it): model, optimiser, the three banks;
- ``features.npz``: the test set's features (global, parts, pids, camids, paths) for the notebooks.

Every file is written to a temporary name in the same folder and renamed into place, so an
interrupted write never leaves a partial file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import yaml

from reidlib.config import Config, config_from_dict
from reidlib.errors import RunDirError

CONFIG = "config.yaml"
CHECKPOINT = "last.pt"
PREVIOUS = "previous.pt"
METRICS_LOG = "metrics.jsonl"
METRICS = "metrics.json"
FEATURES = "features.npz"


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


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """Write ``last.pt`` atomically, keeping the one before it as ``previous.pt``."""
    run_dir = Path(run_dir)
    last = run_dir / CHECKPOINT
    tmp = run_dir / f".{CHECKPOINT}.new"
    _atomic(tmp, lambda fh: torch.save(state, fh))
    if last.exists():
        os.replace(last, run_dir / PREVIOUS)
    os.replace(tmp, last)


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint of ``run_dir``, or None if it has none.

    A damaged ``last.pt`` falls back to ``previous.pt``; if both are damaged the error names them.
    """
    run_dir = Path(run_dir)
    errors = []
    for name in (CHECKPOINT, PREVIOUS):
        path = run_dir / name
        if not path.exists():
            continue
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # torch raises several types for a truncated or corrupt file
            errors.append(f"{path}: {type(err).__name__}: {err}")
    if errors:
        raise RunDirError("no readable checkpoint: " + "; ".join(errors))
    return None


def prepare_run_dir(run_dir: Path, cfg: Config) -> bool:
    """Create ``run_dir`` for ``cfg``, or check that it already belongs to ``cfg``.

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
        if saved != cfg:
            diff = _diff(saved.to_dict(), cfg.to_dict())
            raise RunDirError(
                f"{run_dir} belongs to another config ({diff}); choose a new --run-dir "
                "or train with the saved config"
            )
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


def read_run_config(run_dir: Path) -> Config:
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise RunDirError(f"{run_dir} holds no {CONFIG}: is it a reidlib run dir?")
    return config_from_dict(yaml.safe_load(path.read_text()))
