"""A GPU check, ready for the day a GPU is lent: every path of reidlib written for CUDA, run on one,
in one table, within 8 minutes.

    .venv/bin/python -m benchmarks.gpu_check [--device cuda] [--quick] [--only NAME ...] [--budget-scale 1]
    make gpu-check

The project was built on a machine without a GPU: its CUDA paths (the device code of selection,
losses, banks and evaluation, the training loop, the faiss GPU index, NCCL) were written and
tested with CPU stand-ins. Each check below is a function that returns its figures by name or
raises; :func:`run_check` gives it its time budget (the budgets add up to 7.5 minutes), and the
script prints one table (check, figure, value, unit, seconds, status) and exits 1 when a figure is
missing or a check failed. An optional figure that cannot be measured (faiss not installed) is
marked ``absent`` and does not count. Without a CUDA device it says so, lists the checks, measures
nothing and exits 0: the mode CI runs (``tests/test_gpu_check.py``).

It imports only what a bare CUDA PyTorch image holds (torch, torchvision, numpy, scipy,
scikit-learn, Pillow, PyYAML, tqdm); the device tests need pytest too, and faiss is optional. It
reads no network: the paper config's ImageNet start becomes random weights, and the images are
the synthetic set, drawn into a temporary folder.

The checks (``--quick`` sizes in brackets):

- ``device-tests``: ``pytest --device cuda -m device`` over :data:`DEVICE_TESTS`, the tests that
  take the ``device`` fixture: passed, failed, skipped.
- ``paper-steps``: ``configs/paper.yaml`` (ResNet-50, 256x128, batch 8, k 7, m 500) on the
  synthetic demo set [tiny] from random weights, one warm-up epoch and one selecting epoch (500
  steps), through ``python -m reidlib train``: images a second in the selecting epoch, steps, mAP.
- ``step-overhead``: ``benchmarks/bench_step.py``'s backbone pass (ResNet-50, B 64) and the
  library's SCL step (selection, loss, bank updates) at Market-1501 and MSMT17 size [Market only].
- ``selection-1m`` [``selection-100k``]: exact selection (``TorchSearcher``) over 1,000,000 float16
  slots of ``benchmarks/bench_selection.py``'s ReID-like data (D 2048, P 8): ms a batch of 64
  anchors, top 507.
- ``faiss-gpu``: the faiss GPU flat index over 100,000 [20,000] such slots: ms a batch and recall
  of the exact top 507 (absent without the faiss GPU build).
- ``graph-100k``, ``graph-1m`` [``graph-10k``, ``graph-100k``]: the per-epoch positive table of
  ``configs/real-cpu.yaml`` (camera-aware Jaccard on camera-debiased banks) over ReID-like banks of
  512-d global features and 4 stripes: seconds, positives per slot and their precision.
- ``torchrun``: ``torchrun --nproc_per_node 1`` trains a tiny run with NCCL (gloo on a CPU); the
  run must record its process group's backend: seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import NamedTuple

import torch

from benchmarks import bench_selection
from benchmarks.bench_selection import LAMBDA_C, LAMBDA_G, ReidLikeData, recall, timed
from benchmarks.bench_step import BACKBONES, DATASETS, backbone_seconds, step_share, timed_runs
from benchmarks.step_reference import library_step, paper_settings, random_inputs, wait
from reidlib.config import SearchConfig, load_config
from reidlib.data import read_dataset
from reidlib.data.batches import epoch_batches
from reidlib.methods.scl import tables
from reidlib.methods.scl.miners import lambda_c_at
from reidlib.neighbours.faiss_index import faiss_gpu_available
from reidlib.neighbours.searchers import FaissSearcher, TorchSearcher
from reidlib.neighbours.selection_distance import SelectionDistance
from reidlib.neighbours.slot_search import SlotSearch
from reidlib.utils.distributed import Context
from reidlib.utils.runs import read_run_config

ROOT = Path(__file__).resolve().parent.parent  # the checkout
# the test modules whose tests take the `device` fixture (tests/test_gpu_check.py keeps the list true)
DEVICE_TESTS = (
    "tests/evaluation/test_evaluation.py",
    "tests/evaluation/test_features.py",
    "tests/methods/scl/test_miners.py",
    "tests/methods/scl/test_step_reference.py",
    "tests/methods/test_losses.py",
    "tests/methods/test_memory.py",
    "tests/neighbours/test_graph.py",
    "tests/neighbours/test_searchers.py",
    "tests/test_distances.py",
    "tests/test_model.py",
)
NO_DOWNLOAD = "pretrained=null"  # paper.yaml starts from torchvision's ImageNet weights, a download
TINY_RUN = ["arch=resnet_mini", "feat_dim=64", "num_parts=4", "height=64", "width=32", "k=3", "m=20"]
STEP_BATCH, STEP_PARTS = 64, 8  # bench_step's B and P


class Absent(Exception):
    """An optional figure that cannot be measured here (faiss is not installed, say)."""


class Failed(Exception):
    """A check that ran and failed; ``figures`` holds what it measured all the same."""

    def __init__(self, message: str, figures: dict[str, float] | None = None) -> None:
        super().__init__(message)
        self.figures = figures or {}


class OutOfTime(BaseException):
    """A check's time is up (a BaseException, so that no ``except Exception`` on the way swallows it)."""


