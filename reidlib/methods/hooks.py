"""What a training method is to the loop: a small object with named hooks.

The loop (:mod:`reidlib.engine.trainer`) owns epochs, batches, the optimiser, checkpoints, resuming,
signals, evaluation and the metrics log, and knows nothing about any one method. A method owns
its memory (buffers a checkpoint saves), picks each step's targets, computes the loss and updates
its memory after the optimiser step. One step, as the loop runs it::

    out = net(images)                                  # Features: global_ (B, D), parts (B, P, d)
    with torch.no_grad():
        targets = method.select(out, idx)              # who each anchor is pulled to / pushed from
    losses = method.loss(out, targets)                 # a NamedTuple, ``total`` first
    losses.total.backward(); optimizer.step()
    with torch.no_grad():
        method.update(out, idx, targets, gather)       # memory changes only after the step

At each epoch's start the loop calls ``method.start_epoch`` and then draws the epoch's batches
from ``method.batches``. Selective contrastive learning (:class:`reidlib.methods.scl.learner.SCL`) and Cluster
Contrast (:class:`reidlib.methods.cluster_contrast.learner.ClusterContrast`) are the methods;
:func:`reidlib.methods.make_method` builds the one a config asks for (``train.method``).

Shape letters: B batch, N training images, D feature dim, P stripes, d = D / P.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

from reidlib.data import ImageRecord
from reidlib.model import Features
from reidlib.utils.distributed import Context

# Every training image's features in slot order, gathered over the processes (global (N, D),
# parts (N, P, d)); a method calls it when it needs them (it costs a pass over the training set).
TrainFeatures = Callable[[str], Features]
# Concatenates a tensor's rows over the processes in rank order (the identity on one process).
Gather = Callable[[Tensor], Tensor]


class Method(Protocol):
    """The hooks the loop calls, in the order it calls them."""

    loss_names: tuple[str, ...]  # the fields of the losses NamedTuple, ``total`` first
    # True if some of the model's parameters get no gradient from the loss (a method that trains
    # the global feature only): DistributedDataParallel must then look for them at every step
    unused_parameters: bool
    # what the training identities choose, if anything (a supervised diagnostic such as SCL's
    # scl.oracle): a label every log line, table and report carries; None for an unsupervised run
    supervised: str | None

    @classmethod
    def fit(cls, cfg, train: Sequence[ImageRecord]):
        """``cfg`` with the sizes that must fit the training split fitted to it (each change logged
        with the value it had), or ``cfg`` itself; the run's ``config.yaml`` records the result."""

    @classmethod
    def check(cls, cfg, train: Sequence[ImageRecord]) -> None:
        """Raise :class:`~reidlib.errors.ConfigError` if ``cfg`` does not fit the training split
        ``train`` (its size, whether its identities are known; called before anything is read or
        written)."""

    def init_memory(self, features: TrainFeatures) -> None:
        """Build the memory before the first epoch (not when resuming from a checkpoint)."""

    def start_epoch(self, epoch: int, generator: torch.Generator, features: TrainFeatures, resumed: bool) -> None:
        """Prepare the epoch's targets (a selector, clusters...) from the memory as it is now;
        called before the epoch's batches are drawn.

        ``generator`` is the epoch's seeded generator for any random draw of the method.
        ``resumed`` is True when the run resumes inside this epoch from a checkpoint: what the
        method saved in its state (pseudo-labels, say) then holds for the rest of the epoch."""

    def batches(self, epoch: int, batch_size: int, seed: int, ctx: Context) -> list[list[int]]:
        """This process's batches of training slots for ``epoch``, a pure function of its arguments
        and the method's state after :meth:`start_epoch` (a resumed run draws them again and skips
        the steps done)."""

    def select(self, out: Features, idx: Tensor) -> Any:
        """The step's targets for anchors ``idx`` (B,), under ``no_grad``."""

    def loss(self, out: Features, targets: Any) -> NamedTuple:
        """The losses, ``total`` first, each a scalar tensor."""

    def update(self, out: Features, idx: Tensor, targets: Any, gather: Gather) -> None:
        """Update the memory after the optimiser step, under ``no_grad``, with every process's batch."""

    def empty_stats(self) -> Tensor:
        """The diagnostic sums of no step (zeros), float64."""

    def step_stats(self, targets: Any, idx: Tensor) -> Tensor:
        """This step's diagnostic sums as a float64 vector; the loop adds them up over an epoch."""

    def summarize(self, epoch: int, stats: Tensor) -> dict[str, Any]:
        """The epoch's metrics-log fields from its summed ``stats``."""

    def describe(self, row: dict[str, Any]) -> str:
        """A log line's description of an epoch's metrics row."""

    def state_dict(self) -> dict[str, Any]:
        """The memory, by name, as a checkpoint saves it."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the memory from a checkpoint."""

    def buffers(self) -> tuple[Tensor, ...]:
        """The tensors that must be identical on every process (for the replica check)."""


def loss_keys(names: tuple[str, ...]) -> list[str]:
    """Metrics-log keys of the losses: ``loss`` for ``total``, ``loss_<name>`` for the others
    (a trailing underscore dropped: ``global_`` -> ``loss_global``)."""
    return ["loss" if n == "total" else f"loss_{n.rstrip('_')}" for n in names]
