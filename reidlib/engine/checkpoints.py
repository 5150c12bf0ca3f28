"""A run's checkpoints: saving the training state (at epoch ends, and inside an epoch) and resuming it.

``last.pt`` holds the model, the optimiser, the method's memory and, when written inside an epoch,
every process's progress and random generators (:mod:`reidlib.engine.state`); :mod:`reidlib.utils.runs`
writes it atomically and keeps the one before as ``previous.pt``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from reidlib.config import Config
from reidlib.engine.state import EpochProgress, TrainState, rng_state
from reidlib.errors import RunDirError
from reidlib.utils import distributed as dist
from reidlib.utils import runs

log = logging.getLogger(__name__)


def save_checkpoint(
    state: TrainState,
    cfg: Config,
    ctx: dist.Context,
    run_dir: Path,
    progress: EpochProgress | None = None,
    generator: torch.Generator | None = None,
) -> None:
    """Rank 0 writes ``last.pt``; inside an epoch every process first hands it its progress."""
    state.step = progress.step if progress is not None else 0
    state.progress = None
    if progress is not None:
        state.progress = dist.all_gather_objects(ctx, {**progress.saved(), "rng": rng_state(generator)})
    if ctx.main:
        runs.write_checkpoint(run_dir, state.state_dict(cfg, world=ctx.world))
    dist.barrier(ctx)


def resume(state: TrainState, ctx: dist.Context, run_dir: Path) -> dict[str, Any] | None:
    """Load the newest complete checkpoint of ``run_dir`` into ``state`` (and cut the metrics log
    back to it); None when there is none.

    Returns:
        Where the run resumes: ``epoch``, ``step`` and the ``checkpoint`` file's name.
    """
    path = dist.on_main(ctx, lambda: runs.latest_checkpoint(run_dir))
    if path is None:
        return None
    checkpoint = runs.read_checkpoint(path)
    if checkpoint.get("step", 0) and checkpoint.get("world_size", 1) != ctx.world:
        raise RunDirError(
            f"{path} was saved inside epoch {checkpoint['epoch'] + 1} by {checkpoint['world_size']} "
            f"process(es); resume it with as many (torchrun --nproc_per_node {checkpoint['world_size']}), "
            f"not {ctx.world}"
        )
    state.load_state_dict(checkpoint)
    if ctx.main:
        runs.truncate_metrics_log(run_dir, state.epoch)
    log.info("resuming %s at epoch %d, step %d (%s)", run_dir, state.epoch + 1, state.step, path.name)
    return {"epoch": state.epoch, "step": state.step, "checkpoint": path.name}
