"""The training loop: epochs, steps, checkpoints, resuming, signals, evaluation, the metrics log.

The loop knows nothing about any one method: a method (:mod:`reidlib.methods.hooks`; selective
contrastive learning is :class:`reidlib.methods.scl.learner.SCL`, Cluster Contrast
:class:`reidlib.methods.cluster_contrast.learner.ClusterContrast`) owns its memory, prepares each epoch
(``start_epoch``), draws its batches (``batches``) and answers the step's hooks. One step
(:func:`train_step`):

1. the model gives features: global g (B, D) and stripes p (B, P, d);
2. under ``no_grad`` the method picks the step's targets (``method.select``);
3. the method's loss (``method.loss``);
4. ``backward()`` and the optimiser step;
5. only then, under ``no_grad``, the method updates its memory with every process's batch
   (``method.update``).

The loop owns epoch and step; every schedule and every random seed is a function of them
(:mod:`reidlib.engine.state`). Labels are never used to train: the training identities only
*measure* what a method picks (its diagnostics, in ``metrics.jsonl``), so a set without them
(camera folders, :mod:`reidlib.data.cameras`) trains too. Evaluation reads the query and gallery
of the training set, or of a labelled set given apart (``eval_data``, ``--eval-data``); a set
with neither is trained but not evaluated, and ``metrics.json`` says why.

A checkpoint is written at the end of every epoch and, with ``checkpoint_every``, every N steps;
one written inside an epoch also holds the step reached, the epoch's running sums and the random
generators' states, so that resuming it under ``deterministic=true`` gives the same result, bit
for bit, as a run never stopped (on a CPU, with ``num_workers=0``). SIGINT and SIGTERM save one
and stop (:mod:`reidlib.utils.interrupts`). Under ``torchrun`` every process runs this loop on its
share of each epoch and the memory stays identical everywhere (:mod:`reidlib.utils.distributed`).
"""

from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from reidlib.config import Config
from reidlib.data import ReidData, check_images, load_images, read_dataset
from reidlib.data.batches import to_device, train_loader
from reidlib.engine import provenance
from reidlib.engine.checkpoints import resume, save_checkpoint
from reidlib.engine.state import (
    EpochProgress,
    TrainState,
    build_state,
    epoch_seed,
    learning_rate,
    set_rng_state,
    train_features,
)
from reidlib.errors import ConfigError, ReidlibError
from reidlib.evaluation.evaluator import evaluate_model, final_metrics, require_test_split, unevaluated_metrics
from reidlib.methods import loss_keys, method_class
from reidlib.utils import distributed as dist
from reidlib.utils import runs
from reidlib.utils.interrupts import StopSignals
from reidlib.utils.torch_env import seed_everything, setup_torch

log = logging.getLogger(__name__)


class TrainingError(ReidlibError):
    """Training cannot go on (a NaN or Inf loss, say); the last good checkpoint is kept."""


def train_step(state: TrainState, net: nn.Module, ctx: dist.Context, batch: dict[str, Any], where: str):
    """One step, the five numbered lines of the module docstring; ``where`` names it in errors.

    Returns:
        The method's targets, the batch's slot indices (B,), and its losses (``total`` first).
    """
    method, device = state.method, ctx.device
    img = to_device(batch["img"], device, state.memory_format)  # (B, 3, H, W); tracklets (B, S, 3, H, W)
    idx = batch["index"].to(device)
    out = net(img)  # 1
    with torch.no_grad():
        targets = method.select(out, idx)  # 2
    losses = method.loss(out, targets)  # 3
    check_finite(losses.total, ctx, where)
    state.optimizer.zero_grad(set_to_none=True)  # 4
    losses.total.backward()
    state.optimizer.step()
    with torch.no_grad():
        method.update(out, idx, targets, partial(dist.all_gather_rows, ctx))  # 5
    return targets, idx, losses


