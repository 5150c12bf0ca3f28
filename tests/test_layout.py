"""The rules of the package's layout (docs/layout.md): few top-level modules, small modules, names
that cannot be mistaken for each other, and imports that run one way between the rooms."""

import ast
import itertools
from pathlib import Path

from tests.helpers import ROOT

PACKAGE = ROOT / "reidlib"
# The rooms from the bottom up: a module may import its own room and the rooms below it, never one
# above (the top-level modules are rooms of their own).
ROOMS = (
    ("errors", "__init__"),
    ("config",),
    ("utils", "distances"),
    ("data", "model"),
    ("neighbours",),
    ("methods", "evaluation"),
    ("engine", "retrieval"),
    ("reports",),
    ("experiments",),
    ("cli",),
    ("__main__",),
)
LEVEL = {room: level for level, rooms in enumerate(ROOMS) for room in rooms}


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def room_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else path.stem


def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ca != cb))
    return row[-1]


def test_few_modules_at_the_top():
    top = [p.name for p in PACKAGE.glob("*.py")]
    assert len(top) <= 8, top


def test_no_module_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in modules() if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


def test_no_two_module_names_differ_by_a_letter_or_two():
    """``selection`` / ``selectors`` read as one word; a parallel name in sibling packages (each
    method's ``learner.py``) is the same word on purpose."""
    names = {p.stem for p in modules()} - {"__init__", "__main__"}
    close = [(a, b) for a, b in itertools.combinations(sorted(names), 2) if 1 <= edit_distance(a, b) <= 2]
    assert not close, close


def test_every_room_is_known_and_imports_run_one_way():
    upward = []
    for path in modules():
        room = room_of(path)
        assert room in LEVEL, f"{room} is not in ROOMS: place it in docs/layout.md's order"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("reidlib"):
                parts = node.module.split(".")
                targets = [parts[1]] if len(parts) > 1 else [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name.split(".")[1] for a in node.names if a.name.startswith("reidlib.")]
            else:
                continue
            upward += [(str(path.relative_to(ROOT)), t) for t in targets if LEVEL[t] > LEVEL[room]]
    assert not upward, upward
