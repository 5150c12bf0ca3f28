"""Beyond the paper: changes to the CPU recipe as a grid of runs, arms x datasets x seeds.

The base config (``configs/real-cpu.yaml``) holds the recipe (camera groups on camera-debiased
features that 2 stripes agree on, the 20 nearest non-positives left alone, λc 0.2, 192x96 crops,
batch 32); each arm of :data:`BEYOND_ARMS` changes it: the supervised ceiling and its halves (the
yardstick), the recipe without its band, the groups filled from CA-Jaccard, the recipe as it was
until 2026-12-04 (CA-Jaccard at 128x64, batch 64) and each of the day's changes alone, the groups'
settings, a wider band, the recipe through the approximate search it takes at 1,000,000 slots,
mutual neighbours across cameras added, CA-Jaccard and its settings, the debiasing, λc, back to the
paper's k nearest positives, and from there one change at a time (a cycle check, k-reciprocal, plain
Jaccard, camera debiasing, agreement of the stripes, a ramp of λc, where the stripes' sqrt(P) norm
meets the mixture bank, the public code's mixture bank), and the real-image config before the
recipe. Every arm runs on every dataset with every seed, by
:func:`reidlib.experiments.grid.run_grid`.
``04_beyond_the_paper.ipynb`` runs the grid and tabulates it; ``make beyond`` runs that notebook
with papermill. All figures are each run's headline (combined) figures under the standard
Market-1501 protocol, with the base config's test-time choices (for ``configs/real-cpu.yaml``:
mirrored crops too, the stripes alone ranking the gallery).
"""

from __future__ import annotations

from reidlib.experiments.grid import CEILING, Arm

RECIPE = "recipe (camera groups + band 20 + camera debias)"  # the base config as it is: every comparison's reference
NO_BAND = {"negative_band": 0}  # the recipe's band until the evening of 2026-12-04 (none)
CA_JACCARD = {"positive_rule": "ca_jaccard"}  # the recipe's rule until 2026-12-04
OLD_BUDGET = {"height": 128, "width": 64, "batch_size": 64}  # the recipe's crops and batch until 2026-12-04
# the recipe's search as it runs at 1,000,000 slots, forced at a small set's size (docs/scaling.md):
# the graph through a per-camera IVF index on every camera, 6 cells probed (on the recipe's final
# banks 98.6% of the exact positives on cuhk01, 99.8% on the demo set, all on pku_reid; the
# defaults at scale found 99.8% at 32,621 slots); the negatives through the step's IVF index, 10 of
# 32 cells, re-ranked once (61% of the exact negatives on cuhk01, 63% on the demo set: what the
# index finds at 1,000,000 slots within 100 ms a batch; pku_reid is too small, its anchors find
# too few candidates and fall back to the exact ones); the stripes' agreement within a pool of the
# per-epoch stripe lists and the searched slots. The graph's index in float32 (`ivf`), as these
# runs had it before the 8-bit codes became the default
AT_SCALE = {
    "backend": "faiss",
    "graph_index": "ivf",
    "graph_exact_below": 0,
    "graph_nprobe": 6,
    "nlist": 32,
    "nprobe": 10,
    "rerank": 1.0,
}
# the paper's rule and its lambda_c, no checks, no band; the single-change arms start from it
KNN = {"positive_rule": "knn", "camera_debias": "none", "lambda_c": 0.05, "part_agreement": 0, **NO_BAND}
# configs/real-cpu.yaml before the recipe (tuned on the synthetic set and pku_reid), for comparison
PREVIOUS_REAL_CPU = {
    **KNN,
    "height": 192,
    "width": 96,
    "pad": 8,
    "cache_images": False,
    "channels_last": False,
    "num_parts": 8,
    "k": 5,
    "lambda_c": 0.3,
    "warmup_epochs": 2,
    "epochs": 10,
    "batch_size": 32,
    "lr_schedule": "cosine",
    "mixture_writers": "both",
    "part_scale": "sqrt_p",
    "eval_every": 5,
}
BEYOND_ARMS: tuple[Arm, ...] = (
    Arm(RECIPE, {}),
    CEILING,
    Arm("supervised half: every true match a positive, the recipe's negatives", {"oracle": "positives"}),
    Arm("supervised half: the recipe's positives, no true match a negative", {"oracle": "negatives"}),
    Arm("recipe without the band (the recipe until the evening of 2026-12-04)", NO_BAND),
    Arm("recipe + CA-Jaccard fill (groups first, then k-reciprocal)", {"group_fill": "ca_jaccard"}),
    Arm("recipe without the band, + CA-Jaccard fill", {**NO_BAND, "group_fill": "ca_jaccard"}),
    Arm("the recipe until 2026-12-04 (CA-Jaccard, 128x64, batch 64, no band)", {**CA_JACCARD, **OLD_BUDGET, **NO_BAND}),
    Arm("CA-Jaccard positives, no band (the rule until 2026-12-04)", {**CA_JACCARD, **NO_BAND}),
    Arm("recipe at 128x64, batch 64, no band (the budget until 2026-12-04)", {**OLD_BUDGET, **NO_BAND}),
    Arm("recipe at 128x64, batch 64, no band, without part agreement", {**OLD_BUDGET, **NO_BAND, "part_agreement": 0}),
    Arm("recipe without part agreement", {"part_agreement": 0}),
    Arm("recipe, groups linked across cameras as mutual 1 nearest", {"group_inter_k": 1}),
    Arm("recipe, groups linked across cameras as mutual 3 nearest", {"group_inter_k": 3}),
    Arm("recipe, a band of 50", {"negative_band": 50}),
    Arm("recipe through IVF, as at 1,000,000 slots", AT_SCALE),
    Arm("recipe + cross-camera mutual neighbours (1 of 1)", {"cross_camera_positives": 1, "cross_camera_k": 1}),
    Arm("recipe + cross-camera mutual neighbours (2 of 3)", {"cross_camera_positives": 2, "cross_camera_k": 3}),
    Arm("CA-Jaccard (no debias)", {**CA_JACCARD, "camera_debias": "none"}),
    Arm("CA-Jaccard without part agreement", {**CA_JACCARD, "part_agreement": 0}),
    Arm("CA-Jaccard, Jaccard eps 0.5", {**CA_JACCARD, "jaccard_eps": 0.5}),
    Arm("CA-Jaccard, Jaccard eps 0.7", {**CA_JACCARD, "jaccard_eps": 0.7}),
    Arm("CA-Jaccard, cross-camera k 10", {**CA_JACCARD, "ca_k_inter": 10}),
    Arm("recipe, debias mean and spread", {"camera_debias": "mean_std"}),
    Arm("recipe, λc 0", {"lambda_c": 0.0}),
    Arm("recipe, λc 0.05 (before 2026-12-03)", {"lambda_c": 0.05}),
    Arm("recipe, λc 0.1", {"lambda_c": 0.1}),
    Arm("recipe, λc 0.3", {"lambda_c": 0.3}),
    Arm("recipe, λc ramp 0.05 → 0.3", {"lambda_c_start": 0.05, "lambda_c": 0.3}),
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
