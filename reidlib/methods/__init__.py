"""Training methods: what the loop calls, the memory, the losses, and each method.

- :mod:`reidlib.methods.hooks`: the :class:`Method` protocol, the hooks the loop calls in order;
- :mod:`reidlib.methods.memory`: :class:`MemoryBank` and the mixture bank's rules;
- :mod:`reidlib.methods.losses`: the losses, pure functions;
- :mod:`reidlib.methods.scl`: selective contrastive learning, the method this project rebuilds;
- :mod:`reidlib.methods.cluster_contrast`: Cluster Contrast, the clustering family to beat;
- :mod:`reidlib.methods.registry`: the method a config names (``train.method``).
"""

from reidlib.methods.hooks import Gather, Method, TrainFeatures, loss_keys
from reidlib.methods.memory import MemoryBank, build_banks
from reidlib.methods.registry import METHOD_CLASSES, make_method, method_class

__all__ = [
    "Gather",
    "Method",
    "TrainFeatures",
    "loss_keys",
    "MemoryBank",
    "build_banks",
    "METHOD_CLASSES",
    "make_method",
    "method_class",
]
