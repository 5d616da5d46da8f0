"""Imports run one way: each room of the package may import only the rooms below it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "airflow_batch_provider"
# room -> the rooms it may import (besides itself)
ALLOWED = {
    "protocol": set(),
    "tabular": {"protocol"},
    "hooks": {"protocol"},
    "destinations": {"tabular", "protocol"},
    "emulator": {"protocol"},
    "job": {"hooks", "tabular", "protocol"},
    "triggers": {"job", "hooks", "protocol"},
    "sensors": {"triggers", "job", "hooks", "protocol"},
    "sources": {"tabular", "protocol"},
    "operators": {"sensors", "triggers", "job", "destinations", "sources", "hooks", "tabular", "protocol"},
}
SHARED = {"logs"}  # a module every room may use: the logger type helpers accept


def imported_rooms(path: Path) -> set[str]:
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
        for name in names:
            parts = name.split(".")
            if parts[0] == "airflow_batch_provider" and len(parts) > 1:
                rooms.add(parts[1])
    return rooms


def test_every_room_imports_only_the_rooms_below_it():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        room = relative.parts[0].removesuffix(".py")
        if room not in ALLOWED:
            continue
        for target in imported_rooms(path) - ALLOWED[room] - SHARED - {room}:
            wrong.append(f"{relative} imports {target}")
    assert wrong == []