def check_finite(loss: Tensor, ctx: dist.Context, where: str) -> None:
    """Raise :class:`TrainingError` on every process if the loss is NaN or Inf on any."""
    (not_finite,) = dist.any_flags(ctx, not bool(torch.isfinite(loss)))
    if not_finite:
        value = loss.item() if not torch.isfinite(loss) else "not finite on another process"
        raise TrainingError(
            f"the loss is {value} at {where}; the last good checkpoint is kept (try a lower lr or a higher temperature)"
        )


def train_one_epoch(
    state: TrainState,
    net: nn.Module,
    cfg: Config,
    data: ReidData,
    ctx: dist.Context,
    *,
    run_dir: Path,
    stop: StopSignals,
) -> dict[str, Any]:
    """Run the epoch ``state.epoch`` from step ``state.step`` to its end; return its metrics row.

    Args:
        net: ``state.model``, or its ``DistributedDataParallel`` wrapper under torchrun.
        run_dir: where mid-epoch checkpoints go (``checkpoint_every``, or a stop request).
        stop: the signal handler; a request saves a checkpoint and raises :class:`Interrupted`.
    """
    t, method = cfg.train, state.method
    epoch = state.epoch
    lr = learning_rate(t, epoch)
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    seed = epoch_seed(t.seed, epoch, ctx.rank)
    generator = torch.Generator(device=ctx.device)
    keys = loss_keys(method.loss_names)
    resumed = bool(state.step)  # resuming inside this epoch
    if resumed:
        mine = state.progress[ctx.rank]
        progress = EpochProgress.restore(keys, state.step, mine, method.empty_stats())
        set_rng_state(mine["rng"], generator)
    else:
        progress = EpochProgress(keys, method.empty_stats())
        seed_everything(seed)
        generator.manual_seed(seed)
    method.start_epoch(epoch, generator, partial(train_features, state, cfg, data, ctx), resumed)
    batches = method.batches(epoch, t.batch_size, t.seed, ctx)
    loader = train_loader(cfg.data, data.train, batches[progress.step :], seed, state.images)
    state.model.train()
    bar = dist.progress_bar(
        ctx, loader, initial=progress.step, total=len(batches), desc=f"epoch {epoch + 1}/{t.epochs}"
    )
    for batch in bar:
        targets, idx, losses = train_step(state, net, ctx, batch, where=f"epoch {epoch + 1}, step {progress.step + 1}")
        progress.add(losses, method.step_stats(targets, idx))
        bar.set_postfix(loss=f"{progress.totals['loss'] / progress.step:.3f}")
        (stop_now,) = dist.any_flags(ctx, stop.requested)
        unfinished = progress.step < len(batches)
        if unfinished and (stop_now or (t.checkpoint_every and progress.step % t.checkpoint_every == 0)):
            save_checkpoint(state, cfg, ctx, run_dir, progress, generator)
            if stop_now:
                stop.stopped(f"at epoch {epoch + 1}, step {progress.step} of {len(batches)}", run_dir / runs.CHECKPOINT)
    sums = dist.all_reduce_sum(ctx, torch.tensor([*progress.totals.values(), progress.step], dtype=torch.float64))
    stats = dist.all_reduce_sum(ctx, progress.stats)
    steps = max(sums[-1].item(), 1.0)
    row = {key: value / steps for key, value in zip(progress.totals, sums.tolist())}
    row.update(lr=lr, **method.summarize(epoch, stats))
    return row


def _check_sizes(cfg: Config, num_train: int) -> None:
    if num_train < 2:
        raise ConfigError(f"the training split has {num_train} image(s); training needs at least 2")
    if cfg.train.batch_size > num_train:
        raise ConfigError(
            f"train.batch_size ({cfg.train.batch_size}) is larger than the training split ({num_train} images)"
        )


