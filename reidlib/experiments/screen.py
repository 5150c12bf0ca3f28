"""Selection rules screened on a finished run's banks, in seconds, before any of them is trained.

A rule's worth shows in training (docs/results.md), but its *selection* can be measured at once:
load the banks an SCL run ended with, build each rule's miner over them as the run's last epoch
would (its lambda_c, the camera statistics refitted), pick positives and negatives for every slot,
and score the picks against the training identities, as the training log does every epoch
(:class:`~reidlib.methods.scl.diagnostics.SelectionStats`). ``python -m reidlib screen`` prints
them side by side::

    python -m reidlib screen --run-dir runs/cuhk01 \\
        --rule "CA-Jaccard: positive_rule=ca_jaccard" --rule "band 20: negative_band=20"

The banks are the run's own features, shaped by the rule it trained with: a screen ranks rules on
*these* features, not what each rule would make of training. It chose which rules to train on
2026-12-04 (docs/results.md, "The recipe of the evening of 2026-12-04").

Shape letters: N training images (memory slots), B anchors in a block.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from reidlib.config import Config, apply_overrides
from reidlib.data import ReidData, identities_known, read_dataset
from reidlib.errors import RunDirError
from reidlib.methods.scl import SCL
from reidlib.methods.scl.diagnostics import SelectionStats
from reidlib.methods.scl.selection import member
from reidlib.utils import runs

RUN_RULE = "the run's own rule"  # the first row: the run's config unchanged
# what the screen prints: column -> (summary key, scale, format)
COLUMNS = {
    "precision %": ("pos_precision", 100, "{:.1f}"),
    "recall %": ("pos_recall", 100, "{:.1f}"),
    "cross recall %": ("pos_cross_camera_recall", 100, "{:.1f}"),
    "pos / anchor": ("pos_per_anchor", 1, "{:.2f}"),
    "same-cam pos %": ("pos_same_camera", 100, "{:.1f}"),
    "FN / anchor": ("neg_false_per_anchor", 1, "{:.2f}"),
    "FN same / other cam": (("neg_false_same_camera_per_anchor", "neg_false_other_camera_per_anchor"), 1, "{:.2f}"),
    # the share of the first row's positives / negatives the rule picks too: how far an approximate
    # search (search.backend=faiss) strays from the exact selection
    "shared pos / neg %": (("pos_shared", "neg_shared"), 100, "{:.1f}"),
}


def screen_rules(
    run_dir: str | Path, rules: dict[str, dict[str, Any]], data: ReidData | None = None, block: int = 256
) -> list[dict[str, Any]]:
    """Each rule's selection over the banks of the SCL run in ``run_dir``.

    Args:
        rules: label -> config overrides (``{"negative_band": 20}``); the run's own rule is
            always the first row.
        data: the run's dataset, else read from its config's ``data.data_dir``.
        block: anchors per miner call.

    Returns:
        One dict per rule: ``rule``, ``overrides``, ``seconds`` (the miner's build and every
        slot's selection), the :meth:`SelectionStats.summary` figures, and ``pos_shared`` /
        ``neg_shared``: the share of the run's own rule's positives / negatives this rule picks too.

    Raises:
        RunDirError: no checkpoint, not an SCL run, or a training split without identities.
    """
    run_dir = Path(run_dir)
    cfg = runs.read_run_config(run_dir)
    if cfg.train.method != "scl":
        raise RunDirError(f"{run_dir}: a screen reads SCL's banks; this run trained {cfg.train.method!r}")
    state = runs.load_checkpoint(run_dir)
    if state is None:
        raise RunDirError(f"{run_dir}: no checkpoint ({runs.CHECKPOINT}) to take the banks from")
    train = (data or read_dataset(cfg.data.data_dir, layout=cfg.data.layout)).train
    if not identities_known(r.pid for r in train):
        raise RunDirError(f"{run_dir}: its training split ({cfg.data.data_dir}) has no identities to score picks with")
    pids = torch.tensor([r.pid for r in train])
    camids = torch.tensor([r.camid for r in train])
    rows, reference = [], None
    for label, overrides in {RUN_RULE: {}, **rules}.items():
        rule_cfg = _rule_config(cfg, overrides, train)
        start = time.perf_counter()
        stats, picks = _select_all(rule_cfg, state, pids, camids, block, label)
        seconds = time.perf_counter() - start
        reference = reference or picks
        shared = {"pos_shared": _shared(picks, reference, 0), "neg_shared": _shared(picks, reference, 1)}
        rows.append({"rule": label, "overrides": overrides, "seconds": seconds, **stats.summary(), **shared})
    return rows


def _shared(picks: list[tuple[Tensor, Tensor]], reference: list[tuple[Tensor, Tensor]], which: int) -> float | None:
    """The share of ``reference``'s positives (``which`` 0) or negatives (1), block by block, that
    ``picks`` holds too; None when the reference picked none."""
    found = total = 0
    for mine, theirs in zip(picks, reference):
        want = theirs[which]  # (B, W), -1 where a row picked fewer
        found += int((member(want, mine[which]) & (want >= 0)).sum())
        total += int((want >= 0).sum())
    return found / total if total else None


def _rule_config(cfg: Config, overrides: dict[str, Any], train) -> Config:
    rule_cfg = apply_overrides(cfg, overrides)
    rule_cfg = SCL.fit(rule_cfg, train)
    SCL.check(rule_cfg, train)
    return rule_cfg


def _select_all(
    cfg: Config, state: dict[str, Any], pids, camids, block: int, label: str
) -> tuple[SelectionStats, list[tuple[Tensor, Tensor]]]:
    """Every slot's selection by ``cfg``'s rule, at the run's last epoch, scored; and each block's
    picks: the positives (B, K) besides the anchor's own slot, -1 where masked, and the negatives
    (B, M)."""
    method = SCL.build(cfg, pids, camids, torch.device("cpu"))
    method.load_state_dict(state)
    last = max(cfg.train.epochs - 1, cfg.scl.warmup_epochs)  # a selecting epoch, its lambda_c
    method.start_epoch(last, torch.Generator().manual_seed(cfg.train.seed), features=None, resumed=False)
    stats, picks = SelectionStats(), []
    with torch.no_grad():
        for lo in tqdm(range(0, len(pids), block), desc=f"screening {label}", unit="block", leave=False):
            idx = torch.arange(lo, min(lo + block, len(pids)))  # (B,)
            g, p = method.global_bank.features[idx].float(), method.part_bank.features[idx].float()
            selection = method.miner(g, p, camids[idx], idx)
            stats.add(selection, idx, method.identities, camids)
            positives = selection.pos_idx[:, 1:].masked_fill(~selection.mask()[:, 1:], -1)
            picks.append((positives, selection.neg_idx))
    return stats, picks


def format_screen(rows: list[dict[str, Any]], title: str = "") -> str:
    """The screen as one plain-text table, a row per rule."""
    width = max(len(r["rule"]) for r in rows)
    head = [f"{'rule':<{width}}", *(f"{c:>{max(len(c), 6)}}" for c in COLUMNS), f"{'seconds':>7}"]
    lines = [title] if title else []
    lines.append("  ".join(head))
    for r in rows:
        cells = [f"{r['rule']:<{width}}"]
        for column, (key, scale, fmt) in COLUMNS.items():
            keys = key if isinstance(key, tuple) else (key,)
            values = [r.get(k) for k in keys]
            text = " / ".join("-" if v is None else fmt.format(scale * v) for v in values)
            cells.append(f"{text:>{max(len(column), 6)}}")
        cells.append(f"{r['seconds']:7.1f}")
        lines.append("  ".join(cells))
    return "\n".join(lines)
