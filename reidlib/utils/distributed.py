"""Distributed training with ``torchrun``: who this process is, and the few collectives SCL needs.

``torchrun --nproc_per_node N -m reidlib train ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set. Each one holds a full copy of the three memory banks; the
model is wrapped in ``DistributedDataParallel``, which averages gradients. After every step each
process all-gathers the batch's slot indices, features and selected positives, so that every
process applies the *same* bank update and the banks stay identical (``replica_digest`` checks
it at the end of a run). Only rank 0 writes run files; the others wait for it.

Without ``torchrun`` (``WORLD_SIZE`` unset) :func:`setup` returns a single-process context and
every function here is a no-op, so the training loop has one code path. Under ``torchrun`` even one
process joins a process group, so that ``torchrun --nproc_per_node 1`` runs the distributed path
(``DistributedDataParallel`` and the collectives, NCCL on a GPU) on a machine with one device.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor
from tqdm.auto import tqdm

from reidlib import errors
from reidlib.errors import ConfigError

T = TypeVar("T")
TORCHRUN_ID = "TORCHELASTIC_RUN_ID"  # set by torchrun in every process it starts


@dataclass(frozen=True)
class Context:
    """This process's place in the run: ``rank`` of ``world`` processes, on ``device``;
    ``backend`` (gloo or nccl) names the process group it joined, None without one."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def main(self) -> bool:
        """Rank 0: the process that logs, draws progress bars and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether this process is in a process group (started by ``torchrun``, even alone)."""
        return self.backend is not None


def setup(device: torch.device, timeout_minutes: int = 120) -> Context:
    """Join the process group that ``torchrun`` describes in the environment, if any (a
    ``WORLD_SIZE`` above 1, or torchrun's ``TORCHELASTIC_RUN_ID`` with one process).

    gloo on a CPU, NCCL on CUDA; with CUDA each process takes the device ``LOCAL_RANK``.
    ``timeout_minutes`` bounds how long the others wait while rank 0 evaluates or writes.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1 and TORCHRUN_ID not in os.environ:
        return Context(device=device)
    if device.type == "cuda":
        device = torch.device(device.type, int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(minutes=timeout_minutes))
    return Context(rank=dist.get_rank(), world=dist.get_world_size(), device=device, backend=str(dist.get_backend()))


def teardown(ctx: Context) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()


def all_gather_rows(ctx: Context, tensor: Tensor) -> Tensor:
    """Concatenate every process's ``tensor`` along dim 0, in rank order (row counts may differ).

    Shape:
        tensor: (n_r, *S) on each rank -> (sum_r n_r, *S) on every rank.
    """
    if not ctx.distributed:
        return tensor
    count = torch.tensor([tensor.shape[0]], device=tensor.device)
    counts = [torch.zeros_like(count) for _ in range(ctx.world)]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    gathered = [torch.empty_like(padded) for _ in range(ctx.world)]
    dist.all_gather(gathered, padded.contiguous())
    return torch.cat([g[:n] for g, n in zip(gathered, sizes)])


def progress_bar(ctx: Context, iterable: Iterable[T], **kwargs: Any) -> tqdm:
    """A tqdm bar on rank 0; silent elsewhere, so N processes draw one bar."""
    return tqdm(iterable, leave=False, unit="batch", disable=not ctx.main, **kwargs)


def any_flags(ctx: Context, *flags: bool) -> tuple[bool, ...]:
    """For each flag, whether *any* process raised it (one small all-reduce for them all).

    The loop asks this every step about a non-finite loss and a stop request, so that every
    process stops at the same step instead of leaving the others waiting in a collective.
    """
    if not ctx.distributed:
        return flags
    values = torch.tensor([float(f) for f in flags], device=ctx.device)
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return tuple(bool(v) for v in values.tolist())


def all_reduce_sum(ctx: Context, values: Tensor) -> Tensor:
    if ctx.distributed:
        values = values.clone()
        dist.all_reduce(values)
    return values


def all_gather_objects(ctx: Context, obj: T) -> list[T]:
    """Every process's ``obj`` (picklable), in rank order."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world
    dist.all_gather_object(out, obj)
    return out


def on_main(ctx: Context, fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and hand its result, or its ReidlibError, to every process.

    The other processes wait meanwhile, so a bad input stops them all with rank 0's message.
    """
    if not ctx.distributed:
        return fn()
    outcome: list[Any] = [None]
    if ctx.main:
        try:
            outcome = [("ok", fn())]
        except errors.ReidlibError as err:
            outcome = [("error", type(err).__name__, str(err))]
    dist.broadcast_object_list(outcome, src=0)
    if outcome[0][0] == "error":
        _, name, message = outcome[0]
        raise getattr(errors, name, errors.ReidlibError)(message)
    return outcome[0][1]


def replica_digest(*tensors: Tensor) -> str:
    """A sha256 of the tensors' bytes: equal on every process if the replicas are identical."""
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def check_world(ctx: Context, batch_size: int, num_train: int) -> None:
    """Every process takes ``batch_size`` images a step from its 1/world share of the data."""
    if ctx.distributed and batch_size * ctx.world > num_train:
        raise ConfigError(
            f"train.batch_size ({batch_size}) x {ctx.world} processes exceeds the training split ({num_train} images)"
        )
