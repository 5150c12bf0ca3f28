"""The paper's ablations as a grid of runs: arms x seeds, each arm one change to a base config.

- single positive (k = 0) vs multiple positives;
- selected hard negatives vs all negatives (m = None);
- global only vs parts only vs both (the loss weight λp and the selection weight λg together, and
  only the trained feature space writes the mixture bank);
- cross-camera encouragement on vs off (λc = 0);
- global only as the public code runs it, with the untrained stripes still writing the mixture
  bank: the arm that collapses, kept to show why the fair arm stops them.

Every run is an ordinary run dir (``OUT/<arm>/seed-<n>``), so an interrupted grid resumes where
it stopped and a finished run is read, not retrained. ``02_ablations.ipynb`` runs the grid and
tabulates it; ``make ablations`` runs that notebook with papermill. Each of the paper's claims
(:data:`CLAIMS`) names the two arms it compares; :func:`verdict` judges a difference of means
against the seeds' spread (also used by :mod:`reidlib.experiments.beyond`).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from reidlib.config import Config, apply_overrides, load_config
from reidlib.data import ReidData, read_dataset
from reidlib.utils import runs
from reidlib.engine.train import train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Arm:
    """One change to a base config, named: run dirs, tables and claims refer to it by ``name``."""

    name: str
    overrides: dict[str, Any]
    feature: str = "combined"  # which evaluation feature space the arm is judged on


# The paper's method as the ablations test it: kNN positives on the banks as they are, and the
# public code's mixture bank (g and the concatenated stripes write it in turn, at norm sqrt(P)).
# configs/demo.yaml has since taken the real-image recipe's selection and mixture bank, so the
# grid's base puts these back (:func:`ablation_base`).
PAPER_METHOD = {"positive_rule": "knn", "camera_debias": "none", "mixture_writers": "both", "part_scale": "sqrt_p"}
FULL = "SCL (k positives, m selected negatives, both, λc)"  # the full method, every claim's reference
ARMS: tuple[Arm, ...] = (
    Arm(FULL, {}),
    Arm("single positive (k=0)", {"k": 0}),
    Arm("all negatives (m=all)", {"m": None}),
    Arm(
        "global only (λp=0, λg=1)",
        {"lambda_p": 0.0, "lambda_g": 1.0, "mixture_writers": "global"},
        feature="global",
    ),
    Arm(
        "parts only (λp=1, λg=0)",
        {"lambda_p": 1.0, "lambda_g": 0.0, "mixture_writers": "parts"},
        feature="parts",
    ),
    Arm("no cross-camera encouragement (λc=0)", {"lambda_c": 0.0}),
    Arm(
        "global only, stripes still write the bank (public code)",
        {"lambda_p": 0.0, "lambda_g": 1.0},
        feature="global",
    ),
)


# Each claim compares two arms, named: (first, second). It holds if the first arm's mean mAP beats
# the second's by more than the larger of their stds. The last is ours, not the paper's: does
# stopping the stripes' writes explain why the public code's global-only arm collapses?
CLAIMS: dict[str, tuple[str, str]] = {
    "multiple positives beat a single one": (FULL, "single positive (k=0)"),
    "selected hard negatives beat all negatives": (FULL, "all negatives (m=all)"),
    "both feature spaces beat global only": (FULL, "global only (λp=0, λg=1)"),
    "both feature spaces beat parts only": (FULL, "parts only (λp=1, λg=0)"),
    "cross-camera encouragement helps": (FULL, "no cross-camera encouragement (λc=0)"),
    "global only: only global writes beat stripes writing too": (
        "global only (λp=0, λg=1)",
        "global only, stripes still write the bank (public code)",
    ),
}


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _missing(value: float | None) -> bool:
    return value is None or math.isnan(value)


def verdict(first_mean: float, first_std: float | None, second_mean: float, second_std: float | None) -> str:
    """Compare two arms' means over seeds: ``"better"`` if the first beats the second by more than
    the larger of the two stds, ``"worse"`` if it trails by more, else ``"within noise"``.

    A std that is None or NaN (a single seed) leaves the spread unknown, so no difference counts:
    the verdict is ``"within noise"``.
    """
    if _missing(first_std) or _missing(second_std):
        return "within noise"
    gap, spread = first_mean - second_mean, max(first_std, second_std)
    if gap > spread:
        return "better"
    if -gap > spread:
        return "worse"
    return "within noise"


def claim_verdict(first_mean: float, first_std: float | None, second_mean: float, second_std: float | None) -> str:
    """:func:`verdict` in a claim's words: ``"held"``, ``"reversed"`` or ``"within noise"``."""
    words = {"better": "held", "worse": "reversed"}
    found = verdict(first_mean, first_std, second_mean, second_std)
    return words.get(found, found)


def ablation_base(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """The grid's base config: ``path`` with the paper's method (:data:`PAPER_METHOD`) and ``overrides``."""
    return load_config(path, {**PAPER_METHOD, **(overrides or {})})


def run_grid(
    base: Config, out_dir: str | Path, seeds: list[int], arms: tuple[Arm, ...] = ARMS, data: ReidData | None = None
) -> list[dict[str, Any]]:
    """Train (or resume, or read) every arm x seed under ``out_dir``.

    Returns:
        one row per run: ``arm``, ``seed``, ``feature``, ``mAP`` and ``rank1`` of the arm's feature
        space, the combined figures, and ``run_dir``.
    """
    if data is None:
        data = read_dataset(base.data.data_dir, layout=base.data.layout)
    jobs = [(arm, seed) for arm in arms for seed in seeds]
    rows = []
    for number, (arm, seed) in enumerate(tqdm(jobs, desc="ablation grid", unit="run"), start=1):
        cfg = apply_overrides(base, {**arm.overrides, "seed": seed})
        run_dir = Path(out_dir) / slug(arm.name) / f"seed-{seed}"
        metrics = runs.read_metrics(run_dir) if runs.is_finished(run_dir, cfg) else train(cfg, run_dir, data=data)
        figures = metrics["by_feature"][arm.feature]
        rows.append(
            {
                "arm": arm.name,
                "seed": seed,
                "feature": arm.feature,
                "mAP": figures["mAP"],
                "rank1": figures["rank1"],
                "combined_mAP": metrics["mAP"],
                "combined_rank1": metrics["rank1"],
                "run_dir": str(run_dir),
            }
        )
        log.info("run %d/%d: %s, seed %d: mAP %.1f%%", number, len(jobs), arm.name, seed, 100 * figures["mAP"])
    return rows
