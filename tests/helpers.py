"""What several test modules share: the tiny config, tiny image trees, the CLI's one-line errors,
camera folders and signals, clustered features for the selection rules. (Fixtures are in conftest.py.)"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from reidlib.cli import main
from reidlib.config import load_config
from reidlib.errors import RunDirError
from reidlib.utils import runs

ROOT = Path(__file__).resolve().parents[1]  # the checkout


def clustered_features(n, ids, dim, parts, cams, *, seed=0, noise=0.5, camera_shift=0.0):
    """Features of ``ids`` identities around random centres, not yet normalised: global (n, dim),
    stripes (n, parts, dim / parts), cameras (n,) drawn from ``cams``, each camera's global
    features moved by its own offset of scale ``camera_shift`` (a camera's look)."""
    g = torch.Generator().manual_seed(seed)
    pid = torch.randint(0, ids, (n,), generator=g)
    cam = torch.randint(0, cams, (n,), generator=g)
    shift = camera_shift * torch.randn(cams, dim, generator=g)
    glob = torch.randn(ids, dim, generator=g)[pid] + shift[cam] + noise * torch.randn(n, dim, generator=g)
    stripes = torch.randn(ids, parts, dim // parts, generator=g)[pid] + noise * torch.randn(
        n, parts, dim // parts, generator=g
    )
    return glob, stripes, cam


TINY = {
    "arch": "resnet_mini",
    "feat_dim": 32,
    "num_parts": 4,
    "height": 64,
    "width": 32,
    "epochs": 3,
    "warmup_epochs": 1,
    "k": 2,
    "m": 12,
    "batch_size": 8,
    "threads": 1,
    "optimizer": "adam",
    "lr": 1e-3,
    "random_erasing": 0.0,
}


def tiny_cfg(data_dir, **overrides):
    return load_config(overrides={**TINY, "data_dir": str(data_dir), **overrides})


CC = {
    "method": "cluster_contrast",
    "num_instances": 4,
    "cluster_eps": 0.5,
    "cluster_k1": 8,
    "cluster_k2": 3,
    "min_samples": 3,
}


MARKET = {
    "bounding_box_train": [
        "0002_c1s1_000451_03.jpg",
        "0002_c2s1_000551_01.jpg",
        "0007_c3s3_065819_03.jpg",
        "-1_c1s1_000001_00.jpg",
    ],
    "query": ["0010_c1s1_001000_00.jpg", "0011_c6s1_002000_00.jpg"],
    "bounding_box_test": [
        "0010_c2s1_001100_01.jpg",
        "0011_c1s1_002100_01.jpg",
        "0000_c3s1_000100_01.jpg",
        "-1_c4s1_000200_01.jpg",
    ],
}


def write_jpeg(path: Path, seed: int = 0, size=(64, 32)) -> Path:
    """A small random JPEG (height, width = size)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path, quality=90)
    return path


def write_tree(root: Path, names: dict[str, list[str]]) -> Path:
    """Write ``{folder: [file names]}`` as tiny JPEGs under root."""
    for i, (folder, files) in enumerate(names.items()):
        for j, name in enumerate(files):
            write_jpeg(root / folder / name, seed=100 * i + j)
    return root


def run_cli(argv, capsys):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def assert_one_line_error(code, err, *needles):
    """Exit code 2 and one message line (progress bars, cleared as they end, aside)."""
    assert code == 2, err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    messages = [line for line in lines if "%|" not in line]  # tqdm bars draw "NN%|"
    assert len(messages) == 1 and messages[0].startswith("error: "), err
    for needle in needles:
        assert needle in messages[0], (needle, err)


def camera_folders(src: Path, dst: Path) -> Path:
    """The tiny set's training crops as unlabelled camera folders, dst/cam-C/day-1/*.jpg."""
    for path in sorted((src / "bounding_box_train").glob("*.jpg")):
        camera = path.name.split("_")[1][:2]  # c1s1 -> c1
        folder = dst / f"cam-{camera[1]}" / "day-1"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / path.name.replace("_", "-"))
    return dst


def sigterm_at_call(fn, n: int):
    """``fn`` that sends this process SIGTERM at its ``n``-th call (then calls on as usual)."""
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            os.kill(os.getpid(), signal.SIGTERM)
        return fn(*args, **kwargs)

    return wrapped


def wait_for_checkpoint(proc: subprocess.Popen, run_dir: Path, past_epoch: int) -> dict:
    """Poll until the run has checkpointed beyond ``past_epoch`` epochs (or fail if it ended)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before it could be stopped: {proc.communicate()}"
        try:
            checkpoint = runs.load_checkpoint(run_dir)
        except RunDirError:
            checkpoint = None
        if checkpoint is not None and (checkpoint["epoch"], checkpoint["step"]) > (past_epoch, 0):
            return checkpoint
        time.sleep(0.02)
    raise AssertionError("no checkpoint appeared in 120 s")
