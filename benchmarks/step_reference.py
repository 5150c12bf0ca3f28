"""The per-sample reference of one SCL step, and the library's step beside it on the same inputs.

Shape letters: B batch, N memory slots, D feature dim, P stripes, d = D/P, K positives, M negatives.

- :func:`library_step`: the library's own step, ``reidlib.methods.scl.SCL``'s hooks called in the
  training loop's order (select, loss and backward, update);
- :func:`per_sample_step`: the same numbers the way the public research code
  (github.com/pangbo1997/Unsup_ReID) got them, one anchor (and one slot) at a time;
- :func:`clustered_inputs` / :func:`random_inputs`: the inputs both take, and :func:`compare` /
  :func:`check_passes`: how far apart their results are.

The library's step runs where its inputs are (``device``); its stage times wait for the device's
queued work (:func:`wait`), so that they hold on a GPU too.

The tests (``tests/methods/scl/test_step_reference.py``) hold the library to this loop;
``benchmarks/bench_step.py`` times both. On the clustered float64 input both sides must agree: the
same selection indices, the same loss and feature gradients, the same banks afterwards. The bank
holds, for each anchor, a tight cluster of 1 + K + 2 slots (its own slot first) far from every
other slot, so the anchors' positives are disjoint: no slot is written twice in one step, and the
library's rule for a repeated write (the mean of the new features) never meets the sequential
loop's (one write after another). At full size, where random positives of different anchors do
overlap, the banks are compared only on slots written once, and the output counts the others.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from reidlib.config import SCLConfig, SearchConfig, load_config
from reidlib.methods.memory import MemoryBank, build_banks
from reidlib.methods.scl import SCL
from reidlib.model import Features

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


def wait(device: torch.device) -> None:
    """Let the work queued on ``device`` finish before a clock is read (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def to_device(inp: StepInputs, device: torch.device | str) -> StepInputs:
    return StepInputs(*(t.to(device) for t in inp))


# ---------------------------------------------------------------------------------------------
# Inputs


def random_inputs(
    num_slots: int, dim: int, parts: int, batch: int, cameras: int, seed: int = 0, device: torch.device | str = "cpu"
) -> StepInputs:
    """Random unit features for the batch and the three banks, random cameras, distinct own slots
    (drawn on the CPU, so that every device gets the same numbers, then moved to ``device``)."""
    gen = torch.Generator().manual_seed(seed)
    randn = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    inp = StepInputs(
        g=unit(randn(batch, dim)),
        p=unit(randn(batch, parts, dim // parts)),
        idx=torch.randperm(num_slots, generator=gen)[:batch],
        bank_cams=torch.randint(0, cameras, (num_slots,), generator=gen),
        G=unit(randn(num_slots, dim)),
        L=unit(randn(num_slots, parts, dim // parts)),
        X=unit(randn(num_slots, dim)),
    )
    return to_device(inp, device)


def clustered_inputs(
    num_slots: int = 300,
    dim: int = 64,
    parts: int = 8,
    batch: int = 8,
    k: int = 7,
    cameras: int = 3,
    spread: float = 0.2,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
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
    """The library's three banks holding copies of the input banks (copied, not re-normalised),
    on the input's device."""
    num_slots, dim = inp.G.shape
    banks = tuple(b.to(inp.G.device) for b in build_banks(num_slots, dim, inp.L.shape[1], momentum, dtype=inp.G.dtype))
    for bank, start in zip(banks, (inp.G, inp.L, inp.X)):
        bank.features.copy_(start)
    return banks


# ---------------------------------------------------------------------------------------------
# The vectorised step: the library's SCL method, its hooks called as the training loop calls them


def library_step(inp: StepInputs, s: SCLConfig) -> tuple[StepOutput, dict[str, float]]:
    """One SCL step after the backbone, through the library's own hooks (reidlib.methods.scl.learner.SCL), in the
    order the training loop calls them; returns its results and stage times."""
    device = inp.G.device
    banks = library_banks(inp, s.bank_momentum)  # untimed copies
    pids = torch.arange(len(inp.G), device=device)  # the diagnostics' identities; not timed, not read by the step
    method = SCL(s, EXACT, *banks, pids, inp.bank_cams, epochs=s.warmup_epochs + 1)
    first_selecting = s.warmup_epochs
    method.start_epoch(first_selecting, torch.Generator(device), features=None, resumed=False)
    out = Features(inp.g.clone().requires_grad_(), inp.p.clone().requires_grad_())  # the model's output

    wait(device)
    t0 = time.perf_counter()
    with torch.no_grad():
        sel = method.select(out, inp.idx)  # pos (B, 1+K), neg (B, M)
    wait(device)
    t1 = time.perf_counter()
    loss = method.loss(out, sel).total
    loss.backward()
    wait(device)
    t2 = time.perf_counter()
    method.update(out, inp.idx, sel, gather=lambda x: x)  # one process
    wait(device)
    t3 = time.perf_counter()

    out = StepOutput(
        sel.pos_idx,
        sel.neg_idx,
        loss.item(),
        out.global_.grad,
        out.parts.grad,
        *(bank.features for bank in banks),
    )
    return out, {"selection": t1 - t0, "loss": t2 - t1, "memory": t3 - t2}


# ---------------------------------------------------------------------------------------------
# The per-sample reference: the same computation, one anchor (and one slot) at a time


def sq_dist_to_all(q: Tensor, bank: Tensor) -> Tensor:
    """The public code's ``cal_distance`` for one query: ``|q|^2 + |y_j|^2 - 2 q.y_j`` over the
    bank's rows, the bank's norms recomputed at each call as there. (D,), (N, D) -> (N,)"""
    return q.pow(2).sum() + bank.pow(2).sum(1) - 2.0 * bank @ q


def per_sample_step(inp: StepInputs, s: SCLConfig, anchors: int | None = None) -> tuple[StepOutput, dict[str, float]]:
    """The step as a loop over anchors; ``anchors`` < B runs only the first ones (for timing)."""
    G, L, X = inp.G.clone(), inp.L.clone(), inp.X.clone()  # untimed copies
    device = G.device
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
    wait(device)
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
    wait(device)
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
    wait(device)
    t3 = time.perf_counter()

    out = StepOutput(
        torch.tensor(pos_rows),
        torch.tensor(neg_rows),
        loss.item(),
        g.grad,
        p.grad,
        G,
        L,
        X,
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


def on_cpu(out: StepOutput) -> StepOutput:
    return StepOutput(*(x.cpu() if isinstance(x, Tensor) else x for x in out))


def compare(lib: StepOutput, ref: StepOutput) -> dict[str, float | int | bool]:
    """How far the two sides' results are apart (banks compared on slots written at most once),
    wherever each side ran."""
    lib, ref = on_cpu(lib), on_cpu(ref)
    num_slots = lib.X.shape[0]
    counts = torch.bincount(lib.pos_idx.flatten(), minlength=num_slots)
    repeated = counts > 1  # mixture slots the library averages and the loop writes in turn
    return {
        "same_selection": torch.equal(lib.pos_idx, ref.pos_idx) and torch.equal(lib.neg_idx, ref.neg_idx),
        "anchors_same_positives": int((lib.pos_idx == ref.pos_idx).all(1).sum()),
        "anchors_same_negative_set": int((lib.neg_idx.sort(1).values == ref.neg_idx.sort(1).values).all(1).sum()),
        "loss_diff": abs(lib.loss - ref.loss),
        "grad_diff": max((lib.g_grad - ref.g_grad).abs().max().item(), (lib.p_grad - ref.p_grad).abs().max().item()),
        "G_diff": (lib.G - ref.G).abs().max().item(),
        "L_diff": (lib.L - ref.L).abs().max().item(),
        "X_diff_not_repeated": (lib.X - ref.X)[~repeated].abs().max().item(),
        "X_slots_written_repeatedly": int(repeated.sum()),
    }


def equality_check(s: SCLConfig, device: torch.device | str = "cpu") -> dict[str, float | int | bool]:
    """Both sides on the clustered float64 input (no repeated writes, see the module docstring):
    the library's step on ``device``, the per-sample loop on the CPU."""
    inp = clustered_inputs(k=s.k)
    small = replace(s, m=50)  # 300 slots: 50 negatives
    lib, _ = library_step(to_device(inp, device), small)
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
