"""Step overhead of SCL (selection + loss + memory update) against the backbone, and against a
per-sample loop, at Market-1501 and MSMT17 size on this CPU.

    .venv/bin/python -m benchmarks.bench_step [--threads 2] [--sizes 12936 32621] [--repeats 7]
        [--backbone-repeats 3] [--ref-anchors 64] [--archs resnet50 mobilenet_v2] [--device cpu]
    .venv/bin/python -m benchmarks.bench_step --search [--sizes 100000 1000000] [--threads 2]

``--search`` measures instead the per-step search at 100,000 to 1,000,000 slots, the paper's kNN
rule and the recipe's table rule, exact and through faiss (:mod:`benchmarks.step_search`).

(From a worktree whose package is not the one installed in .venv, prefix ``PYTHONPATH=.``; the
first line of the output says which ``reidlib`` was imported.) The default run takes about 5 to 10
minutes on this project's 2-core machine, most of it ResNet-50. On a shared machine, other jobs
stall the many short multi-threaded ops of the vectorised step far more than the long backbone
passes (a waiting OpenMP thread holds up each op); the load average is printed at the start and
the end, and ``--threads 1`` gives steadier figures then.

Shape letters: B batch, N memory slots, D feature dim, P stripes, d = D/P, K positives, M negatives.

What one step of the training loop (``reidlib.engine.trainer.train_step``) adds to the backbone, timed stage
by stage with
the paper's settings (k 7, m 500, lambda_g 0.5, lambda_c 0.05, lambda_t 0.5, alpha 1.75,
lambda_p 0.5, tau 0.1) and B = 64:

- **vectorised**: the library's own step, ``reidlib.methods.scl.learner.SCL``'s hooks called in the training
  loop's order: ``select`` (the paper's rule through the exact ``reidlib.neighbours.searchers.TorchSearcher``:
  the combined squared distance with the camera penalty, as two matrix products on unit
  features), ``loss`` forward and backward into the features (leaves with ``requires_grad``,
  standing in for the model's output), and ``update`` (the global and part bank updates and the
  two mixture-bank writes, g then the concatenated stripes, at the own slot and the positives).
  Banks are random unit features with random cameras; every repeat starts from
  the same banks.
- **per-sample reference**: the same numbers the way the public research code
  (github.com/pangbo1997/Unsup_ReID, ``engine/memory_bank.py``, ``engine/loss.py``) got them: a
  Python loop over the anchors, each with its distances to all N slots (the public
  ``cal_distance`` formula, stripe by stripe), its own camera mask, a sort of its N distances, its
  logits and loss term; then the memory written one slot at a time, ``X[y] = normalize((X[y] + x) / 2)``,
  as the public ``Exclusive.backward`` did. Where the public code was *faster* than this loop, the
  output says so: it computed the distances of the whole batch with one matrix product per feature
  space, so the speed-up is also given with that stage batched. (It was slower elsewhere: it
  recomputed each anchor's logits once per positive, 1 + K times; the reference computes them once.)
- **backbone**: ``build_model(...)`` forward and backward (loss = the sum of the features) on a
  random batch in train mode, random weights: the paper's ResNet-50 at 256x128, D 2048, and for
  context the project's CPU backbone, MobileNetV2 at 128x64, D 256 (whose overhead is measured at
  D 256). One warm-up, then the median of the repeats.

With ``--device cuda`` the backbone, the banks and both steps run on the GPU, and every clock
waits for the device's queued work (``benchmarks/gpu_check.py`` takes the backbone and the
vectorised step from here).

Before timing, both sides run on a small clustered input in float64 and must agree
(:func:`benchmarks.step_reference.equality_check`, the same check the tests run); at full size the
banks are compared only on slots written once, and the output counts the others.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch

import reidlib
from benchmarks import step_search
from benchmarks.step_reference import (
    StepOutput,
    batched_public_distances,
    check_passes,
    compare,
    equality_check,
    library_step,
    paper_settings,
    per_sample_step,
    random_inputs,
    wait,
)
from reidlib.model import build_model

GOAL_SHARE = 0.10  # SCL overhead at most 10% of the step with ResNet-50 at 256x128
GOAL_SPEEDUP = 50.0  # vectorised at least 50x faster than the per-sample loop
DATASETS = {12936: ("Market-1501", 6), 32621: ("MSMT17", 15)}  # N -> (name, cameras)
BACKBONES = {  # arch -> (height, width, D), the paper's model and the project's CPU model
    "resnet50": (256, 128, 2048),
    "mobilenet_v2": (128, 64, 256),
}


# ---------------------------------------------------------------------------------------------
# Timing


def timed_runs(
    step: Callable[[], tuple[StepOutput, dict[str, float]]], repeats: int
) -> tuple[StepOutput, dict[str, float]]:
    """Run ``step`` ``repeats`` times; the last run's output, and the median of each stage time
    and of the per-run totals (``distances`` is a part of ``selection``, not added again)."""
    times = []
    for _ in range(repeats):  # keep only the last output: each holds a copy of the banks
        last, stage_times = step()
        times.append(stage_times)
    out = {key: statistics.median(t[key] for t in times) for key in times[0]}
    out["total"] = statistics.median(sum(v for k, v in t.items() if k != "distances") for t in times)
    return last, out


def median_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    def once() -> float:
        wait(device)
        t0 = time.perf_counter()
        fn()
        wait(device)
        return time.perf_counter() - t0

    return statistics.median(once() for _ in range(repeats))


def backbone_seconds(arch: str, batch: int, parts: int, repeats: int, device: torch.device) -> float:
    """Median seconds of forward + backward of ``build_model(arch)`` in train mode on ``device``,
    after a warm-up."""
    height, width, dim = BACKBONES[arch]
    model = build_model(arch, feat_dim=dim, num_parts=parts, pretrained=None, last_stride=1).to(device).train()
    img = torch.randn(batch, 3, height, width, device=device)  # (B, 3, H, W)

    def step() -> float:
        model.zero_grad(set_to_none=True)
        wait(device)
        t0 = time.perf_counter()
        feats = model(img)
        (feats.global_.sum() + feats.parts.sum()).backward()
        wait(device)
        return time.perf_counter() - t0

    step()  # warm-up
    return statistics.median(step() for _ in range(repeats))


def step_share(overhead: float, backbone: float) -> float:
    """The share of a training step that SCL's overhead takes beside the backbone's pass."""
    return overhead / (backbone + overhead)


def fmt_seconds(x: float) -> str:
    return f"{x:.3f}" if x < 100 else f"{x:.1f}"


def fmt_ratio(x: float) -> str:
    return f"{x:.1f}x" if x < 10 else f"{x:.0f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--sizes", type=int, nargs="+", help="bank sizes N (12936 32621; --search: 100000 1000000)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--parts", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7, help="repeats of the vectorised step")
    parser.add_argument("--backbone-repeats", type=int, default=3, help="after one warm-up")
    parser.add_argument(
        "--ref-anchors",
        type=int,
        default=64,
        help="anchors the per-sample loop runs (fewer: scaled linearly to B, and said)",
    )
    parser.add_argument("--ref-repeats", type=int, default=1)
    parser.add_argument("--archs", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--device", default="cpu", help="where the backbone, the banks and the steps run")
    search = parser.add_argument_group("--search: the per-step search at large N (benchmarks/step_search.py)")
    search.add_argument("--search", action="store_true", help="measure the kNN and the recipe's rule at 100k-1M slots")
    search.add_argument("--config", default="configs/real-cpu.yaml", help="the recipe whose scl section is used")
    search.add_argument("--batches", type=int, default=5, help="timed batches through faiss, after one warm-up")
    search.add_argument("--exact-batches", type=int, default=2, help="timed batches of the exact rules")
    search.add_argument("--exact-recipe-max", type=int, default=100_000, help="the exact recipe up to this N")
    search.add_argument("--nprobe", type=int, nargs="+", default=[64, 256], help="IVF cells visited per anchor")
    search.add_argument("--rerank", type=float, nargs="+", default=[1.0, 2.0], help="candidates, x (count + 1)")
    search.add_argument("--faiss-index", nargs="+", default=["ivf"], choices=["ivf", "ivf_sq8"], help="index kinds")
    search.add_argument("--faiss-dim", type=int, nargs="+", default=[256], help="PCA dims of the IVF vectors")
    search.add_argument("--lists-max", type=int, default=100_000, help="build the stripe lists up to this N")
    search.add_argument("--latent", type=int, default=16, help="latent dims of the data model")
    search.add_argument("--noise", type=float, default=0.5, help="noise of the data model")
    search.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.search:
        args.sizes = args.sizes or [100_000, 1_000_000]
        step_search.main(args)
        return
    args.sizes = args.sizes or list(DATASETS)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    s = paper_settings()
    load = os.getloadavg()
    print(
        f"reidlib from {os.path.dirname(reidlib.__file__)}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads (--threads {args.threads}), {os.cpu_count()} CPUs, device {device}; "
        f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(
        f"B = {args.batch}, P = {args.parts}, k = {s.k}, m = {s.m}, lambda_g = {s.lambda_g}, "
        f"lambda_c = {s.lambda_c}, lambda_t = {s.lambda_t}, alpha = {s.alpha}, "
        f"lambda_p = {s.lambda_p}, tau = {s.temperature}; float32"
    )

    c = equality_check(s)
    print(
        f"\nequality check (clustered bank, N 300, D 64, B 8, m 50, float64, no slot written twice): "
        f"{'PASS' if check_passes(c) else 'FAIL'}: selection identical {c['same_selection']}, "
        f"loss diff {c['loss_diff']:.1e}, gradient diff {c['grad_diff']:.1e}, bank diffs "
        f"G {c['G_diff']:.1e} L {c['L_diff']:.1e} X {c['X_diff_not_repeated']:.1e}"
    )

    backbone = {}
    for arch in args.archs:
        height, width, dim = BACKBONES[arch]
        backbone[arch] = backbone_seconds(arch, args.batch, args.parts, args.backbone_repeats, device)
        print(
            f"backbone {arch} {height}x{width} D {dim}: forward + backward of {args.batch} images, "
            f"median of {args.backbone_repeats} after a warm-up: {backbone[arch]:.2f} s"
        )

    goals = []
    for n in args.sizes:
        name, cameras = DATASETS.get(n, ("custom size", 6))
        cols = {}
        for arch in args.archs:
            dim = BACKBONES[arch][2]
            inp = random_inputs(n, dim, args.parts, args.batch, cameras, device=device)
            library_step(inp, s)  # warm-up
            lib_out, vec = timed_runs(lambda: library_step(inp, s), args.repeats)
            anchors = min(args.ref_anchors, args.batch)
            ref_out, ref = timed_runs(lambda: per_sample_step(inp, s, anchors), args.ref_repeats)
            scale = args.batch / anchors
            ref_total = ref["total"] * scale
            batched = median_seconds(lambda: batched_public_distances(inp, s), args.repeats, device)
            ref_batched = ref_total - ref["distances"] * scale + batched
            agree = compare(lib_out, ref_out) if anchors == args.batch else None
            share = step_share(vec["total"], backbone[arch])
            cols[arch] = dict(
                vec=vec,
                ref=ref_total,
                ref_batched=ref_batched,
                share=share,
                agree=agree,
                anchors=anchors,
                ref_sel=ref["selection"] * scale,
                ref_dist=ref["distances"] * scale,
            )

        print(
            f"\n{name}: N = {n:,}, {cameras} cameras, B = {args.batch}; seconds per step "
            f"(vectorised: median of {args.repeats}; reference: {args.ref_repeats} run(s))"
        )
        heads = [f"{a} {BACKBONES[a][0]}x{BACKBONES[a][1]} D {BACKBONES[a][2]}" for a in args.archs]
        rows = [
            ("backbone forward + backward", lambda a: fmt_seconds(backbone[a])),
            ("selection (distance, top-k)", lambda a: fmt_seconds(cols[a]["vec"]["selection"])),
            ("loss forward + backward", lambda a: fmt_seconds(cols[a]["vec"]["loss"])),
            ("memory update (3 banks)", lambda a: fmt_seconds(cols[a]["vec"]["memory"])),
            ("SCL overhead, vectorised", lambda a: fmt_seconds(cols[a]["vec"]["total"])),
            ("overhead share of the step", lambda a: f"{100 * cols[a]['share']:.1f}%"),
            ("per-sample reference", lambda a: fmt_seconds(cols[a]["ref"])),
            ("  of which selection", lambda a: fmt_seconds(cols[a]["ref_sel"])),
            ("    of which per-anchor distances", lambda a: fmt_seconds(cols[a]["ref_dist"])),
            ("speed-up, reference / vectorised", lambda a: fmt_ratio(cols[a]["ref"] / cols[a]["vec"]["total"])),
            ("reference, distances batched as public code", lambda a: fmt_seconds(cols[a]["ref_batched"])),
            ("speed-up over that", lambda a: fmt_ratio(cols[a]["ref_batched"] / cols[a]["vec"]["total"])),
        ]
        width = max(len(r[0]) for r in rows) + 2
        print(" " * width + "".join(f"{h:>30}" for h in heads))
        for label, cell in rows:
            print(f"{label:<{width}}" + "".join(f"{cell(a):>30}" for a in args.archs))
        for arch in args.archs:
            col = cols[arch]
            if col["anchors"] < args.batch:
                print(
                    f"{arch}: the reference ran {col['anchors']} of {args.batch} anchors; its times "
                    f"are scaled linearly by {args.batch / col['anchors']:.1f}"
                )
            if col["agree"] is not None:
                a = col["agree"]
                print(
                    f"{arch}, full size, float32: same positives for {a['anchors_same_positives']}/"
                    f"{args.batch} anchors, same negative sets for {a['anchors_same_negative_set']}/"
                    f"{args.batch}; loss diff {a['loss_diff']:.1e}; banks diff G {a['G_diff']:.1e} "
                    f"L {a['L_diff']:.1e}, X {a['X_diff_not_repeated']:.1e} on slots written once "
                    f"({a['X_slots_written_repeatedly']} mixture slots written more than once: the "
                    f"library averages them, the loop writes them in turn)"
                )
        goals.append((name, cols))

    load = os.getloadavg()
    print(
        f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
        f"(above {args.threads} means other jobs shared the CPUs)"
    )
    met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    for name, cols in goals:
        for arch, col in cols.items():
            share = col["share"]
            speedup = col["ref"] / col["vec"]["total"]
            batched = col["ref_batched"] / col["vec"]["total"]
            if arch == "resnet50":
                print(
                    f"goal, {name}: SCL overhead {100 * share:.1f}% of the ResNet-50 step "
                    f"(<= {100 * GOAL_SHARE:.0f}%): {met(share <= GOAL_SHARE)}; vectorised "
                    f"{fmt_ratio(speedup)} faster than the per-sample loop (>= {GOAL_SPEEDUP:.0f}x): "
                    f"{met(speedup >= GOAL_SPEEDUP)} ({fmt_ratio(batched)} with the distances batched as "
                    f"the public code did: {met(batched >= GOAL_SPEEDUP)})"
                )
            else:
                print(
                    f"context, {name}: with {arch} at D {BACKBONES[arch][2]} the SCL overhead is "
                    f"{100 * share:.1f}% of the step; vectorised {fmt_ratio(speedup)} faster than the "
                    f"per-sample loop ({fmt_ratio(batched)} with batched distances)"
                )


if __name__ == "__main__":
    main()
