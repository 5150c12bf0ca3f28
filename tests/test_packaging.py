"""pyproject.toml, environment.yml and requirements.lock agree; the CLI answers --help."""

import re
import subprocess
import sys

import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers import ROOT


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = {_name(r) for r in project["dependencies"] + extras["dev"] + extras["pretrained"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lists = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    listed = {_name(r) for r in pip_lists[0] if not r.startswith("-e")}
    assert listed == wanted


def test_pins_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env_text = (ROOT / "environment.yml").read_text()
    for req in project["dependencies"]:
        assert req in env_text, f"{req} is pinned differently in environment.yml"


def locked_versions() -> dict[str, str]:
    """requirements.lock's pins: canonical name -> version (every pin carries its hashes)."""
    text = (ROOT / "requirements.lock").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==([^ \\\n]+)", text, flags=re.M))
    assert pins and text.count("--hash=sha256:") >= len(pins), "requirements.lock: every pin needs its hashes"
    return {canonicalize_name(name): version for name, version in pins.items()}


def test_lock_satisfies_pyproject_ranges():
    """Every dependency of pyproject.toml (and of the extras make install takes: dev, pretrained) is
    pinned in requirements.lock at a version its range admits: a lock made from other ranges fails."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    locked = locked_versions()
    for text in project["dependencies"] + extras["dev"] + extras["pretrained"]:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is not in requirements.lock; run make lock"
        assert req.specifier.contains(locked[name], prereleases=True), (
            f"requirements.lock pins {req.name}=={locked[name]}, outside pyproject.toml's {req}; run make lock"
        )
    assert "reidlib" not in locked  # the project itself is installed from the checkout


def test_help():
    out = subprocess.run([sys.executable, "-m", "reidlib", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("synth", "describe", "baseline", "train", "evaluate"):
        assert command in out