class Check(NamedTuple):
    name: str  # what --only takes
    figures: dict[str, str]  # figure -> unit, in the table's order
    budget: float  # seconds before the check is stopped
    run: Callable[[], dict[str, float]]  # -> figure -> value


class Row(NamedTuple):
    check: str
    figure: str
    value: float | None  # None: missing
    unit: str
    seconds: float  # the check's
    status: str  # ok | absent: why | failed: why | out of time after N s | not measured


# ---------------------------------------------------------------------------------------------
# The runner


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`OutOfTime` in this (the main) thread once ``seconds`` have passed."""

    def expire(signum, frame):
        raise OutOfTime

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_check(check: Check) -> list[Row]:
    """Run ``check`` within its budget: one row for each figure it declares, measured or not."""
    start = time.perf_counter()
    figures, status = {}, "ok"
    try:
        with time_limit(check.budget):
            figures = check.run()
    except Absent as err:
        status = f"absent: {err}"
    except Failed as err:
        figures, status = err.figures, f"failed: {err}"
    except OutOfTime:
        status = f"out of time after {check.budget:.0f} s"
    except Exception as err:  # a check that raises is a row of the table, not the end of the run
        status = f"failed: {type(err).__name__}: {(text_lines(str(err)) or [''])[0]}"
    seconds = time.perf_counter() - start
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the next check starts with the device's memory free
    gap = "not measured" if status == "ok" else status
    return [
        Row(check.name, figure, figures.get(figure), unit, seconds, status if figure in figures else gap)
        for figure, unit in check.figures.items()
    ]


def missing(rows: list[Row]) -> list[Row]:
    """The rows that fail the run: a failed check's, and every missing figure that is not absent."""
    return [r for r in rows if r.status.startswith("failed") or (r.value is None and not r.status.startswith("absent"))]


def format_value(value: float | None) -> str:
    if value is None:
        return "-"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3f}"


def format_table(rows: list[Row]) -> str:
    """The one table: check, figure, value, unit, seconds (on a check's first row), status."""
    lines = [("check", "figure", "value", "unit", "s", "status")]
    for i, r in enumerate(rows):
        first = i == 0 or rows[i - 1].check != r.check
        seconds = f"{r.seconds:.1f}" if first else ""
        lines.append((r.check if first else "", r.figure, format_value(r.value), r.unit, seconds, r.status))
    widths = [max(len(line[c]) for line in lines) for c in range(5)]
    align = (str.ljust, str.ljust, str.rjust, str.ljust, str.rjust)
    return "\n".join(
        "  ".join(pad(cell, width) for cell, width, pad in zip(line, widths, align)) + "  " + line[5] for line in lines
    )


# ---------------------------------------------------------------------------------------------
# What the checks share


def text_lines(text: str) -> list[str]:
    """The non-blank lines of a program's output (a progress bar's ``\\r`` ends a line too)."""
    return [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]


def last_line(text: str) -> str:
    return (text_lines(text) or ["(no output)"])[-1]


