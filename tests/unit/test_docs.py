"""Every code block in README.md and docs/ is exercised, and every public parameter is documented.

Python blocks are executed. Shell blocks are checked command by command: `make` targets exist,
emulator command lines parse, `airflow connections` calls name the right connection type,
`AIRFLOW_CONN_*` values are valid JSON. A command this test does not know fails it, so a new kind of
snippet must come with a way to check it. Text blocks are prose.
"""

from __future__ import annotations

import inspect
import json
import re
import shlex
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


def _check_command(words: list[str]) -> None:
    makefile = (ROOT / "Makefile").read_text()
    if words[0] == "make":
        targets = [w for w in words[1:] if "=" not in w]
        for target in targets:
            assert re.search(rf"^{target}:", makefile, re.M), f"no make target {target}"
    elif words[:3] == ["python", "-m", "airflow_batch_provider.emulator"]:
        from airflow_batch_provider.emulator.__main__ import parse_args
        parse_args(words[3:])
    elif words[:2] == ["airflow", "connections"]:
        assert words[2] in ("add", "test", "get")
        if words[2] == "add":
            assert words[words.index("--conn-type") + 1] == "batch_api"
    elif words[0] == "export":
        name, _, value = words[1].partition("=")
        if name.startswith("AIRFLOW_CONN_"):
            assert json.loads(value)["conn_type"]
        elif name.startswith("AIRFLOW__SCALEDOWN__"):
            from airflow_batch_provider.get_provider_info import get_provider_info
            options = get_provider_info()["config"]["scaledown"]["options"]
            assert name.removeprefix("AIRFLOW__SCALEDOWN__").lower() in options, f"{name} is not a declared option"
    elif words[:2] == ["pip", "install"]:
        assert words[2].startswith(("./", "/", "-e")), "the package is not on PyPI: install from a clone"
    elif words[:2] == ["docker", "compose"]:
        assert (ROOT / "docker" / "docker-compose.yml").exists()
    elif words[0] in ("cp", "cd"):
        pass
    else:
        raise AssertionError(f"no check for shell command {' '.join(words)!r}")


@pytest.mark.parametrize("code", list(blocks("bash")))
def test_shell_blocks_name_real_things(code):
    for line in code.replace("\\\n", " ").splitlines():
        line = line.split("  #")[0].strip()
        if line and not line.startswith("#"):
            _check_command(shlex.split(line))


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
