"""Tiny deterministic runs whose results are pinned: a refactor of the trainer must not move them.

``tests/fixtures/golden_runs.json`` holds, for each run below, every row of ``metrics.jsonl`` (less the
wall-clock seconds), the final metrics and a sha256 of the final checkpoint's weights and banks, as
the trainer before the split into a loop and method objects (commit db5f623) produced them; the rows
gained the selection's gap figures on 2026-12-04 (``pos_cross_camera_recall``, ``true_kept``...:
keys added, every other value and digest unchanged). Write it again, only on purpose, with::

    .venv/bin/python -m tests.engine.test_golden_run --write

The comparison is bit for bit when torch's version and CPU kernel level (``get_cpu_capability``)
match the file's; on another CPU, floating-point sums may round differently, so the metrics are
then compared to 1e-4 and the digests are not compared (the test says which it did).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from reidlib.engine.trainer import train
from reidlib.utils import runs
from tests.helpers import ROOT, tiny_cfg

GOLDEN = ROOT / "tests" / "fixtures" / "golden_runs.json"

# Each run exercises a different path of the step: the paper's rule with two mixture writes, the
# real-image recipe (CA-Jaccard on debiased banks, one combined write, cached NHWC images), and the
# candidate checks with the mixture bank's other options.
RUNS = {
    "paper": {},
    "recipe": {
        "positive_rule": "ca_jaccard",
        "camera_debias": "mean",
        "mixture_writers": "combined",
        "part_scale": "unit_writes",
        "lr_schedule": "step",
        "cache_images": True,
        "channels_last": True,
        "ca_k_intra": 2,
        "ca_k_inter": 4,
        "jaccard_k2": 2,
    },
    "candidates": {
        "positive_rule": "cycle",
        "reciprocal_k": 4,
        "part_agreement": 2,
        "part_agreement_k": 6,
        "lambda_c_start": 0.0,
        "mixture_init": "features",
        "mixture_update": "own",
        "part_scale": "unit",
        "lr_schedule": "cosine",
    },
}


def environment() -> dict[str, str]:
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def digest(run_dir: Path) -> str:
    """sha256 of the final checkpoint's weights, BatchNorm statistics and the three banks."""
    state = runs.load_checkpoint(run_dir)
    h = hashlib.sha256()
    for key in ("model", "global_bank", "part_bank", "mixture_bank"):
        for name, tensor in sorted(state[key].items()):
            h.update(name.encode())
            h.update(tensor.contiguous().numpy().tobytes())
    return h.hexdigest()


def run(name: str, data_dir: Path, run_dir: Path) -> dict:
    cfg = tiny_cfg(data_dir, deterministic=True, **RUNS[name])
    metrics = train(cfg, run_dir)
    rows = [{k: v for k, v in row.items() if k != "seconds"} for row in runs.read_jsonl(run_dir / runs.METRICS_LOG)]
    return {"rows": rows, "metrics": metrics, "digest": digest(run_dir)}


def close(a, b, tol: float) -> bool:
    """Nested equality, floats within ``tol`` (relative or absolute)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=tol, abs_tol=tol)
    return a == b


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


@pytest.mark.parametrize("name", list(RUNS))
def test_tiny_run_matches_the_pinned_results(name, golden, tiny_synthetic, tmp_path):
    got = run(name, tiny_synthetic, tmp_path / name)
    want = golden["runs"][name]
    if golden["environment"] == environment():  # the same kernels: bit for bit
        assert got["rows"] == want["rows"]
        assert got["metrics"] == want["metrics"]
        assert got["digest"] == want["digest"]
    else:
        print(f"golden runs written under {golden['environment']}, here {environment()}: compared to 1e-4")
        assert close(got["rows"], want["rows"], 1e-4)
        assert close(got["metrics"], want["metrics"], 1e-4)


def write(path: Path = GOLDEN) -> None:
    import tempfile

    from reidlib.data.synthetic import generate

    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "tiny"
        generate(data_dir, preset="tiny", seed=0)
        results = {name: run(name, data_dir, Path(tmp) / name) for name in RUNS}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"environment": environment(), "runs": results}, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.engine.test_golden_run --write")
    write()
