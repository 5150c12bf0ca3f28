"""The one grid runner: arms x datasets x seeds, each arm one named change to a base config.

Every run is an ordinary run dir, ``OUT/<slug(arm)>/<dataset>/seed-<n>`` (a single dataset is a
grid of one), so an interrupted grid resumes where it stopped and a finished run of the same
config is read, not retrained (:func:`reidlib.utils.runs.is_finished`). The paper's ablations
(:mod:`reidlib.experiments.ablations`), the rules beyond the paper
(:mod:`reidlib.experiments.beyond`) and the methods side by side
(:mod:`reidlib.experiments.side_by_side`) are each a set of :class:`Arm` run by :func:`run_grid`.

A run's ``minutes`` is the sum of its epochs' ``seconds`` in ``metrics.jsonl``: training time only,
without reading the images, filling the banks or evaluating, and it survives a resume (a wall
clock would count the pause). Summaries (:func:`summarize`) give mean and sample std over seeds;
:func:`verdict` judges a difference of means against the seeds' spread. Papermill parameters are
literals, so the notebooks give datasets, seeds and arms as strings (:func:`parse_datasets`,
:func:`parse_seeds`, :func:`select_arms`).
"""

from __future__ import annotations

import logging
import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from reidlib.config import Config, apply_overrides, load_config
from reidlib.data import ReidData, read_dataset
from reidlib.engine.trainer import train_once
from reidlib.errors import ConfigError
from reidlib.utils import runs

log = logging.getLogger(__name__)

SUMMARY_FIGURES = ("mAP", "rank1", "final_precision", "minutes")


@dataclass(frozen=True)
class Arm:
    """One change to a base config, named: run dirs, tables and claims refer to it by ``name``."""

    name: str
    overrides: dict[str, Any]
    feature: str = "combined"  # which evaluation feature space the arm is judged on


# The same pipeline given every true match as a positive and none as a negative (scl.oracle): what
# perfect selection gives with the backbone, loss and budget of the base config. A yardstick every
# grid may hold; its rows carry the label "supervised" (never a recipe).
# (It pushes away no true match and leaves no other slot alone: no band, whatever the base's.)
CEILING = Arm(
    "supervised ceiling: every true match a positive, none a negative", {"oracle": "ceiling", "negative_band": 0}
)


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


def parse_datasets(text: str) -> dict[str, str]:
    """``"cuhk01:../data/cuhk01,pku:../data/pku"`` -> ``{"cuhk01": "../data/cuhk01", "pku": ...}``.

    Papermill parameters are literals, so the notebook takes the datasets as one string. A name
    ends at its first ``:`` or ``=``; the notebook's default uses ``:`` because papermill cannot
    read a parameter line that holds a second ``=`` (the parameter would vanish from its list).
    """
    datasets: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in str(text).split(","))):
        name, path = (re.split(r"[=:]", item, maxsplit=1) + [""])[:2]
        name, path = name.strip(), path.strip()
        if not name or not path:
            raise ConfigError(f"datasets: expected NAME:PATH, got {item!r}")
        if name in datasets or not re.fullmatch(r"[\w.-]+", name):  # it names a folder
            raise ConfigError(f"datasets: {name!r} is repeated or not a plain name (letters, digits, _ . -)")
        datasets[name] = path
    if not datasets:
        raise ConfigError("datasets: no NAME:PATH given")
    return datasets


def parse_seeds(value: int | str | Sequence[int]) -> list[int]:
    """``"0,1,2"`` (or ``0``, or ``[0, 1, 2]``) -> ``[0, 1, 2]``."""
    if isinstance(value, int):
        return [value]
    items = value.split(",") if isinstance(value, str) else value
    try:
        return [int(item) for item in items if str(item).strip()]
    except ValueError as err:
        raise ConfigError(f"seeds: expected integers separated by commas, got {value!r}") from err


def select_arms(value: str, arms: tuple[Arm, ...]) -> tuple[Arm, ...]:
    """``"all"``, or arm names (or their slugs) separated by commas; a comma inside parentheses
    belongs to the name (``"kNN + unit part scale (writes and loss),Jaccard"`` names two arms)."""
    if value.strip() == "all":
        return arms
    by_slug = {slug(arm.name): arm for arm in arms}
    wanted = [slug(item) for item in re.split(r",(?![^()]*\))", value) if item.strip()]
    unknown = [item for item in wanted if item not in by_slug]
    if unknown or not wanted:
        raise ConfigError(f"arms: unknown {unknown or value!r}; known: {'; '.join(arm.name for arm in arms)}")
    return tuple(by_slug[item] for item in dict.fromkeys(wanted))


