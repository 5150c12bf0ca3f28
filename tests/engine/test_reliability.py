"""Fault injection: signals, kill -9, damaged checkpoints, NaN losses, bad inputs, reproducibility.

Each test breaks something on purpose and checks what docs/reliability.md's "What happens when..." table
promises: a clear one-line error (exit code 2, nothing written) for bad input, and for a stopped
or crashed run a resume that ends exactly where an uninterrupted run ends (deterministic=true).
"""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import reidlib.engine.trainer as engine
import reidlib.methods.scl.learner as scl_method
from reidlib.cli import main
from reidlib.engine.trainer import train
from reidlib.utils import runs
from reidlib.utils.interrupts import Interrupted
from tests.helpers import ROOT, TINY, assert_one_line_error, sigterm_at_call, tiny_cfg, wait_for_checkpoint


def same_checkpoints(a: Path, b: Path) -> bool:
    x, y = runs.load_checkpoint(a), runs.load_checkpoint(b)
    return all(
        all(torch.equal(u, v) for u, v in zip(x[key].values(), y[key].values()))
        for key in ("model", "global_bank", "part_bank", "mixture_bank")
    )


@pytest.fixture(scope="module")
def whole(tiny_synthetic, tmp_path_factory):
    """An uninterrupted deterministic run: the reference every resumed run must equal."""
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    return run_dir, train(tiny_cfg(tiny_synthetic, deterministic=True), run_dir)


def test_two_deterministic_runs_are_bitwise_identical(tiny_synthetic, whole, tmp_path):
    run_dir, metrics = whole
    again = train(tiny_cfg(tiny_synthetic, deterministic=True), tmp_path / "again")
    assert again == metrics
    assert _rows(run_dir) == _rows(tmp_path / "again")
    assert same_checkpoints(run_dir, tmp_path / "again")


def _rows(run_dir: Path) -> list[dict]:
    """The metrics log without the wall-clock seconds, the one field a rerun may change."""
    return [{k: v for k, v in row.items() if k != "seconds"} for row in runs.read_jsonl(run_dir / "metrics.jsonl")]


def test_provenance_is_recorded(whole):
    run_dir, _ = whole
    sessions = json.loads((run_dir / "provenance.json").read_text())["sessions"]
    assert len(sessions) == 1 and sessions[0]["resumed_from"] is None
    entry = sessions[0]
    assert entry["packages"]["torch"] == torch.__version__.split("+")[0]
    assert entry["packages"]["reidlib"] and entry["machine"]["cpu_count"]
    if (ROOT / ".git").exists():
        assert len(entry["git"]["commit"]) == 40
    data = entry["data"]
    assert data["counts"]["train"] == 59 and len(data["sha256"]) == 64
    assert data["manifest"]["preset"] == "tiny"  # the synthetic generator's manifest


@pytest.mark.slow
def test_sigterm_mid_epoch_saves_and_resume_is_exact(tiny_synthetic, whole, tmp_path, monkeypatch):
    real = scl_method.scl_total_loss
    monkeypatch.setattr(scl_method, "scl_total_loss", sigterm_at_call(real, 10))  # epoch 2, step 3 (7 steps an epoch)
    cfg = tiny_cfg(tiny_synthetic, deterministic=True)
    with pytest.raises(Interrupted, match=r"SIGTERM received: stopped at epoch 2, step 3 of 7") as info:
        train(cfg, tmp_path / "cut")
    assert info.value.exit_code == 143
    checkpoint = runs.load_checkpoint(tmp_path / "cut")
    assert (checkpoint["epoch"], checkpoint["step"]) == (1, 3) and checkpoint["progress"][0]["rng"]
    monkeypatch.setattr(scl_method, "scl_total_loss", real)
    assert train(cfg, tmp_path / "cut") == whole[1]
    assert same_checkpoints(whole[0], tmp_path / "cut")
    sessions = json.loads((tmp_path / "cut" / "provenance.json").read_text())["sessions"]
    assert sessions[1]["resumed_from"] == {"epoch": 1, "step": 3, "checkpoint": "last.pt"}


