"""Run dirs written before reidlib moved into subpackages still load.

``tests/fixtures/run-before-the-move`` is a tiny run trained by commit 87548e6 (the flat package):
its config, metrics and, from its checkpoint ``last.pt``, the pickle stream (``data.pkl``; the
tensors' storages left out to keep the fixture small). A checkpoint unpickles only what its stream
names, so a stream that names torch and the standard library alone loads whatever reidlib's modules
are called; a fresh checkpoint is held to the same rule, so that no later move breaks it either.
"""

import pickletools
import zipfile

from reidlib.config import Config
from reidlib.engine.trainer import train
from reidlib.evaluation.evaluator import format_metrics
from reidlib.utils import runs
from tests.helpers import ROOT, tiny_cfg

OLD_RUN = ROOT / "tests" / "fixtures" / "run-before-the-move"
ALLOWED = {"collections", "torch", "torch._utils", "builtins", "numpy", "numpy.core.multiarray", "_codecs"}


def pickled_modules(stream: bytes) -> set[str]:
    """Every module a pickle stream imports from (GLOBAL and STACK_GLOBAL opcodes)."""
    ops = list(pickletools.genops(stream))
    modules = set()
    for i, (op, arg, _) in enumerate(ops):
        if op.name == "GLOBAL":
            modules.add(arg.split(" ")[0])
        elif op.name == "STACK_GLOBAL":  # module and name were pushed as the two strings before it
            modules.add(ops[i - 2][1])
    return modules


def test_old_run_dir_reads():
    cfg = runs.read_run_config(OLD_RUN)
    assert isinstance(cfg, Config) and cfg.model.arch == "resnet_mini" and cfg.train.epochs == 2
    metrics = runs.read_metrics(OLD_RUN)
    assert metrics["epochs"] == 2 and "combined" in format_metrics(metrics, "old run")
    assert [row["epoch"] for row in runs.read_jsonl(OLD_RUN / runs.METRICS_LOG)] == [1, 2]


def test_old_checkpoint_names_no_reidlib_module():
    modules = pickled_modules((OLD_RUN / "last.pt.data.pkl").read_bytes())
    assert "torch" in modules and modules <= ALLOWED, modules


def test_new_checkpoints_name_no_reidlib_module(tiny_synthetic, tmp_path):
    train(tiny_cfg(tiny_synthetic, epochs=2, checkpoint_every=3), tmp_path / "run")
    with zipfile.ZipFile(tmp_path / "run" / runs.CHECKPOINT) as archive:
        stream = archive.read(next(name for name in archive.namelist() if name.endswith("data.pkl")))
    modules = pickled_modules(stream)
    assert modules <= ALLOWED and not any(m.startswith("reidlib") for m in modules), modules