def run_command(argv: list[str]) -> subprocess.CompletedProcess:
    """``argv`` from the checkout, in a process group of its own: whatever stops the wait (a
    check's time limit) kills the group, torchrun's workers too."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as proc:
        try:
            out, err = proc.communicate()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def succeeded(proc: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    """``proc``, or :class:`Failed` naming ``what`` and its last line on stderr."""
    if proc.returncode:
        raise Failed(f"{what} exited {proc.returncode}: {last_line(proc.stderr)}")
    return proc


def synthetic(out: Path, preset: str) -> Path:
    """The synthetic set ``preset``, drawn into ``out`` by the command line."""
    argv = [sys.executable, "-m", "reidlib", "synth", str(out), "--preset", preset, "--seed", "0"]
    succeeded(run_command(argv), "reidlib synth")
    return out


def pytest_counts(output: str) -> dict[str, int]:
    """pytest's closing line, ``1 failed, 119 passed, 3 skipped in 9.5s`` -> {"failed": 1, ...}."""
    lines = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed|errors?)\b", line)]
    found = re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)\b", lines[-1] if lines else "")
    return {("error" if word.startswith("error") else word): int(n) for n, word in found}


def slug(num_slots: int) -> str:
    """100000 -> 100k, 1000000 -> 1m."""
    return f"{num_slots // 1_000_000}m" if num_slots % 1_000_000 == 0 else f"{num_slots // 1000}k"


def backend_of(device: torch.device) -> str:
    """The process group torchrun's processes join on ``device`` (reidlib.utils.distributed.setup)."""
    return "nccl" if device.type == "cuda" else "gloo"


def reid_like(device: torch.device, num_slots: int, dtype: torch.dtype = torch.float16, **dims):
    """bench_selection's ReID-like data (its defaults: latent 16, noise 0.5) and banks, built on ``device``."""
    data = ReidLikeData(num_slots, latent=16, noise=0.5, seed=0, device=device, **dims)
    return (data, *data.banks(dtype=dtype))


def anchor_batches(data: ReidLikeData, batches: int) -> list[tuple]:
    """``batches`` + 1 batches of 64 anchors (the first a warm-up) asking for the top 507, as
    bench_selection draws them."""
    gen = torch.Generator().manual_seed(1)
    out = []
    for _ in range(batches + 1):
        self_idx = torch.randperm(len(data.camids), generator=gen)[: bench_selection.B].to(data.device)
        out.append((*data.anchors(self_idx), self_idx, bench_selection.K + bench_selection.M))
    return out


def timed_search(searcher, batches: list[tuple], device: torch.device) -> tuple[float, list[torch.Tensor]]:
    """The median seconds a batch takes (after the warm-up batch), and the orders found."""

    def search(*batch):
        order = searcher.neighbours(*batch)
        wait(device)
        return order

    return timed(search, batches)


