"""The training methods by name (config ``train.method``, :data:`reidlib.config.METHODS`)."""

from __future__ import annotations

import torch

from reidlib.config import Config
from reidlib.methods.cluster_contrast import ClusterContrast
from reidlib.methods.hooks import Method
from reidlib.methods.scl import SCL

METHOD_CLASSES = {"scl": SCL, "cluster_contrast": ClusterContrast}  # by train.method (config.METHODS)


def method_class(cfg: Config) -> type:
    """The class of the method ``cfg.train.method`` names."""
    return METHOD_CLASSES[cfg.train.method]


def make_method(cfg: Config, train_pids: torch.Tensor, train_camids: torch.Tensor, device: torch.device) -> Method:
    """The method a config asks for, with its (empty) memory on ``device``.

    Args:
        cfg: the whole :class:`~reidlib.config.Config`; a method reads its own sections.
        train_pids: (N,) training identities, for the diagnostics only (never the loss).
        train_camids: (N,) training cameras.
    """
    return method_class(cfg).build(cfg, train_pids, train_camids, device)