def train(
    cfg: Config, run_dir: str | Path, data: ReidData | None = None, eval_data: ReidData | None = None
) -> dict[str, Any] | None:
    """Train the config's method with ``cfg`` into ``run_dir`` (resuming it if it holds a checkpoint).

    Every input is checked before anything is written: the config against the data's size, and
    every image, decoded once.

    Args:
        cfg: the resolved config; ``cfg.data.data_dir`` names the dataset unless ``data`` is given,
            and ``cfg.eval.eval_data`` a labelled set (read with layout ``auto``) whose query and
            gallery evaluate the run instead of the dataset's; without either, a set with no test
            split (camera folders) is trained but not evaluated. Sizes that must fit the data
            (``scl.m``) are fitted first (:meth:`Method.fit`), and ``config.yaml`` records them.
        run_dir: where config.yaml, metrics, checkpoints, features and provenance go.
        data: an already read dataset (optional).
        eval_data: an already read ``cfg.eval.eval_data`` (optional).

    Returns:
        The final metrics (as written to ``metrics.json``; ``"evaluated": false`` and the reason
        when there was nothing to evaluate on); None on the processes other than rank 0 under
        torchrun.

    Raises:
        Interrupted: SIGINT or SIGTERM stopped the run (after saving a checkpoint).
        TrainingError: the loss became NaN or Inf.
    """
    run_dir = Path(run_dir)
    if data is None:
        data = read_dataset(cfg.data.data_dir, layout=cfg.data.layout)
    if cfg.eval.eval_data:
        test = require_test_split(eval_data or read_dataset(cfg.eval.eval_data), "--eval-data")
    else:
        test = data if data.has_test_split else None
    _check_sizes(cfg, len(data.train))
    cfg = method_class(cfg).fit(cfg, data.train)
    method_class(cfg).check(cfg, data.train)
    everything = data.train + (test.query + test.gallery if test is not None else [])
    if cfg.data.cache_images:  # decoding checks every image, as check_images does
        images = load_images(everything, cfg.data.height, cfg.data.width, desc="decoding images")
    else:
        images = None
        check_images(everything)
    ctx = dist.setup(setup_torch(cfg))
    try:
        dist.check_world(ctx, cfg.train.batch_size, len(data.train))
        return _train(cfg, run_dir, data, test, ctx, images)
    finally:
        dist.teardown(ctx)


def train_once(cfg: Config, run_dir: str | Path, data: ReidData | None = None) -> dict[str, Any] | None:
    """The final metrics of ``run_dir``: read when it holds the finished run of ``cfg`` (nothing is
    trained, evaluated or written), else :func:`train` (which resumes an unfinished one)."""
    if runs.is_finished(run_dir, cfg):
        return runs.read_metrics(run_dir)
    return train(cfg, run_dir, data=data)


def _train(
    cfg: Config,
    run_dir: Path,
    data: ReidData,
    test: ReidData | None,
    ctx: dist.Context,
    images: dict[str, Tensor] | None,
) -> dict[str, Any] | None:
    """Train on ``data``'s training split; evaluate on ``test``'s query and gallery (None: not at all)."""
    resumable = dist.on_main(ctx, lambda: runs.prepare_run_dir(run_dir, cfg))
    seed_everything(cfg.train.seed)
    state = build_state(cfg, data, ctx.device)
    state.images = images
    with StopSignals() as stop:
        resumed = resume(state, ctx, run_dir) if resumable else None
        if resumed is None:  # a new run: the method builds its memory, then the first checkpoint
            with stop.at_once():
                state.method.init_memory(partial(train_features, state, cfg, data, ctx))
            save_checkpoint(state, cfg, ctx, run_dir)
        if ctx.main:
            session = {
                "resumed_from": resumed,
                "world_size": ctx.world,
                "threads": torch.get_num_threads(),
                "data": provenance.data_fingerprint(data),
            }
            if test is not None and test is not data:
                session["eval_data"] = provenance.data_fingerprint(test)
            runs.append_provenance(run_dir, provenance.session(session))
            if state.method.supervised:
                log.warning(
                    "%s: the training identities choose, this run is a diagnostic, not a method",
                    state.method.supervised,
                )
            if test is None:
                log.warning(
                    "evaluation skipped: %s; the run trains and writes its checkpoints and metrics", no_test(data)
                )
        net: nn.Module = state.model
        if ctx.distributed:
            net = DistributedDataParallel(
                state.model,
                device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                find_unused_parameters=state.method.unused_parameters,
            )
        while state.epoch < cfg.train.epochs:
            _run_epoch(state, net, cfg, data, test, ctx, run_dir, stop)
        with stop.at_once():
            return _finish(state, cfg, data, test, ctx, run_dir)


