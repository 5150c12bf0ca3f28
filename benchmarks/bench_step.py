"""Step overhead of SCL (selection + loss + memory update) against the backbone, and against a
per-sample loop, at Market-1501 and MSMT17 size on this CPU.

    .venv/bin/python benchmarks/bench_step.py [--threads 2] [--sizes 12936 32621] [--repeats 7]
        [--backbone-repeats 3] [--ref-anchors 64] [--archs resnet50 mobilenet_v2]

(From a worktree whose package is not the one installed in .venv, prefix ``PYTHONPATH=.``; the
first line of the output says which ``reidlib`` was imported.) The default run takes about 5 to 10
minutes on this project's 2-core machine, most of it ResNet-50. On a shared machine, other jobs
stall the many short multi-threaded ops of the vectorised step far more than the long backbone
passes (a waiting OpenMP thread holds up each op); the load average is printed at the start and
the end, and ``--threads 1`` gives steadier figures then.

Shape letters: B batch, N memory slots, D feature dim, P stripes, d = D/P, K positives, M negatives.

What one step of the training loop (``reidlib.engine.train.train_step``) adds to the backbone, timed stage by stage with
the paper's settings (k 7, m 500, lambda_g 0.5, lambda_c 0.05, lambda_t 0.5, alpha 1.75,
lambda_p 0.5, tau 0.1) and B = 64:

- **vectorised**: the library's own step, ``reidlib.methods.scl.hooks.SCL``'s hooks called in the training
  loop's order: ``select`` (the paper's rule through the exact ``reidlib.neighbours.searchers.TorchSearcher``:
  the combined squared distance with the camera penalty, as two matrix products on unit
  features), ``loss`` forward and backward into the features (leaves with ``requires_grad``,
  standing in for the model's output), and ``update`` (the global and part bank updates and the
  two mixture-bank writes, g then the concatenated stripes, at the own slot and the positives). Banks are random unit features with random cameras; every repeat starts from
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

Before timing, both sides run on a small clustered input in float64 and must agree: the same
selection indices, the same loss and feature gradients, the same banks afterwards. The bank holds,
for each anchor, a tight cluster of 1 + K + 2 slots (its own slot first) far from every other slot,
so the anchors' positives are disjoint: no slot is written twice in one step, and the library's
rule for a repeated write (the mean of the new features) never meets the sequential loop's
(one write after another). At full size, where random positives of different anchors do overlap,
the banks are compared only on slots written once, and the output counts the others.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

import reidlib
from reidlib.config import SCLConfig, SearchConfig, load_config
from reidlib.methods.memory import MemoryBank, build_banks
from reidlib.model import Features, build_model
from reidlib.methods.scl.hooks import SCL

GOAL_SHARE = 0.10  # SCL overhead at most 10% of the step with ResNet-50 at 256x128
GOAL_SPEEDUP = 50.0  # vectorised at least 50x faster than the per-sample loop
DATASETS = {12936: ("Market-1501", 6), 32621: ("MSMT17", 15)}  # N -> (name, cameras)
BACKBONES = {  # arch -> (height, width, D), the paper's model and the project's CPU model
    "resnet50": (256, 128, 2048),
    "mobilenet_v2": (128, 64, 256),
}


EXACT = SearchConfig(backend="torch")  # the exact search (auto picks it too below 100,000 slots)
PAPER_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "paper.yaml"


def paper_settings(**overrides) -> SCLConfig:
    """The paper's SCL settings, read from ``configs/paper.yaml``, with ``overrides``."""
    return replace(load_config(PAPER_CONFIG).scl, **overrides)


class StepInputs(NamedTuple):
    g: Tensor  # (B, D) global features of the batch
    p: Tensor  # (B, P, d) stripe features of the batch
    idx: Tensor  # (B,) each anchor's own slot
    bank_cams: Tensor  # (N,) camera of every slot
    G: Tensor  # (N, D) global bank
    L: Tensor  # (N, P, d) part bank
    X: Tensor  # (N, D) mixture bank


class StepOutput(NamedTuple):
    pos_idx: Tensor  # (B, 1+K)
    neg_idx: Tensor  # (B, M)
    loss: float
    g_grad: Tensor  # (B, D)
    p_grad: Tensor  # (B, P, d)
    G: Tensor  # banks after the step
    L: Tensor
    X: Tensor


def unit(x: Tensor) -> Tensor:
    return F.normalize(x, dim=-1)


# ---------------------------------------------------------------------------------------------
# Inputs


