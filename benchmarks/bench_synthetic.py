"""Synthetic generation speed on one core, against the 300 images/s goal.

.venv/bin/python -m benchmarks.bench_synthetic [--preset demo]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from reidlib.data.synthetic import generate  # noqa: E402

GOAL = 300.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        manifest = generate(Path(tmp) / "ds", preset=args.preset, seed=0)
        seconds = time.perf_counter() - start
    counts = manifest["counts"]
    n = counts["train_images"] + counts["query_images"] + counts["gallery_images"]
    rate = n / seconds
    print(
        f"preset {args.preset}: {n} images in {seconds:.2f} s = {rate:.0f} images/s "
        f"(goal {GOAL:.0f}/s: {rate / GOAL:.1f}x the goal), one process"
    )


if __name__ == "__main__":
    main()
