"""Shared fixtures: the real-image folder (skipped when absent), the tiny synthetic dataset.
(Helpers that are not fixtures are in tests/helpers.py.)"""

import os
from pathlib import Path

import pytest

from tests.helpers import ROOT


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
