"""Beyond the paper: changes to the CPU recipe as a grid of runs, arms x datasets x seeds.

The base config (``configs/real-cpu.yaml``) holds the recipe (CA-Jaccard positives on camera-
debiased features that 2 stripes agree on, λc 0.2); each arm of :data:`BEYOND_ARMS` changes it:
CA-Jaccard without the debiasing, the recipe with one setting moved (part agreement, the Jaccard
threshold, the debiasing, λc, the cross-camera k), back to the paper's k nearest positives, and
from there one change at a time (a cycle check, k-reciprocal, plain Jaccard, camera debiasing,
agreement of the stripes, a ramp of λc, where the stripes' sqrt(P) norm meets the mixture bank,
the public code's mixture bank), and the previous real-image config. Every arm runs on every
dataset with every seed; the run dirs are ``OUT/<slug(arm)>/<dataset>/seed-<n>``, so an
interrupted grid resumes and a finished run is read, not retrained
(:func:`reidlib.utils.runs.is_finished`, the rule of :func:`reidlib.experiments.ablations.run_grid`).

A run's ``minutes`` is the sum of its epochs' ``seconds`` in ``metrics.jsonl``: training time only,
without reading the images, filling the banks or evaluating, and it survives a resume (a wall
clock would count the pause). ``04_beyond_the_paper.ipynb`` runs the grid and tabulates it;
``make beyond`` runs that notebook with papermill. All figures are each run's headline (combined)
figures under the standard Market-1501 protocol, with the base config's test-time choices (for
``configs/real-cpu.yaml``: mirrored crops too, the stripes alone ranking the gallery).
"""

from __future__ import annotations

import logging
import math
import re
import statistics
from pathlib import Path
from typing import Any, Iterable, Sequence

from tqdm.auto import tqdm

from reidlib.utils import runs
from reidlib.experiments.ablations import Arm, slug, verdict
from reidlib.config import Config, apply_overrides, load_config
from reidlib.data import ReidData, read_dataset
from reidlib.errors import ConfigError
from reidlib.engine.train import train

log = logging.getLogger(__name__)

RECIPE = "recipe (CA-Jaccard + camera debias)"  # the base config as it is: every comparison's reference
# the paper's rule and its lambda_c, no checks; the single-change arms start from it
KNN = {"positive_rule": "knn", "camera_debias": "none", "lambda_c": 0.05, "part_agreement": 0}
# configs/real-cpu.yaml before the recipe (tuned on the synthetic set and pku_reid), for comparison
PREVIOUS_REAL_CPU = {
    **KNN, "height": 192, "width": 96, "pad": 8, "cache_images": False, "channels_last": False, "num_parts": 8,
    "k": 5, "lambda_c": 0.3, "warmup_epochs": 2, "epochs": 10, "batch_size": 32, "lr_schedule": "cosine",
    "mixture_writers": "both", "part_scale": "sqrt_p", "eval_every": 5,
}
BEYOND_ARMS: tuple[Arm, ...] = (
    Arm(RECIPE, {}),
    Arm("CA-Jaccard (no debias)", {"camera_debias": "none"}),
    Arm("recipe without part agreement", {"part_agreement": 0}),
    Arm("recipe, Jaccard eps 0.5", {"jaccard_eps": 0.5}),
    Arm("recipe, Jaccard eps 0.7", {"jaccard_eps": 0.7}),
    Arm("recipe, debias mean and spread", {"camera_debias": "mean_std"}),
    Arm("recipe, λc 0", {"lambda_c": 0.0}),
    Arm("recipe, λc 0.05 (before 2026-12-03)", {"lambda_c": 0.05}),
    Arm("recipe, λc 0.1", {"lambda_c": 0.1}),
    Arm("recipe, λc 0.3", {"lambda_c": 0.3}),
    Arm("recipe, λc ramp 0.05 → 0.3", {"lambda_c_start": 0.05, "lambda_c": 0.3}),
    Arm("recipe, cross-camera k 10", {"ca_k_inter": 10}),
    Arm("kNN positives (the paper's rule)", KNN),
    Arm("kNN + cycle check (adaptive k)", {**KNN, "positive_rule": "cycle"}),
    Arm("kNN + k-reciprocal", {**KNN, "positive_rule": "reciprocal"}),
    Arm("Jaccard", {**KNN, "positive_rule": "jaccard"}),
    Arm("kNN + camera debias (mean)", {**KNN, "camera_debias": "mean"}),
    Arm("kNN + part agreement (2 stripes)", {**KNN, "part_agreement": 2}),
    Arm("kNN + λc ramp 0 → 0.3", {**KNN, "lambda_c_start": 0.0, "lambda_c": 0.3}),
    Arm("kNN + unit part scale (writes and loss)", {**KNN, "part_scale": "unit"}),
    Arm("kNN + public mixture (both writes, sqrt P)", {**KNN, "mixture_writers": "both", "part_scale": "sqrt_p"}),
    Arm("previous real-cpu.yaml (k 5, λc 0.3, 192x96, P 8)", PREVIOUS_REAL_CPU),
)