def random_inputs(
    num_slots: int, dim: int, parts: int, batch: int, cameras: int, seed: int = 0
) -> StepInputs:
    """Random unit features for the batch and the three banks, random cameras, distinct own slots."""
    gen = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    return StepInputs(
        g=unit(randn(batch, dim)),
        p=unit(randn(batch, parts, dim // parts)),
        idx=torch.randperm(num_slots, generator=gen)[:batch],
        bank_cams=torch.randint(0, cameras, (num_slots,), generator=gen),
        G=unit(randn(num_slots, dim)),
        L=unit(randn(num_slots, parts, dim // parts)),
        X=unit(randn(num_slots, dim)),
    )


def clustered_inputs(
    num_slots: int = 300, dim: int = 64, parts: int = 8, batch: int = 8, k: int = 7, cameras: int = 3,
    spread: float = 0.2, seed: int = 0, dtype: torch.dtype = torch.float64,
) -> StepInputs:
    """A small input on which the two sides must agree exactly, with no slot written twice.

    Anchor b owns slot ``b * (K + 3)``; that slot and the next K + 2 are noisy copies of one random
    centre (relative noise ``spread``), the anchor's features another. Within a cluster squared
    distances are about 0.1 and spread by more than lambda_c, so the camera penalty decides which
    K of the K + 2 become positives; every other slot is about 2 away. The positives of different
    anchors therefore never share a slot.
    """
    gen = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(*shape, generator=gen, dtype=dtype)  # noqa: E731
    size = k + 3  # own slot + K positives + 2 that the camera penalty pushes out
    assert batch * size <= num_slots
    base = randn(num_slots, dim)  # (N, D) background: unrelated slots
    centres = randn(batch, dim)  # (B, D)
    members = torch.arange(batch * size).view(batch, size)  # (B, K+3) slots of cluster b
    base[members] = centres[:, None] + spread * randn(batch, size, dim)
    anchors = centres + spread * randn(batch, dim)  # (B, D)
    noisy = lambda x: x + 0.05 * spread * randn(*x.shape)  # noqa: E731  global and parts differ a little
    return StepInputs(
        g=unit(noisy(anchors)),
        p=unit(noisy(anchors).view(batch, parts, dim // parts)),
        idx=members[:, 0],
        bank_cams=torch.randint(0, cameras, (num_slots,), generator=gen),
        G=unit(noisy(base)),
        L=unit(noisy(base).view(num_slots, parts, dim // parts)),
        X=unit(randn(num_slots, dim)),
    )


def library_banks(inp: StepInputs, momentum: float) -> tuple[MemoryBank, MemoryBank, MemoryBank]:
    """The library's three banks holding copies of the input banks (copied, not re-normalised)."""
    num_slots, dim = inp.G.shape
    banks = build_banks(num_slots, dim, inp.L.shape[1], momentum, dtype=inp.G.dtype)
    for bank, start in zip(banks, (inp.G, inp.L, inp.X)):
        bank.features.copy_(start)
    return banks


# ---------------------------------------------------------------------------------------------
# The vectorised step: the library's SCL method, its hooks called as the training loop calls them


def library_step(inp: StepInputs, s: SCLConfig) -> tuple[StepOutput, dict[str, float]]:
    """One SCL step after the backbone, through the library's own hooks (reidlib.methods.scl.hooks.SCL), in the
    order the training loop calls them; returns its results and stage times."""
    banks = library_banks(inp, s.bank_momentum)  # untimed copies
    pids = torch.arange(len(inp.G))  # the diagnostics' identities; not timed, not read by the step
    method = SCL(s, EXACT, *banks, pids, inp.bank_cams, epochs=s.warmup_epochs + 1)
    method.start_epoch(s.warmup_epochs, torch.Generator(), features=None, resumed=False)  # the first selecting epoch
    out = Features(inp.g.clone().requires_grad_(), inp.p.clone().requires_grad_())  # the model's output

    t0 = time.perf_counter()
    with torch.no_grad():
        sel = method.select(out, inp.idx)  # pos (B, 1+K), neg (B, M)
    t1 = time.perf_counter()
    loss = method.loss(out, sel).total
    loss.backward()
    t2 = time.perf_counter()
    method.update(out, inp.idx, sel, gather=lambda x: x)  # one process
    t3 = time.perf_counter()

    out = StepOutput(
        sel.pos_idx, sel.neg_idx, loss.item(), out.global_.grad, out.parts.grad,
        *(bank.features for bank in banks),
    )
    return out, {"selection": t1 - t0, "loss": t2 - t1, "memory": t3 - t2}


# ---------------------------------------------------------------------------------------------
# The per-sample reference: the same computation, one anchor (and one slot) at a time


def sq_dist_to_all(q: Tensor, bank: Tensor) -> Tensor:
    """The public code's ``cal_distance`` for one query: ``|q|^2 + |y_j|^2 - 2 q.y_j`` over the
    bank's rows, the bank's norms recomputed at each call as there. (D,), (N, D) -> (N,)"""
    return q.pow(2).sum() + bank.pow(2).sum(1) - 2.0 * bank @ q


def per_sample_step(
    inp: StepInputs, s: SCLConfig, anchors: int | None = None
) -> tuple[StepOutput, dict[str, float]]:
    """The step as a loop over anchors; ``anchors`` < B runs only the first ones (for timing)."""
    G, L, X = inp.G.clone(), inp.L.clone(), inp.X.clone()  # untimed copies
    b = len(inp.idx) if anchors is None else anchors
    parts = L.shape[1]
    g = inp.g[:b].clone().requires_grad_()  # (b, D)
    p = inp.p[:b].clone().requires_grad_()  # (b, P, d)
    times = {"distances": 0.0}

    t0 = time.perf_counter()
    pos_rows, neg_rows = [], []
    for i in range(b):
        own = int(inp.idx[i])
        td = time.perf_counter()
        gi, pi = g[i].detach(), p[i].detach()  # (D,), (P, d)
        global_dist = sq_dist_to_all(gi, G)  # (N,)
        part_dist = sum(sq_dist_to_all(pi[j], L[:, j]) for j in range(parts)) / parts  # (N,)
        dist = s.lambda_g * global_dist + (1.0 - s.lambda_g) * part_dist  # (N,)
        times["distances"] += time.perf_counter() - td
        same_camera = (inp.bank_cams == inp.bank_cams[own]).to(dist.dtype)  # (N,) this anchor's mask
        dist = dist + s.lambda_c * same_camera
        order = torch.sort(dist).indices  # (N,)
        order = order[order != own]  # (N-1,) the own slot is never a neighbour or a negative
        pos_rows.append([own] + order[: s.k].tolist())
        neg_rows.append(order[s.k : s.k + s.m].tolist())
    t1 = time.perf_counter()

    weights = [s.lambda_t] + [s.alpha * (1.0 - s.lambda_t) / s.k] * s.k  # own slot, then neighbours
    p_cat = p.flatten(1)  # (b, D)
    loss = 0.0
    for feats, share in ((p_cat, s.lambda_p), (g, 1.0 - s.lambda_p)):
        for i in range(b):
            slots = torch.tensor(pos_rows[i] + neg_rows[i])  # (1+K+M,)
            logits = X[slots] @ feats[i] / s.temperature  # (1+K+M,)
            log_prob = torch.log_softmax(logits, dim=0)
            term = -sum(w * log_prob[j] for j, w in enumerate(weights))
            loss = loss + share * term / len(inp.idx)
    loss.backward()
    t2 = time.perf_counter()

    with torch.no_grad():
        mu = s.bank_momentum
        for i in range(b):
            own = int(inp.idx[i])
            G[own] = unit(mu * G[own] + (1.0 - mu) * g[i])
            L[own] = unit(mu * L[own] + (1.0 - mu) * p[i])  # each stripe on its own sphere
        for feats in (g, p_cat):  # g writes first, then the concatenated stripes
            for i in range(b):
                for y in pos_rows[i]:
                    X[y] = unit((X[y] + feats[i]) / 2)
    t3 = time.perf_counter()

    out = StepOutput(
        torch.tensor(pos_rows), torch.tensor(neg_rows), loss.item(), g.grad, p.grad, G, L, X,
    )
    times.update(selection=t1 - t0, loss=t2 - t1, memory=t3 - t2)
    return out, times


def batched_public_distances(inp: StepInputs, s: SCLConfig) -> Tensor:
    """The public code's selection distance for the whole batch: one matrix product for the global
    bank, one per stripe (its ``local_distance`` loop), the camera mask per anchor. (B, N)"""
    q, qp = inp.g, inp.p  # (B, D), (B, P, d)

    def cal_distance(x: Tensor, y: Tensor) -> Tensor:  # (B, D'), (N, D') -> (B, N)
        return x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1)[None] - 2.0 * x @ y.T

    parts = inp.L.shape[1]
    part = sum(cal_distance(qp[:, j], inp.L[:, j]) for j in range(parts)) / parts
    dist = s.lambda_g * cal_distance(q, inp.G) + (1.0 - s.lambda_g) * part
    cams = inp.bank_cams[inp.idx]
    mask = torch.stack([(inp.bank_cams == c).to(dist.dtype) for c in cams])  # (B, N), per anchor
    return dist + s.lambda_c * mask


# ---------------------------------------------------------------------------------------------
# Comparing the two sides


def written_once(pos_idx: Tensor, num_slots: int) -> Tensor:
    """(N,) bool: slots that exactly one (anchor, positive) pair of the step writes."""
    return torch.bincount(pos_idx.flatten(), minlength=num_slots) == 1


def compare(lib: StepOutput, ref: StepOutput) -> dict[str, float | int | bool]:
    """How far the two sides' results are apart (banks compared on slots written at most once)."""
    num_slots = lib.X.shape[0]
    counts = torch.bincount(lib.pos_idx.flatten(), minlength=num_slots)
    repeated = counts > 1  # mixture slots the library averages and the loop writes in turn
    return {
        "same_selection": torch.equal(lib.pos_idx, ref.pos_idx) and torch.equal(lib.neg_idx, ref.neg_idx),
        "anchors_same_positives": int((lib.pos_idx == ref.pos_idx).all(1).sum()),
        "anchors_same_negative_set": int(
            (lib.neg_idx.sort(1).values == ref.neg_idx.sort(1).values).all(1).sum()
        ),
        "loss_diff": abs(lib.loss - ref.loss),
        "grad_diff": max(
            (lib.g_grad - ref.g_grad).abs().max().item(), (lib.p_grad - ref.p_grad).abs().max().item()
        ),
        "G_diff": (lib.G - ref.G).abs().max().item(),
        "L_diff": (lib.L - ref.L).abs().max().item(),
        "X_diff_not_repeated": (lib.X - ref.X)[~repeated].abs().max().item(),
        "X_slots_written_repeatedly": int(repeated.sum()),
    }


def equality_check(s: SCLConfig) -> dict[str, float | int | bool]:
    """Both sides on the clustered float64 input (no repeated writes, see the module docstring)."""
    inp = clustered_inputs(k=s.k)
    small = replace(s, m=50)  # 300 slots: 50 negatives
    lib, _ = library_step(inp, small)
    ref, _ = per_sample_step(inp, small)
    return compare(lib, ref)


def check_passes(c: dict) -> bool:
    """The bar for the float64 check: identical selection, the rest equal to float32 precision
    (the library's bank update computes in float32 whatever the bank's dtype)."""
    return (
        c["same_selection"]
        and c["X_slots_written_repeatedly"] == 0
        and c["loss_diff"] < 1e-9
        and c["grad_diff"] < 1e-9
        and max(c["G_diff"], c["L_diff"], c["X_diff_not_repeated"]) < 1e-6
    )


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


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    def once() -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    return statistics.median(once() for _ in range(repeats))


def backbone_seconds(arch: str, batch: int, parts: int, repeats: int) -> float:
    """Median seconds of forward + backward of ``build_model(arch)`` in train mode, after a warm-up."""
    height, width, dim = BACKBONES[arch]
    model = build_model(arch, feat_dim=dim, num_parts=parts, pretrained=None, last_stride=1).train()
    img = torch.randn(batch, 3, height, width)  # (B, 3, H, W)

    def step() -> float:
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        feats = model(img)
        (feats.global_.sum() + feats.parts.sum()).backward()
        return time.perf_counter() - t0

    step()  # warm-up
    return statistics.median(step() for _ in range(repeats))


def fmt_seconds(x: float) -> str:
    return f"{x:.3f}" if x < 100 else f"{x:.1f}"


def fmt_ratio(x: float) -> str:
    return f"{x:.1f}x" if x < 10 else f"{x:.0f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(DATASETS), help="bank sizes N")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--parts", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7, help="repeats of the vectorised step")
    parser.add_argument("--backbone-repeats", type=int, default=3, help="after one warm-up")
    parser.add_argument("--ref-anchors", type=int, default=64,
                        help="anchors the per-sample loop runs (fewer: scaled linearly to B, and said)")
    parser.add_argument("--ref-repeats", type=int, default=1)
    parser.add_argument("--archs", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    s = paper_settings()
    load = os.getloadavg()
    print(f"reidlib from {os.path.dirname(reidlib.__file__)}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads (--threads {args.threads}), {os.cpu_count()} CPUs; "
          f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"B = {args.batch}, P = {args.parts}, k = {s.k}, m = {s.m}, lambda_g = {s.lambda_g}, "
          f"lambda_c = {s.lambda_c}, lambda_t = {s.lambda_t}, alpha = {s.alpha}, "
          f"lambda_p = {s.lambda_p}, tau = {s.temperature}; float32")

    c = equality_check(s)
    print(f"\nequality check (clustered bank, N 300, D 64, B 8, m 50, float64, no slot written twice): "
          f"{'PASS' if check_passes(c) else 'FAIL'}: selection identical {c['same_selection']}, "
          f"loss diff {c['loss_diff']:.1e}, gradient diff {c['grad_diff']:.1e}, bank diffs "
          f"G {c['G_diff']:.1e} L {c['L_diff']:.1e} X {c['X_diff_not_repeated']:.1e}")

    backbone = {}
    for arch in args.archs:
        height, width, dim = BACKBONES[arch]
        backbone[arch] = backbone_seconds(arch, args.batch, args.parts, args.backbone_repeats)
        print(f"backbone {arch} {height}x{width} D {dim}: forward + backward of {args.batch} images, "
              f"median of {args.backbone_repeats} after a warm-up: {backbone[arch]:.2f} s")

    goals = []
    for n in args.sizes:
        name, cameras = DATASETS.get(n, ("custom size", 6))
        cols = {}
        for arch in args.archs:
            dim = BACKBONES[arch][2]
            inp = random_inputs(n, dim, args.parts, args.batch, cameras)
            library_step(inp, s)  # warm-up
            lib_out, vec = timed_runs(lambda: library_step(inp, s), args.repeats)
            anchors = min(args.ref_anchors, args.batch)
            ref_out, ref = timed_runs(lambda: per_sample_step(inp, s, anchors), args.ref_repeats)
            scale = args.batch / anchors
            ref_total = ref["total"] * scale
            batched = median_seconds(lambda: batched_public_distances(inp, s), args.repeats)
            ref_batched = ref_total - ref["distances"] * scale + batched
            agree = compare(lib_out, ref_out) if anchors == args.batch else None
            share = vec["total"] / (backbone[arch] + vec["total"])
            cols[arch] = dict(
                vec=vec, ref=ref_total, ref_batched=ref_batched, share=share, agree=agree, anchors=anchors,
                ref_sel=ref["selection"] * scale, ref_dist=ref["distances"] * scale,
            )

        print(f"\n{name}: N = {n:,}, {cameras} cameras, B = {args.batch}; seconds per step "
              f"(vectorised: median of {args.repeats}; reference: {args.ref_repeats} run(s))")
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
                print(f"{arch}: the reference ran {col['anchors']} of {args.batch} anchors; its times "
                      f"are scaled linearly by {args.batch / col['anchors']:.1f}")
            if col["agree"] is not None:
                a = col["agree"]
                print(f"{arch}, full size, float32: same positives for {a['anchors_same_positives']}/"
                      f"{args.batch} anchors, same negative sets for {a['anchors_same_negative_set']}/"
                      f"{args.batch}; loss diff {a['loss_diff']:.1e}; banks diff G {a['G_diff']:.1e} "
                      f"L {a['L_diff']:.1e}, X {a['X_diff_not_repeated']:.1e} on slots written once "
                      f"({a['X_slots_written_repeatedly']} mixture slots written more than once: the "
                      f"library averages them, the loop writes them in turn)")
        goals.append((name, cols))

    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          f"(above {args.threads} means other jobs shared the CPUs)")
    met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    for name, cols in goals:
        for arch, col in cols.items():
            share = col["share"]
            speedup = col["ref"] / col["vec"]["total"]
            batched = col["ref_batched"] / col["vec"]["total"]
            if arch == "resnet50":
                print(f"goal, {name}: SCL overhead {100 * share:.1f}% of the ResNet-50 step "
                      f"(<= {100 * GOAL_SHARE:.0f}%): {met(share <= GOAL_SHARE)}; vectorised "
                      f"{fmt_ratio(speedup)} faster than the per-sample loop (>= {GOAL_SPEEDUP:.0f}x): "
                      f"{met(speedup >= GOAL_SPEEDUP)} ({fmt_ratio(batched)} with the distances batched as "
                      f"the public code did: {met(batched >= GOAL_SPEEDUP)})")
            else:
                print(f"context, {name}: with {arch} at D {BACKBONES[arch][2]} the SCL overhead is "
                      f"{100 * share:.1f}% of the step; vectorised {fmt_ratio(speedup)} faster than the "
                      f"per-sample loop ({fmt_ratio(batched)} with batched distances)")


if __name__ == "__main__":
    main()
