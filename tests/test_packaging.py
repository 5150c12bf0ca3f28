"""pyproject.toml and environment.yml name the same packages; the CLI answers --help."""

import re
import subprocess
import sys
import tomllib

import yaml
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


def test_help():
    out = subprocess.run(
        [sys.executable, "-m", "reidlib", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("synth", "describe", "baseline", "train", "evaluate"):
        assert command in out