def no_test(data: ReidData) -> str:
    """Why a run on ``data`` is not evaluated (it has no query and gallery, and none was given)."""
    return f"{data.root} has no query or gallery to evaluate on, and no labelled set was given with --eval-data"


def _run_epoch(
    state: TrainState,
    net: nn.Module,
    cfg: Config,
    data: ReidData,
    test: ReidData | None,
    ctx: dist.Context,
    run_dir: Path,
    stop: StopSignals,
) -> None:
    """One epoch, its evaluation (``eval_every``, on ``test`` unless None), its metrics row and its checkpoint."""
    start = time.perf_counter()
    row = {"epoch": state.epoch + 1, **train_one_epoch(state, net, cfg, data, ctx, run_dir=run_dir, stop=stop)}
    row["seconds"] = round(time.perf_counter() - start, 2)
    state.epoch, state.step, state.progress = state.epoch + 1, 0, None
    if ctx.main:
        eval_every = cfg.eval.eval_every
        if test is not None and eval_every and state.epoch % eval_every == 0 and state.epoch < cfg.train.epochs:
            results, _, _ = evaluate_model(state.model, cfg, test, ctx.device, state.images)
            row["eval"] = results
            log.info("epoch %d: mAP %.1f%%", state.epoch, 100 * results["combined"]["mAP"])
        log.info(
            "epoch %d/%d: loss %.4f, %s (%.0fs)",
            state.epoch,
            cfg.train.epochs,
            row["loss"],
            state.method.describe(row),
            row["seconds"],
        )
        runs.append_jsonl(run_dir / runs.METRICS_LOG, row)  # before the checkpoint: see runs.truncate_metrics_log
    save_checkpoint(state, cfg, ctx, run_dir)
    (stop_now,) = dist.any_flags(ctx, stop.requested)
    if stop_now:
        stop.stopped(f"after epoch {state.epoch}", run_dir / runs.CHECKPOINT)


def _finish(
    state: TrainState, cfg: Config, data: ReidData, test: ReidData | None, ctx: dist.Context, run_dir: Path
) -> dict[str, Any] | None:
    """The final evaluation on ``test`` (None: the reason instead), features and metrics (rank 0),
    after checking the replicas agree."""
    digests = dist.all_gather_objects(ctx, replica_digest(state))
    if not ctx.main:
        return None
    if test is None:
        metrics = unevaluated_metrics(state.epoch, no_test(data))
    else:
        results, query, gallery = evaluate_model(state.model, cfg, test, ctx.device, state.images)
        metrics = final_metrics(results, state.epoch)
        if test is not data:
            metrics["eval_data"] = test.root
    if state.method.supervised:
        metrics["supervised"] = state.method.supervised
    if ctx.distributed:
        metrics["replicas"] = {
            "world_size": ctx.world,
            "backend": ctx.backend,
            "digests": digests,
            "identical": len(set(digests)) == 1,
        }
        if len(set(digests)) > 1:
            log.error("the processes' memory or weights differ at the end: %s", digests)
    if test is not None:
        runs.save_features(
            run_dir / runs.FEATURES,
            **{f"query_{k}": v for k, v in query.items()},
            **{f"gallery_{k}": v for k, v in gallery.items()},
        )
    runs.write_json(run_dir / runs.METRICS, metrics)
    return metrics


def replica_digest(state: TrainState) -> str:
    """A sha256 of the method's memory and the model's parameters (not its BatchNorm statistics,
    which each process updates from its own batch between DistributedDataParallel's broadcasts)."""
    return dist.replica_digest(*state.method.buffers(), *state.model.parameters())