def grid_config(path: str | Path, epochs: int = 0, threads: int = 1) -> Config:
    """The base config of the grid: ``path`` with ``threads``, and ``epochs`` unless it is 0."""
    return load_config(path, {"threads": threads, **({"epochs": epochs} if epochs else {})})


def run_grid(
    base: Config,
    out_dir: str | Path,
    datasets: dict[str, str],
    seeds: Iterable[int],
    arms: tuple[Arm, ...],
    train_missing: bool = True,
) -> list[dict[str, Any]]:
    """Train (or resume, or read) every arm x dataset x seed under ``out_dir``.

    Seeds are the outer loop, so an interrupted grid already holds every arm on every dataset
    with the first seed. With ``train_missing=False`` only finished runs are read: the others get
    a row with ``status: "not run"`` and no figures (a report over part of a grid says what it
    lacks instead of training for hours).

    Returns:
        one row per run: ``arm``, ``dataset``, ``seed``, ``status`` (``done`` or ``not run``), and
        for a finished run ``feature`` (the feature space the arm is judged on), ``mAP`` and
        ``rank1`` of it, ``minutes`` (training time, see the module docstring), ``final_precision``,
        ``final_recall`` and ``positives_per_anchor`` (the last epoch's selection), ``run_dir``.
    """
    same: dict[Config, str] = {}
    for arm in arms:  # e.g. a base config that already holds an arm's change
        twin = same.setdefault(apply_overrides(base, arm.overrides), arm.name)
        if twin != arm.name:
            log.warning("arms %r and %r give the same config: the grid trains it twice", twin, arm.name)
    loaded: dict[str, ReidData] = {}
    jobs = [(arm, name, seed) for seed in seeds for name in datasets for arm in arms]
    rows = []
    for number, (arm, name, seed) in enumerate(tqdm(jobs, desc="grid", unit="run"), start=1):
        cfg = apply_overrides(base, {**arm.overrides, "data_dir": datasets[name], "seed": seed})
        run_dir = Path(out_dir) / slug(arm.name) / name / f"seed-{seed}"
        finished = runs.is_finished(run_dir, cfg)
        if not finished and not train_missing:
            rows.append({"arm": arm.name, "dataset": name, "seed": seed, "status": "not run", "run_dir": str(run_dir)})
            continue
        if not finished and name not in loaded:  # each dataset read once, and only to train
            loaded[name] = read_dataset(datasets[name], layout=base.data.layout)
        metrics = train_once(cfg, run_dir, data=loaded.get(name))
        epochs = runs.read_jsonl(run_dir / runs.METRICS_LOG)
        last = epochs[-1] if epochs else {}
        figures = metrics["by_feature"][arm.feature]
        rows.append(
            {
                "arm": arm.name,
                "dataset": name,
                "seed": seed,
                "status": "done",
                "feature": arm.feature,
                "mAP": figures["mAP"],
                "rank1": figures["rank1"],
                "minutes": sum(row["seconds"] for row in epochs) / 60 if epochs else None,
                "final_precision": last.get("pos_precision"),
                "final_recall": last.get("pos_recall"),
                "positives_per_anchor": last.get("pos_per_anchor"),
                "final_cross_camera_recall": last.get("pos_cross_camera_recall"),
                "false_negatives_per_anchor": last.get("neg_false_per_anchor"),
                "supervised": metrics.get("supervised"),
                "run_dir": str(run_dir),
            }
        )
        log.info(
            "run %d/%d: %s, %s, seed %d: mAP %.1f%%", number, len(jobs), arm.name, name, seed, 100 * figures["mAP"]
        )
    return rows


# the selection's figures per epoch that the curves carry (reidlib.methods.scl.diagnostics)
CURVE_FIGURES = (
    "pos_precision",
    "pos_recall",
    "pos_per_anchor",
    "pos_cross_camera_recall",
    "neg_false_same_camera_per_anchor",
    "neg_false_other_camera_per_anchor",
    "true_kept",
    "true_left_alone",
    "true_negative",
    "true_beyond",
)


