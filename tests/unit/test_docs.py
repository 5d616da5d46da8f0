"""Every code block in README.md and docs/ is exercised, and every public parameter is documented.

Python blocks are executed. Shell blocks are run by tests/integration/test_doc_commands.py (it needs
Airflow's database and the emulator). Text blocks are prose.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "docker" / "README.md"]
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(language: str):
    for doc in DOCS:
        for number, match in enumerate(BLOCK.finditer(doc.read_text())):
            if match.group(1) == language:
                yield pytest.param(match.group(2), id=f"{doc.relative_to(ROOT)}#{number}")


def test_every_block_is_of_a_known_kind():
    kinds = {m.group(1) for doc in DOCS for m in BLOCK.finditer(doc.read_text())}
    assert kinds <= {"python", "bash", "text", "yaml"}, kinds


@pytest.mark.parametrize("code", list(blocks("python")))
def test_python_blocks_run(code):
    # A block runs as a file of the dags folder would (an example DAG's block is that file).
    exec(compile(code, "<doc>", "exec"), {"__name__": "doc_snippet", "__file__": str(ROOT / "dags" / "doc_snippet.py")})


def _public_parameters():
    from airflow_batch_provider.hooks.batch_api import BatchApiHook
    from airflow_batch_provider.hooks.batch_api_async import BatchApiAsyncHook
    from airflow_batch_provider.operators import load, submit
    from airflow_batch_provider.protocol import Classify, Extract, Label, Summarize
    from airflow_batch_provider.sensors.batch import BatchSensor
    from airflow_batch_provider.triggers.batch import BatchTrigger

    classes = [submit.BaseBatchSubmitOperator, submit.DataFrameToBatchOperator, submit.ParquetToBatchOperator,
               submit.SqlToBatchOperator, load.BaseBatchOutputOperator, load.BatchOutputToTableOperator,
               load.BatchOutputToParquetOperator, BatchSensor, BatchTrigger, BatchApiHook, BatchApiAsyncHook,
               Extract, Summarize, Classify, Label]
    for cls in classes:
        # A parameter may be documented with the class or with the base that defines it.
        owners = tuple(c.__name__ for c in cls.__mro__ if c in classes)
        yield owners, None
        for name, parameter in inspect.signature(cls.__init__).parameters.items():
            if name != "self" and parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
                yield owners, name


def _sections() -> list[str]:
    """Every heading's section of every page (a page before its first heading is a section too)."""
    return [part for doc in DOCS for part in re.split(r"(?m)^(?=#{1,6} )", doc.read_text())]


@pytest.mark.parametrize(("owners", "parameter"), list(_public_parameters()),
                         ids=lambda v: v[0] if isinstance(v, tuple) else str(v))
def test_public_classes_and_parameters_are_documented(owners, parameter):
    """Each class is named in docs/, and each of its parameters in a section that names the class
    (or the base that defines it): a name that merely occurs somewhere else does not count."""
    own = [section for section in _sections() if any(f"`{name}" in section for name in owners)]
    assert own, f"{owners[0]} is not in docs/"
    if parameter:
        assert any(re.search(rf"[`(, ]{parameter}[`=(,)]", section) for section in own), \
            f"{owners[0]}({parameter}) is not documented in a section about {' or '.join(owners)}"


def test_the_scaling_example_is_the_example_dag():
    dag = (ROOT / "dags" / "partitioned_enrichment.py").read_text()
    code = dag[dag.index('"""', 3) + 3:].replace("from __future__ import annotations\n\n", "").strip()
    assert code in (ROOT / "docs" / "scaling.md").read_text()


def test_the_quickstart_installs_the_wheel_of_this_version():
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"dist/airflow_batch_provider-{version}-py3-none-any.whl" in (ROOT / "docs" / "quickstart.md").read_text()
