"""The package's metadata says what it needs: every third-party module its code imports comes from a
distribution named in ``dependencies`` (not only through another package), and each extra names
only what its destination or feature needs."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# Imported only where that package is already there.
IMPORTED_WHERE_PRESENT = {
    "pytest": "the emulator's pytest plugin, loaded by pytest itself",
    "openlineage": "lineage facets, imported only when the [openlineage] extra's provider is installed",
}


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)).lower()


def imported_modules() -> set[str]:
    modules = set()
    for path in (ROOT / "airflow_batch_provider").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and m not in ("airflow_batch_provider", "__future__")}


def test_every_imported_third_party_module_is_a_declared_dependency():
    declared = {_name(requirement) for requirement in PROJECT["dependencies"]}
    providers = packages_distributions()
    undeclared = {module: providers.get(module) for module in imported_modules() - set(IMPORTED_WHERE_PRESENT)
                  if not declared & {_name(d) for d in providers.get(module, [])}}
    assert not undeclared, f"imported but not in pyproject's dependencies: {undeclared}"
    assert len(imported_modules()) > 10  # the walk saw the package


def test_each_runtime_dependency_says_why_it_is_there():
    text = (ROOT / "pyproject.toml").read_text()
    block = text[text.index("dependencies = ["):text.index("[project.optional-dependencies]")]
    lines = block.splitlines()
    for number, line in enumerate(lines):
        if line.strip().startswith('"'):
            commented = "#" in line or lines[number - 1].strip().startswith("#") or \
                (number + 1 < len(lines) and "#" in lines[number + 1] and lines[number + 1].strip().startswith('"'))
            assert commented, f"say why {line.strip()} is needed"


def test_the_extras_per_destination_and_feature():
    extras = PROJECT["optional-dependencies"]
    assert {"postgres", "mysql", "duckdb", "sqlite", "s3", "openlineage", "demo", "test"} <= set(extras)
    assert "airflow-batch-provider[postgres,mysql,duckdb,sqlite,s3,openlineage]" in extras["test"]
    runtime = {_name(r) for r in PROJECT["dependencies"]}
    for name in ("postgres", "mysql", "duckdb", "sqlite", "s3", "openlineage"):
        assert not runtime & {_name(r) for r in extras[name]}, f"[{name}] repeats a runtime dependency"
        assert not any("pytest" in r or "moto" in r for r in extras[name])
