"""torchrun with two CPU processes (gloo): identical banks everywhere, one writer, exact resume."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reidlib.engine.trainer import train
from reidlib.errors import RunDirError
from reidlib.model import make_model
from reidlib.utils import distributed as dist
from reidlib.utils import runs
from tests.helpers import ROOT, TINY, tiny_cfg, wait_for_checkpoint

pytestmark = pytest.mark.slow


def torchrun(data_dir: Path, run_dir: Path, *sets: str, wait: bool = True):
    argv = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "reidlib",
        "train",
        "--data",
        str(data_dir),
        "--run-dir",
        str(run_dir),
        "--set",
    ]
    argv += [f"{k}={v}" for k, v in {**TINY, "deterministic": True}.items()] + list(sets)
    if not wait:
        return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def ddp_run(tiny_synthetic, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ddp") / "run"
    proc = torchrun(tiny_synthetic, run_dir, "epochs=6")
    return run_dir, proc


def test_two_processes_end_with_identical_banks(ddp_run):
    run_dir, proc = ddp_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    replicas = metrics["replicas"]
    assert replicas["world_size"] == 2 and replicas["identical"]
    assert len(replicas["digests"]) == 2 and replicas["digests"][0] == replicas["digests"][1]
    # the digest is of the real final state: rank 0's checkpoint reproduces it
    checkpoint = runs.load_checkpoint(run_dir)
    model = make_model(runs.read_run_config(run_dir), torch.device("cpu"), load_pretrained=False)
    model.load_state_dict(checkpoint["model"])
    banks = [checkpoint[k]["features"] for k in ("global_bank", "part_bank", "mixture_bank")]
    assert dist.replica_digest(*banks, *model.parameters()) == replicas["digests"][0]
    assert checkpoint["world_size"] == 2


def test_only_rank_0_writes_and_speaks(ddp_run):
    run_dir, proc = ddp_run
    sessions = json.loads((run_dir / "provenance.json").read_text())["sessions"]
    assert len(sessions) == 1 and sessions[0]["world_size"] == 2
    rows = runs.read_jsonl(run_dir / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == list(range(1, 7))
    # 59 images, 2 processes x batch 8: 3 steps each, 48 anchors an epoch, counted over both
    assert rows[-1]["neg_false_per_anchor"] is not None
    assert proc.stdout.count("protocol: market1501") == 1  # one table, from rank 0
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        ["config.yaml", "features.npz", "last.pt", "metrics.json", "metrics.jsonl", "previous.pt", "provenance.json"]
    )


def test_sigterm_and_resume_under_torchrun_is_exact(tiny_synthetic, ddp_run, tmp_path):
    proc = torchrun(tiny_synthetic, tmp_path / "run", "epochs=6", "checkpoint_every=1", wait=False)
    wait_for_checkpoint(proc, tmp_path / "run", past_epoch=2)
    proc.send_signal(signal.SIGTERM)  # torchrun passes it on to both processes
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "SIGTERM received: stopped" in err, err[-3000:]
    checkpoint = runs.load_checkpoint(tmp_path / "run")
    if checkpoint["step"]:  # stopped inside an epoch: both processes' progress was saved
        assert len(checkpoint["progress"]) == 2
    torchrun(tiny_synthetic, tmp_path / "run", "epochs=6", "checkpoint_every=1")
    resumed = json.loads((tmp_path / "run" / "metrics.json").read_text())
    whole = json.loads((ddp_run[0] / "metrics.json").read_text())
    assert resumed == whole


def test_a_mid_epoch_checkpoint_needs_the_same_number_of_processes(tiny_synthetic, ddp_run, tmp_path):
    import shutil

    shutil.copytree(ddp_run[0], tmp_path / "run")
    checkpoint = runs.load_checkpoint(tmp_path / "run")
    checkpoint.update(epoch=2, step=1, progress=[{}, {}])
    runs.write_checkpoint(tmp_path / "run", checkpoint)
    with pytest.raises(RunDirError, match=r"saved inside epoch 3 by 2 process\(es\); resume it with as many"):
        train(tiny_cfg(tiny_synthetic, epochs=6, deterministic=True), tmp_path / "run")
