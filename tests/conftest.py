"""Shared fixtures: tiny image trees, the real-image folder (skipped when absent), tiny datasets."""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


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


def shared_data_dir() -> Path:
    return Path(os.environ.get("REIDLIB_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture
def shared_data():
    """The real development images (../shared/data); the test is skipped when they are absent."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real images not present at {path}")
    return path


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory):
    """The synthetic 'tiny' preset, generated once per test session."""
    from reidlib.data.synthetic import generate

    out = tmp_path_factory.mktemp("synthetic") / "tiny"
    generate(out, preset="tiny", seed=0)
    return out