def _start_cli(data_dir: Path, run_dir: Path, *sets: str) -> subprocess.Popen:
    overrides = [f"{k}={v}" for k, v in {**TINY, "epochs": 12, "deterministic": True}.items()]
    argv = [
        sys.executable,
        "-m",
        "reidlib",
        "train",
        "--data",
        str(data_dir),
        "--run-dir",
        str(run_dir),
        "--set",
        *overrides,
        *sets,
    ]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def whole_12(tiny_synthetic, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("whole12") / "run"
    return train(tiny_cfg(tiny_synthetic, epochs=12, deterministic=True), run_dir)


@pytest.mark.slow
@pytest.mark.slow
def test_sigterm_to_a_cli_run(tiny_synthetic, whole_12, tmp_path):
    proc = _start_cli(tiny_synthetic, tmp_path / "run", "checkpoint_every=2")
    wait_for_checkpoint(proc, tmp_path / "run", past_epoch=1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "SIGTERM received: stopped" in err and "resume with the same command: python -m reidlib train" in err
    assert "Traceback" not in err
    resumed = train(tiny_cfg(tiny_synthetic, epochs=12, deterministic=True, checkpoint_every=2), tmp_path / "run")
    assert resumed == whole_12


@pytest.mark.slow
@pytest.mark.slow
def test_kill_9_loses_at_most_the_steps_since_the_last_checkpoint(tiny_synthetic, whole_12, tmp_path):
    proc = _start_cli(tiny_synthetic, tmp_path / "run", "checkpoint_every=3")
    wait_for_checkpoint(proc, tmp_path / "run", past_epoch=2)
    proc.kill()  # SIGKILL: no handler runs
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    checkpoint = runs.load_checkpoint(tmp_path / "run")  # whatever moment it hit, last.pt is whole
    assert checkpoint["step"] in (0, 3, 6) and checkpoint["epoch"] >= 2
    resumed = train(tiny_cfg(tiny_synthetic, epochs=12, deterministic=True, checkpoint_every=3), tmp_path / "run")
    assert resumed == whole_12
    assert not list((tmp_path / "run").glob(".*.tmp"))  # an unfinished write is cleared on resume
    epochs = [row["epoch"] for row in runs.read_jsonl(tmp_path / "run" / "metrics.jsonl")]
    assert epochs == list(range(1, 13))  # no epoch lost, none twice


def test_damaged_last_checkpoint_falls_back_to_previous(tiny_synthetic, whole, tmp_path, caplog):
    cfg = tiny_cfg(tiny_synthetic, deterministic=True)
    with pytest.raises(Interrupted):
        _stop_after_epochs(cfg, tmp_path / "run", epochs=2)
    last = tmp_path / "run" / "last.pt"
    assert runs.load_checkpoint(tmp_path / "run")["epoch"] == 2
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # truncated, as by a full disk
    assert train(cfg, tmp_path / "run") == whole[1]  # resumed from previous.pt (epoch 1)
    assert "last.pt is damaged" in caplog.text and "resuming from previous.pt" in caplog.text
    assert (tmp_path / "run" / "last.pt.damaged").exists()  # kept, not deleted
    assert [r["epoch"] for r in runs.read_jsonl(tmp_path / "run" / "metrics.jsonl")] == [1, 2, 3]


def _stop_after_epochs(cfg, run_dir: Path, epochs: int) -> None:
    """Train until ``epochs`` epochs are checkpointed, then stop as SIGTERM would."""
    real = engine.train_one_epoch

    def epoch_then_stop(state, *args, stop, **kwargs):
        row = real(state, *args, stop=stop, **kwargs)
        if state.epoch + 1 == epochs:
            stop.signum = signal.SIGTERM  # as the handler would set it
        return row

    engine.train_one_epoch = epoch_then_stop
    try:
        train(cfg, run_dir)
    finally:
        engine.train_one_epoch = real


def test_every_checkpoint_damaged_is_an_error_naming_them(tiny_synthetic, tmp_path, capsys):
    cfg = tiny_cfg(tiny_synthetic)
    with pytest.raises(Interrupted):
        _stop_after_epochs(cfg, tmp_path / "run", epochs=2)
    for name in ("last.pt", "previous.pt"):
        (tmp_path / "run" / name).write_bytes(b"not a checkpoint")
    argv = ["train", "--data", str(tiny_synthetic), "--run-dir", str(tmp_path / "run"), "--set"]
    argv += [f"{k}={v}" for k, v in TINY.items()]
    code, err = main(argv), capsys.readouterr().err
    assert_one_line_error(code, err, "no readable checkpoint", "last.pt", "previous.pt")
    assert {p.name for p in (tmp_path / "run").glob("*.pt")} == {"last.pt", "previous.pt"}  # untouched


def test_nan_loss_stops_with_epoch_and_step_and_keeps_the_checkpoint(tiny_synthetic, tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    real = scl_method.scl_total_loss

    def nan_at_step_9(*args, **kwargs):
        calls["n"] += 1
        losses = real(*args, **kwargs)
        return losses._replace(total=losses.total * float("nan")) if calls["n"] == 9 else losses

    monkeypatch.setattr(scl_method, "scl_total_loss", nan_at_step_9)
    argv = ["train", "--data", str(tiny_synthetic), "--run-dir", str(tmp_path / "run"), "--set"]
    argv += [f"{k}={v}" for k, v in TINY.items()]
    code, err = main(argv), capsys.readouterr().err
    assert_one_line_error(code, err, "the loss is nan at epoch 2, step 2", "last good checkpoint is kept")
    checkpoint = runs.load_checkpoint(tmp_path / "run")
    assert (checkpoint["epoch"], checkpoint["step"]) == (1, 0)
    assert all(torch.isfinite(t).all() for t in checkpoint["model"].values() if t.is_floating_point())
    assert [r["epoch"] for r in runs.read_jsonl(tmp_path / "run" / "metrics.jsonl")] == [1]
