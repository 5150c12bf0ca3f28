"""Torch for a run: threads, determinism and the device from the config; every random seed at once."""

from __future__ import annotations

import random

import numpy as np
import torch

from reidlib.config import Config
from reidlib.errors import ConfigError


def setup_torch(cfg: Config) -> torch.device:
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    torch.use_deterministic_algorithms(t.deterministic)
    try:
        return torch.device(t.device)
    except RuntimeError as err:
        raise ConfigError(f"config key 'train.device': {err}") from err


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
