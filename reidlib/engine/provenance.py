"""Where a result came from: code version, packages, machine and data, recorded beside every run.

``train`` appends one entry to the run dir's ``provenance.json`` each time it starts or resumes,
so a figure in ``metrics.json`` can be traced to the commit, the package versions, the machine and
the exact image set that produced it. The report notebooks' HTML header uses the same facts.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from reidlib.data import ReidData

REPO_DIR = Path(__file__).resolve().parents[2]
CODE_PATHS = ("reidlib", "notebooks", "configs", "pyproject.toml")
PACKAGES = ("reidlib", "torch", "torchvision", "numpy", "faiss-cpu", "scikit-learn", "pillow")


def git_commit(short: bool = False) -> dict[str, Any] | None:
    """The checkout's commit and whether the code that makes results (the package, notebooks,
    configs, pyproject.toml) has uncommitted changes, or None outside a git checkout. Reports and
    README edits do not count: a report regenerated beside a new one is not a code change."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO_DIR, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short" if short else "--verify", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu_count": os.cpu_count(),
    }


def data_fingerprint(data: ReidData) -> dict[str, Any]:
    """Counts per split, a sha256 over every image's path relative to the root, size and labels
    (a tracklet's: its middle frame's and its number of frames),
    and the synthetic generator's ``manifest.json`` when the root has one."""
    root = Path(data.root)
    digest = hashlib.sha256()
    counts = {}
    for split in ("train", "query", "gallery"):
        records = getattr(data, split)
        counts[split] = len(records)
        for r in records:
            path = Path(r.path)
            name = path.relative_to(root) if path.is_relative_to(root) else path
            frames = f"\t{len(r.frames)} frames" if r.frames else ""  # a tracklet: its path is its middle frame
            digest.update(f"{split}\t{name}\t{path.stat().st_size}\t{r.pid}\t{r.camid}{frames}\n".encode())
    out: dict[str, Any] = {"root": str(root), "layout": data.name, "counts": counts, "sha256": digest.hexdigest()}
    if (root / "manifest.json").is_file():
        out["manifest"] = json.loads((root / "manifest.json").read_text())
    return out


def session(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One entry of ``provenance.json``: when, what command, which code, packages and machine."""
    return {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "git": git_commit(),
        "packages": package_versions(),
        "machine": machine(),
        **(extra or {}),
    }