def positive_table(distance: SelectionDistance, scl_cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """The recipe's per-epoch positive table over the epoch's selection distance, the slots ranked
    exactly on the device: (N, K) slots and validity."""
    return tables.positive_table(distance, SlotSearch(distance, "exact"), scl_cfg)


# ---------------------------------------------------------------------------------------------
# The checks: each returns its figures by name, or raises


def device_tests(device: torch.device) -> dict[str, float]:
    """The tests that take the ``device`` fixture, on ``device``, in a pytest of their own."""
    if importlib.util.find_spec("pytest") is None:
        raise Failed("pytest is not installed (pip install pytest)")
    argv = [sys.executable, "-m", "pytest", "--device", str(device), "-m", "device", "-q", "-p", "no:cacheprovider"]
    proc = run_command(argv + list(DEVICE_TESTS))
    counts = pytest_counts(proc.stdout)
    figures = {
        "passed": counts.get("passed", 0),
        "failed": counts.get("failed", 0) + counts.get("error", 0),
        "skipped": counts.get("skipped", 0),
    }
    if proc.returncode or figures["failed"] or not figures["passed"]:
        raise Failed(f"pytest exited {proc.returncode}: {last_line(proc.stdout + proc.stderr)}", figures)
    return figures


def paper_steps(device: torch.device, preset: str) -> dict[str, float]:
    """configs/paper.yaml for a warm-up and a selecting epoch on the synthetic ``preset``."""
    with tempfile.TemporaryDirectory() as tmp:
        data, run = synthetic(Path(tmp) / "synthetic", preset), Path(tmp) / "run"
        argv = [sys.executable, "-m", "reidlib", "train", "--data", str(data), "--run-dir", str(run)]
        sets = [f"device={device}", "epochs=2", "warmup_epochs=1", "eval_every=0", NO_DOWNLOAD]
        succeeded(run_command(argv + ["--config", "configs/paper.yaml", "--set", *sets]), "reidlib train")
        t = read_run_config(run).train
        epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        mAP = json.loads((run / "metrics.json").read_text())["mAP"]
        num_train = len(read_dataset(data).train)
    steps = [len(epoch_batches(num_train, t.batch_size, t.seed, epoch, Context())) for epoch in range(t.epochs)]
    return {
        "images a second, selecting epoch": steps[-1] * t.batch_size / epochs[-1]["seconds"],
        "steps": sum(steps),
        "mAP after them": 100 * mAP,
    }


def step_overhead(device: torch.device, sizes: tuple[int, ...]) -> dict[str, float]:
    """bench_step's backbone pass and the library's SCL step (paper settings, B 64) on ``device``."""
    s = paper_settings()
    backbone = backbone_seconds("resnet50", STEP_BATCH, STEP_PARTS, repeats=3, device=device)
    figures = {"ResNet-50 forward + backward, B 64": 1e3 * backbone}
    for n in sizes:
        name, cameras = DATASETS[n]
        inp = random_inputs(n, BACKBONES["resnet50"][2], STEP_PARTS, STEP_BATCH, cameras, device=device)
        library_step(inp, s)  # warm-up
        _, times = timed_runs(lambda: library_step(inp, s), repeats=7)
        figures[f"SCL step, {name} size (N {n:,})"] = 1e3 * times["total"]
        figures[f"its share of the step, {name} size"] = 100 * step_share(times["total"], backbone)
    return figures


def exact_selection(device: torch.device, num_slots: int) -> dict[str, float]:
    """The exact searcher over float16 banks on ``device``, as training selects (bench_selection's settings)."""
    data, glob, parts = reid_like(device, num_slots)  # float16
    searcher = TorchSearcher(SelectionDistance(glob, parts, data.camids, lambda_g=LAMBDA_G, lambda_c=LAMBDA_C))
    seconds, _ = timed_search(searcher, anchor_batches(data, batches=5), device)
    return {f"exact, {num_slots:,} float16 slots": 1e3 * seconds}


def faiss_gpu(device: torch.device, num_slots: int) -> dict[str, float]:
    """The faiss GPU flat index (optional) against the exact searcher on the same batches."""
    if importlib.util.find_spec("faiss") is None:
        raise Absent("faiss is not installed")
    if not faiss_gpu_available(device):
        raise Absent(f"no faiss GPU build for {device} (pip uninstall faiss-cpu; pip install -e '.[gpu]')")
    data, glob, parts = reid_like(device, num_slots)
    distance = SelectionDistance(glob, parts, data.camids, lambda_g=LAMBDA_G, lambda_c=LAMBDA_C)
    batches = anchor_batches(data, batches=5)
    _, exact = timed_search(TorchSearcher(distance), batches, device)
    seconds, found = timed_search(FaissSearcher(distance, SearchConfig(faiss_index="flat")), batches, device)
    return {f"GPU flat, {num_slots:,} slots": 1e3 * seconds, "recall of the exact top 507": recall(found, exact)}


def recipe_graph(device: torch.device, num_slots: int) -> dict[str, float]:
    """configs/real-cpu.yaml's per-epoch positive table over ReID-like banks of its dims."""
    cfg = load_config(ROOT / "configs" / "real-cpu.yaml")
    s, m = cfg.scl, cfg.model
    data, glob, parts = reid_like(device, num_slots, getattr(torch, s.bank_dtype), dim=m.feat_dim, parts=m.num_parts)
    wait(device)
    start = time.perf_counter()
    lambda_c = lambda_c_at(s, s.warmup_epochs, cfg.train.epochs)  # the first selecting epoch's
    distance = SelectionDistance(
        glob, parts, data.camids, lambda_g=s.lambda_g, lambda_c=lambda_c, debias=s.camera_debias
    )
    idx, valid = positive_table(distance, s)  # (N, K)
    wait(device)
    seconds = time.perf_counter() - start
    same_identity = data.pids[idx] == data.pids[:, None]
    return {
        f"{num_slots:,} slots": seconds,
        "positives a slot": valid.sum(1).float().mean().item(),
        "their precision": 100 * same_identity[valid].float().mean().item(),
    }


def one_process_torchrun(device: torch.device) -> dict[str, float]:
    """A tiny run under ``torchrun --nproc_per_node 1``: it must join a process group of ``device``'s backend."""
    backend = backend_of(device)
    with tempfile.TemporaryDirectory() as tmp:
        data, run = synthetic(Path(tmp) / "synthetic", "tiny"), Path(tmp) / "run"
        argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m", "reidlib"]
        argv += ["train", "--data", str(data), "--run-dir", str(run), "--set", f"device={device}", "epochs=2"]
        start = time.perf_counter()
        succeeded(run_command(argv + ["warmup_epochs=1", *TINY_RUN]), "torchrun")
        seconds = time.perf_counter() - start
        replicas = json.loads((run / "metrics.json").read_text()).get("replicas") or {}
    if replicas.get("backend") != backend:
        raise Failed(f"the run joined process group {replicas.get('backend')!r}, not {backend!r}")
    return {f"train + evaluate, {backend}": seconds}


def checks(device: torch.device, quick: bool = False, budget_scale: float = 1.0) -> list[Check]:
    """Every check with its figures, its budget in seconds (times ``budget_scale``) and its sizes."""
    selection, faiss_slots = (100_000, 20_000) if quick else (1_000_000, 100_000)
    graphs = (10_000, 100_000) if quick else (100_000, 1_000_000)
    sizes = (12_936,) if quick else (12_936, 32_621)  # Market-1501, MSMT17
    step = {"ResNet-50 forward + backward, B 64": "ms"}
    for n in sizes:
        name = DATASETS[n][0]
        step |= {f"SCL step, {name} size (N {n:,})": "ms", f"its share of the step, {name} size": "%"}
    tests = {"passed": "tests", "failed": "tests", "skipped": "tests"}
    paper = {"images a second, selecting epoch": "images/s", "steps": "steps", "mAP after them": "%"}
    faiss = {f"GPU flat, {faiss_slots:,} slots": "ms/batch", "recall of the exact top 507": ""}
    out = [
        Check("device-tests", tests, 60, partial(device_tests, device)),
        Check("paper-steps", paper, 90, partial(paper_steps, device, "tiny" if quick else "demo")),
        Check("step-overhead", step, 30, partial(step_overhead, device, sizes)),
        Check(
            f"selection-{slug(selection)}",
            {f"exact, {selection:,} float16 slots": "ms/batch"},
            40,
            partial(exact_selection, device, selection),
        ),
        Check("faiss-gpu", faiss, 20, partial(faiss_gpu, device, faiss_slots)),
    ]
    for n, budget in zip(graphs, (30, 140)):
        graph = {f"{n:,} slots": "s", "positives a slot": "", "their precision": "%"}
        out.append(Check(f"graph-{slug(n)}", graph, budget, partial(recipe_graph, device, n)))
    torchrun = {f"train + evaluate, {backend_of(device)}": "s"}
    out.append(Check("torchrun", torchrun, 40, partial(one_process_torchrun, device)))
    return [c._replace(budget=c.budget * budget_scale) for c in out]


def cuda_present(device: torch.device) -> bool:
    return torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()


def describe(device: torch.device) -> str:
    """The first line: when, with what, on which device."""
    where = str(device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        where += f" ({props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda})"
    faiss = "present" if importlib.util.find_spec("faiss") else "absent"
    return f"gpu_check {time.strftime('%Y-%m-%d %H:%M %Z')}: torch {torch.__version__} on {where}; faiss {faiss}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="the device to check (default cuda)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (the script's docstring lists them)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these checks")
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply every check's time budget")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    todo = checks(device, args.quick, args.budget_scale)
    unknown = sorted(set(args.only or ()) - {c.name for c in todo})
    if unknown:
        parser.error(f"--only: no check {', '.join(unknown)}; the checks: {', '.join(c.name for c in todo)}")
    todo = [c for c in todo if not args.only or c.name in args.only]
    names = ", ".join(c.name for c in todo)
    if device.type == "cuda" and not cuda_present(device):
        print(f"no CUDA device: nothing measured; the checks that would run: {names} (--device {device})")
        return 0
    total = math.fsum(c.budget for c in todo)
    print(describe(device))
    print(f"{len(todo)} check(s), at most {total:.0f} s ({total / 60:.1f} min): {names}", flush=True)
    rows = []
    for check in todo:
        rows += run_check(check)
        print(f"  {check.name}: {rows[-1].status}, {rows[-1].seconds:.1f} s", flush=True)
    print()
    print(format_table(rows))
    gaps = missing(rows)
    if gaps:
        print(f"\n{len(gaps)} of {len(rows)} figures missing or failed: exit 1")
        return 1
    print(f"\nall {len(rows)} figures measured (an absent one is optional)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
