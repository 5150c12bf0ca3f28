"""Where an epoch's time goes on a CPU: decoding, augmenting, forward, backward, selection.

    .venv/bin/python -m benchmarks.bench_epoch --data ../shared/data/cuhk01 --config configs/real-cpu.yaml
        [--batches 8] [--threads 2] [--rules knn cycle ca_jaccard] [--project 7000]

Each stage is timed on the same batches of the dataset's training split, with the config's input
size, backbone and batch size, and scaled to one epoch (N / B steps):

- **load (files)**: the DataLoader reading JPEGs: decode, resize, augment (``cache_images: false``);
- **load (cache)**: the same batches from decoded, resized uint8 crops (``cache_images: true``),
  augmenting the tensor; the ratio of the two is printed;
- **forward**, **backward + step**: the backbone and heads on those batches, train mode, Adam;
- **selection, per rule**: one miner call per step on banks filled by the model (untrained),
  and the rule's per-epoch set-up (rankings, Jaccard) once;
- **fill banks** and **evaluate**: one pass of the model over the training split and the test split
  (from the cache).

The last lines project a run of ``--project`` training images with the config's epochs and
``eval_every``, as the issue's CPU budget (30 minutes for about 7,000 images) asks. Figures vary
with the machine's other load: the load average is printed at the start and the end.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

import torch

from reidlib.config import load_config
from reidlib.data import ReidDataset, build_transforms, load_images, read_dataset
from reidlib.evaluation.features import extract_features
from reidlib.methods.memory import build_banks
from reidlib.methods.scl import SCL
from reidlib.model import Features, make_model, memory_format


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--config", default="configs/real-cpu.yaml")
    ap.add_argument("--batches", type=int, default=8, help="batches timed per stage")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rules", nargs="+", default=["knn", "cycle", "reciprocal", "jaccard", "ca_jaccard"])
    ap.add_argument("--project", type=int, default=7000, help="training images of the projected run")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average at start: {os.getloadavg()[0]:.2f}; threads {args.threads}")
    cfg = load_config(args.config, {"data_dir": args.data})
    d, t = cfg.data, cfg.train
    data = read_dataset(args.data)
    n, b = len(data.train), t.batch_size
    steps = n // b
    print(
        f"{args.data}: {n} training images, batch {b}, {steps} steps an epoch, input {d.height}x{d.width}, "
        f"{cfg.model.arch}"
    )
    batches = [list(range(i * b, (i + 1) * b)) for i in range(min(args.batches, steps))]

    def load(dataset) -> list[torch.Tensor]:
        return [torch.stack([dataset[i]["img"] for i in batch]) for batch in batches]

    files = ReidDataset(data.train, build_transforms(d, train=True))
    t_files = timed(lambda: load(files))
    start = time.perf_counter()
    images = load_images(data.train + data.query + data.gallery, d.height, d.width)
    cache_time = time.perf_counter() - start
    cached = ReidDataset(data.train, build_transforms(d, train=True, from_cache=True), images)
    imgs: list[torch.Tensor] = []
    t_cache = timed(lambda: imgs.extend(load(cached)))

    model = make_model(cfg, torch.device("cpu"))
    imgs = [x.contiguous(memory_format=memory_format(cfg)) for x in imgs]  # as the training step feeds them
    opt = torch.optim.Adam(model.parameters(), lr=t.lr)
    model.train()
    t_fwd = t_bwd = 0.0
    model(imgs[0])  # warm-up
    for x in imgs:
        start = time.perf_counter()
        f = model(x)
        loss = f.global_.sum() + f.parts.sum()
        t_fwd += time.perf_counter() - start
        start = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        opt.step()
        t_bwd += time.perf_counter() - start

    start = time.perf_counter()
    feats = extract_features(model, data.train, cfg, torch.device("cpu"), desc="fill", progress=False, images=images)
    t_fill = time.perf_counter() - start
    t_eval = timed(
        lambda: [
            extract_features(model, s, cfg, torch.device("cpu"), desc="eval", progress=False, images=images)
            for s in (data.query, data.gallery)
        ]
    )
    g_bank, p_bank, m_bank = build_banks(n, cfg.model.feat_dim, cfg.model.num_parts, cfg.scl.bank_momentum)
    g_bank.fill(torch.from_numpy(feats["global"]))
    p_bank.fill(torch.from_numpy(feats["parts"]))
    cams = torch.tensor([r.camid for r in data.train])
    per_batch = lambda seconds: seconds / len(batches)  # noqa: E731
    rows = [
        ("load (files: decode, resize, augment)", per_batch(t_files) * steps),
        ("load (cache: augment the uint8 crop)", per_batch(t_cache) * steps),
        ("forward", per_batch(t_fwd) * steps),
        ("backward + optimiser step", per_batch(t_bwd) * steps),
    ]
    pids = torch.tensor([r.pid for r in data.train])
    for rule in args.rules:
        method = SCL(
            replace(cfg.scl, positive_rule=rule, warmup_epochs=0),
            cfg.search,
            g_bank,
            p_bank,
            m_bank,
            pids,
            cams,
            epochs=t.epochs,
        )
        setup = time.perf_counter()
        method.start_epoch(1, torch.Generator().manual_seed(0), features=None, resumed=False)  # the epoch's miner
        setup = time.perf_counter() - setup
        gen = torch.Generator().manual_seed(1)
        idx = [torch.randperm(n, generator=gen)[:b] for _ in batches]
        g, p = g_bank.features, p_bank.features
        spent = timed(lambda: [method.select(Features(g[i], p[i]), i) for i in idx])
        rows.append((f"selection: {rule} (per step) + set-up {setup:.2f} s", per_batch(spent) * steps + setup))
    print(f"\n{'stage':<52} {'s / epoch':>10}")
    for name, seconds in rows:
        print(f"{name:<52} {seconds:>10.1f}")
    print(
        f"\nfiles / cache loading time: {rows[0][1] / max(rows[1][1], 1e-9):.1f}x; "
        f"decoding the {len(images)} crops once: {cache_time:.1f} s"
    )
    print(
        f"fill banks: {t_fill:.1f} s; one evaluation ({len(data.query)} + {len(data.gallery)} images): {t_eval:.1f} s"
    )
    scale = args.project / n
    epoch = (rows[1][1] + rows[2][1] + rows[3][1]) * scale  # cache, forward, backward
    selection = {name: seconds * scale for name, seconds in rows[4:]}
    evals = 1 + (t.epochs // cfg.eval.eval_every if cfg.eval.eval_every else 0)
    print(
        f"\nprojection to {args.project} training images, {t.epochs} epochs, {evals} evaluation(s) of this test split:"
    )
    for name, sel in selection.items():
        total = cache_time * scale + t_fill * scale + t.epochs * (epoch + sel) + evals * t_eval
        print(f"  {name.split(' (')[0]:<32} {total / 60:5.1f} min  (epoch {(epoch + sel) / 60:.2f} min)")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