def epoch_curves(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run and epoch (from each run's ``metrics.jsonl``): ``arm``, ``dataset``,
    ``seed``, ``epoch`` and the selection's figures of :data:`CURVE_FIGURES` (None in warm-up, and
    where a run's log predates a figure)."""
    curves = []
    for row in (r for r in rows if r.get("status", "done") == "done"):
        for epoch in runs.read_jsonl(Path(row["run_dir"]) / runs.METRICS_LOG):
            curves.append(
                {
                    **{key: row[key] for key in ("arm", "dataset", "seed")},
                    "epoch": epoch["epoch"],
                    **{key: epoch.get(key) for key in CURVE_FIGURES},
                }
            )
    return curves


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    known = [v for v in values if v is not None and not math.isnan(v)]  # NaN: a None through pandas
    mean = statistics.fmean(known) if known else None
    return mean, statistics.stdev(known) if len(known) > 1 else None  # sample std (ddof = 1)


def summarize(rows: Iterable[dict[str, Any]], by: Sequence[str] = ("arm", "dataset")) -> list[dict[str, Any]]:
    """Mean and sample std (ddof = 1; None with one run) of mAP, rank1, final_precision and
    minutes per group of ``by``, groups in the order they first appear. A figure that is None or
    NaN (a run without it, e.g. no selecting epoch) is left out of that figure's mean and std.

    Returns:
        one row per group: the ``by`` keys, ``runs``, and ``<figure>_mean``, ``<figure>_std``.
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in (r for r in rows if r.get("status", "done") == "done"):
        groups.setdefault(tuple(row[key] for key in by), []).append(row)
    summary = []
    for key, members in groups.items():
        out: dict[str, Any] = {**dict(zip(by, key)), "runs": len(members)}
        for figure in SUMMARY_FIGURES:
            out[f"{figure}_mean"], out[f"{figure}_std"] = _mean_std([m[figure] for m in members])
        summary.append(out)
    return summary


def compare(summary: Iterable[dict[str, Any]], baseline_arm: str) -> list[dict[str, Any]]:
    """Each other arm against ``baseline_arm`` on the same dataset, by mean mAP.

    Returns:
        one row per arm and dataset: ``arm``, ``dataset``, ``mAP_gap`` (arm minus baseline),
        ``largest_std`` (of the two), ``verdict`` (:func:`verdict`, the arm first).
    """
    summary = list(summary)
    baselines = {row["dataset"]: row for row in summary if row["arm"] == baseline_arm}
    table = []
    for row in summary:
        if row["arm"] == baseline_arm:
            continue
        if row["dataset"] not in baselines:
            raise ConfigError(f"no {baseline_arm!r} runs on {row['dataset']!r} to compare with")
        base = baselines[row["dataset"]]
        stds = [s for s in (row["mAP_std"], base["mAP_std"]) if s is not None]
        table.append(
            {
                "arm": row["arm"],
                "dataset": row["dataset"],
                "mAP_gap": row["mAP_mean"] - base["mAP_mean"],
                "largest_std": max(stds) if len(stds) == 2 else None,
                "verdict": verdict(row["mAP_mean"], row["mAP_std"], base["mAP_mean"], base["mAP_std"]),
            }
        )
    return table


def share_of_ceiling(rows: Iterable[dict[str, Any]], ceiling_arm: str) -> list[dict[str, Any]]:
    """Each finished run's mAP as a share of the supervised ceiling's on the same dataset and seed
    (the same backbone, loss and budget, every true match a positive), then mean and sample std per
    arm and dataset. A run whose ceiling run is missing is left out.

    Returns:
        one row per arm and dataset (the ceiling's own included, at 1), in the order they first
        appear: ``arm``, ``dataset``, ``runs``, ``share_mean``, ``share_std`` (None with one run).
    """
    rows = [r for r in rows if r.get("status", "done") == "done"]
    ceiling = {(r["dataset"], r["seed"]): r["mAP"] for r in rows if r["arm"] == ceiling_arm}
    groups: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        top = ceiling.get((r["dataset"], r["seed"]))
        if top:
            groups.setdefault((r["arm"], r["dataset"]), []).append(r["mAP"] / top)
    out = []
    for (arm, dataset), shares in groups.items():
        mean, std = _mean_std(shares)
        out.append({"arm": arm, "dataset": dataset, "runs": len(shares), "share_mean": mean, "share_std": std})
    return out


def plus_minus(mean: float | None, std: float | None, scale: float = 100.0) -> str:
    """``"61.2 ± 1.3"`` for a table (in percent by default); the std is left out when unknown (None,
    or NaN as a pandas column holds a missing value)."""
    if _missing(mean):
        return "n/a"
    return f"{scale * mean:.1f}" + ("" if _missing(std) else f" ± {scale * std:.1f}")
