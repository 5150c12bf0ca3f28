"""How closely the large-N stripe check follows the dense one, measured inside a real training run.

    .venv/bin/python -m benchmarks.check_pool --data ../shared/data/cuhk01 --run-dir runs/check-pool \
        [--epochs 3] [--config configs/real-cpu.yaml] [--set KEY=VALUE ...]

Shape letters: B anchors, N slots, P stripes, K candidates, k the check's nearest, R searched slots.

On a bank searched through faiss, the table rule's part agreement (``scl.part_agreement``) ranks
each anchor's stripes within a pool of slots instead of the whole part bank
(:func:`reidlib.methods.scl.checks.pooled_votes`). How good the pool is shows only on anchors as
training makes them (augmented crops through the current weights, banks mid-epoch), so this runs
``python -m reidlib train`` (by default with the search settings of the recipe's arm "as at
1,000,000 slots": every camera through IVF, the graph 6 cells probed, the negatives 10 of 32) and,
at each step, beside the check training uses, computes the dense (B, P, N) check and the pooled
one over other pools. Printed per epoch: the share of candidate positives each pool keeps or
drops as the dense check does, and the share it keeps (the dense check's own share first):

- ``lists xD + searched``: every stripe's per-epoch list, D times the check's k deep, and the
  slots the step's search re-ranked (``LIST_DEPTH`` is the library's D);
- ``exact search's pool``: the lists and the band + M + K nearest by an exact search, what the
  step pools when its search is exact.

Training is unchanged by the measurement (the extra pools are computed, compared and dropped);
the library's lists are the first ``LIST_DEPTH * k`` of each slot's deepest list here. Small sets
only: the dense check is a (B, P, N) tensor a step.
"""

from __future__ import annotations

import argparse
import collections
import sys
from contextlib import ExitStack
from unittest import mock

import torch

import reidlib.methods.scl.checks as checks
import reidlib.methods.scl.miners as miners
from reidlib import cli

AT_SCALE = "backend=faiss graph_index=ivf graph_exact_below=0 graph_nprobe=6 nlist=32 nprobe=10 rerank=1".split()
DEPTHS = (1, 2, 3, 4)


class Enough(Exception):
    """Raised at the epoch after the last one measured: the training run ends there."""


class PoolCheck:
    """The patches: the epoch's stripe lists built deepest, and each pooled vote compared."""

    def __init__(self, epochs: int) -> None:
        self.lists = self.g = self.need = None
        self.epoch, self.epochs = 0, epochs
        self.counts: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
        self.stripe_lists, self.pooled_votes = miners.stripe_lists, checks.pooled_votes
        self.table_call = miners.TableMiner.__call__

    def patches(self) -> list:
        check = self

        def table_call(miner, g, p, cams, idx):
            check.g = g  # the dense whole distance, for the exact search's pool
            check.need = miner.checks.part_agreement  # the stripes a kept candidate needs
            return check.table_call(miner, g, p, cams, idx)

        return [
            mock.patch.object(miners, "stripe_lists", self.build_lists),
            mock.patch.object(checks, "pooled_votes", self.votes),
            mock.patch.object(miners.TableMiner, "__call__", table_call),
        ]

    def build_lists(self, distance, search, depth: int):
        if self.epoch >= self.epochs:  # the epochs asked for are measured: end the run here
            raise Enough
        k = depth // checks.LIST_DEPTH
        self.lists, self.epoch = self.stripe_lists(distance, search, max(DEPTHS) * k), self.epoch + 1
        return self.lists[:, :, :depth].contiguous()

    def votes(self, distance, p, cams, self_idx, cand, lists, pool, k, pool_dist=None):
        used = self.pooled_votes(distance, p, cams, self_idx, cand, lists, pool, k, pool_dist)
        need = self.need
        real = cand != self_idx[:, None]  # (B, K) entries that are candidates, not the slot itself
        dense = checks.part_votes(distance.stripe_distances(p, cams), self_idx, cand, k) >= need
        whole = distance.to_slots(self.g, p, cams).scatter_(1, self_idx[:, None], float("inf"))
        exact_pool = torch.topk(whole, pool.shape[1], dim=1, largest=False).indices
        deep = self.lists[self_idx]
        pools = {f"lists x{d} + searched": (deep[:, :, : d * k], pool, pool_dist) for d in DEPTHS}
        pools["exact search's pool"] = (lists, exact_pool, None)
        counts = self.counts[self.epoch]
        counts["candidates"] += int(real.sum())
        counts["dense kept"] += int((dense & real).sum())
        for name, (their_lists, their_pool, their_dist) in pools.items():
            kept = self.pooled_votes(distance, p, cams, self_idx, cand, their_lists, their_pool, k, their_dist) >= need
            counts[f"{name} alike"] += int(((kept == dense) & real).sum())
            counts[f"{name} kept"] += int((kept & real).sum())
        return used

    def report(self) -> None:
        names = [f"lists x{d} + searched" for d in DEPTHS] + ["exact search's pool"]
        print("\nper epoch with positives: share of candidate positives kept / dropped as the dense check (kept)")
        print(f"{'epoch':>5} {'candidates':>10} {'dense kept':>10}  " + "  ".join(f"{n:>24}" for n in names))
        for epoch, c in sorted(self.counts.items()):
            n = max(c["candidates"], 1)
            cells = "  ".join(f"{c[f'{name} alike'] / n:>15.3f} ({c[f'{name} kept'] / n:.3f})" for name in names)
            print(f"{epoch:>5} {c['candidates']:>10} {c['dense kept'] / n:>10.3f}  {cells}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a small training set (Market-1501 layout)")
    parser.add_argument("--run-dir", required=True, help="a new run directory")
    parser.add_argument("--config", default="configs/real-cpu.yaml")
    parser.add_argument("--epochs", type=int, default=3, help="epochs with positives measured (schedule: the config)")
    parser.add_argument("--set", nargs="*", default=[], help="more KEY=VALUE overrides (after the at-scale ones)")
    args = parser.parse_args(argv)
    check = PoolCheck(args.epochs)
    overrides = ["threads=1", *AT_SCALE, *args.set]
    train = ["train", "--data", args.data, "--run-dir", args.run_dir, "--config", args.config, "--set", *overrides]
    with ExitStack() as stack:
        for patch in check.patches():
            stack.enter_context(patch)
        try:
            cli.main(train)
        except Enough:
            pass
    check.report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