SUMMARY_FIGURES = ("mAP", "rank1", "final_precision", "minutes")


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


def select_arms(value: str, arms: tuple[Arm, ...] = BEYOND_ARMS) -> tuple[Arm, ...]:
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


def run_beyond(
    base: Config,
    out_dir: str | Path,
    datasets: dict[str, str],
    seeds: Iterable[int],
    arms: tuple[Arm, ...] = BEYOND_ARMS,
    train_missing: bool = True,
) -> list[dict[str, Any]]:
    """Train (or resume, or read) every arm x dataset x seed under ``out_dir``.

    Seeds are the outer loop, so an interrupted grid already holds every arm on every dataset
    with the first seed. With ``train_missing=False`` only finished runs are read: the others get
    a row with ``status: "not run"`` and no figures (a report over part of a grid says what it
    lacks instead of training for hours).

    Returns:
        one row per run: ``arm``, ``dataset``, ``seed``, ``mAP`` and ``rank1`` (of the arm's
        feature space), ``minutes`` (training time, see the module docstring), ``final_precision``,
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
    for number, (arm, name, seed) in enumerate(tqdm(jobs, desc="beyond grid", unit="run"), start=1):
        cfg = apply_overrides(base, {**arm.overrides, "data_dir": datasets[name], "seed": seed})
        run_dir = Path(out_dir) / slug(arm.name) / name / f"seed-{seed}"
        if runs.is_finished(run_dir, cfg):
            metrics = runs.read_metrics(run_dir)
        elif not train_missing:
            rows.append({"arm": arm.name, "dataset": name, "seed": seed, "status": "not run", "run_dir": str(run_dir)})
            continue
        else:
            if name not in loaded:
                loaded[name] = read_dataset(datasets[name], layout=base.data.layout)
            metrics = train(cfg, run_dir, data=loaded[name])
        epochs = runs.read_jsonl(run_dir / runs.METRICS_LOG)
        last = epochs[-1] if epochs else {}
        figures = metrics["by_feature"][arm.feature]
        rows.append(
            {
                "arm": arm.name,
                "dataset": name,
                "seed": seed,
                "status": "done",
                "mAP": figures["mAP"],
                "rank1": figures["rank1"],
                "minutes": sum(row["seconds"] for row in epochs) / 60 if epochs else None,
                "final_precision": last.get("pos_precision"),
                "final_recall": last.get("pos_recall"),
                "positives_per_anchor": last.get("pos_per_anchor"),
                "run_dir": str(run_dir),
            }
        )
        log.info("run %d/%d: %s, %s, seed %d: mAP %.1f%%", number, len(jobs), arm.name, name, seed, 100 * figures["mAP"])
    return rows


def epoch_curves(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run and epoch (from each run's ``metrics.jsonl``): ``arm``, ``dataset``,
    ``seed``, ``epoch``, ``pos_precision``, ``pos_recall``, ``pos_per_anchor`` (None in warm-up)."""
    curves = []
    for row in (r for r in rows if r.get("status", "done") == "done"):
        for epoch in runs.read_jsonl(Path(row["run_dir"]) / runs.METRICS_LOG):
            curves.append(
                {
                    **{key: row[key] for key in ("arm", "dataset", "seed")},
                    "epoch": epoch["epoch"],
                    **{key: epoch.get(key) for key in ("pos_precision", "pos_recall", "pos_per_anchor")},
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


def compare(summary: Iterable[dict[str, Any]], baseline_arm: str = RECIPE) -> list[dict[str, Any]]:
    """Each other arm against ``baseline_arm`` on the same dataset, by mean mAP.

    Returns:
        one row per arm and dataset: ``arm``, ``dataset``, ``mAP_gap`` (arm minus baseline),
        ``largest_std`` (of the two), ``verdict`` (:func:`reidlib.experiments.ablations.verdict`, the arm first).
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


def plus_minus(mean: float | None, std: float | None, scale: float = 100.0) -> str:
    """``"61.2 ± 1.3"`` for a table (in percent by default); the std is left out when unknown."""
    if mean is None:
        return "n/a"
    return f"{scale * mean:.1f}" + ("" if std is None else f" ± {scale * std:.1f}")
