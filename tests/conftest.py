"""Shared fixtures: the real-image folder (skipped when absent), the tiny synthetic dataset, and the
device the device-aware tests run on. (Helpers that are not fixtures are in tests/helpers.py.)

``pytest --device cuda -m device`` runs every test that takes the ``device`` fixture on CUDA (they
carry the ``device`` marker on their own); without ``--device`` they run on the CPU with the rest.
"""

import os
from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT


def pytest_addoption(parser):
    parser.addoption(
        "--device", default="cpu", help="the torch device of the tests that take the `device` fixture (default cpu)"
    )


def pytest_configure(config):
    name = config.getoption("--device")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise pytest.UsageError(f"--device {name}: {err}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError(f"--device {name}: torch sees no CUDA device here")


def pytest_collection_modifyitems(items):
    for item in items:
        if "device" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.device)


@pytest.fixture
def device(request) -> torch.device:
    """The device of ``--device`` (default cpu): where a device-aware test puts its tensors."""
    return torch.device(request.config.getoption("--device"))


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
