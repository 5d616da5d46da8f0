"""Every shell command in README.md and docs/ is run here, as a user would type it, or is skipped for a
reason written in :data:`SKIPPED`.

A block's commands run in one bash, with the venv's ``python``/``airflow`` first on the PATH, a fresh
Airflow home and, for the API, a local emulator: its URL stands in for ``https://api.scaledown.xyz`` and
its key is ``$SCALEDOWN_API_KEY``. Variables a block exports are read back the way Airflow reads them (a
connection is parsed; an option's value is what the configuration sees). An emulator command line
starts the emulator (on a free port, its data under a temporary folder), which must answer, and stops it.
A command of any other kind fails :func:`test_every_command_is_run_or_skipped_for_a_reason`: a new
snippet comes with a way to run it or a reason not to.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from airflow_batch_provider.get_provider_info import get_provider_info
from tests.unit.test_docs import BLOCK, DOCS, ROOT

BIN = Path(sys.executable).parent
PRODUCTION = "https://api.scaledown.xyz"
EMULATOR = "python -m airflow_batch_provider.emulator"
# What is not run here, and why: each command line exactly as the docs write it.
_WHEEL_TEST = "tests/e2e/test_wheel_install.py runs the quickstart's install lines in a fresh venv"
_DEMO_TEST = "tests/e2e/test_demo.py runs `make demo` in a venv of its own"
SKIPPED = {
    "make demo": _DEMO_TEST,
    'make demo ARGS="--airflow standalone"': "a scheduler, triggerer and UI on port 8080 until Ctrl-C; tests/e2e "
                                             "starts the same processes",
    "make test": "it runs this suite: never from inside the tests",
    'pip install -c constraints.txt ".[postgres]"': _WHEEL_TEST,
    "pip wheel --no-deps --wheel-dir dist .": _WHEEL_TEST,
    'pip install -c constraints.txt "dist/airflow_batch_provider-0.1.0-py3-none-any.whl[postgres]"': _WHEEL_TEST,
    "cd docker": "Docker is not on the machines CI runs on; tests/unit/test_docker.py checks the image and "
                 "the compose file",
    "docker compose up --build": "as `cd docker`",
}
RUN_AS_SCRIPT = ("airflow ", "export ", "AIRFLOW__")  # what a block's bash runs


def commands(code: str) -> list[str]:
    """A block's command lines: continuations joined, comments and blank lines left out."""
    lines = (line.split("  #")[0].strip() for line in code.replace("\\\n", " ").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def shell_blocks() -> list:
    return [pytest.param(commands(match.group(2)), id=f"{doc.relative_to(ROOT)}#{number}")
            for doc in DOCS for number, match in enumerate(BLOCK.finditer(doc.read_text()))
            if match.group(1) == "bash"]


def skip_reason(command: str) -> str | None:
    return SKIPPED.get(command)


def test_every_command_is_run_or_skipped_for_a_reason():
    every = [command for block in shell_blocks() for command in block.values[0]]
    unknown = [c for c in every if not (skip_reason(c) or c.startswith(EMULATOR) or c.startswith(RUN_AS_SCRIPT))]
    assert not unknown, f"run these commands in this test, or say in SKIPPED why not: {unknown}"
    unused = [command for command in SKIPPED if command not in every]
    assert not unused, f"SKIPPED names commands the docs no longer have: {unused}"
    for command in every:  # the package is on no public index: an install is of a clone or its wheel
        if command.startswith("pip install"):
            assert re.search(r'"(\.|dist/)[^"]*"$', command), f"{command!r} does not install from a clone"
    makefile = (ROOT / "Makefile").read_text()
    for command in every:  # a skipped make command still names a real target
        if command.startswith("make "):
            for target in (w for w in shlex.split(command)[1:] if "=" not in w):
                assert re.search(rf"^{target}:", makefile, re.M), f"no make target {target}"


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory) -> Path:
    """An Airflow metadata database, migrated once; each block gets a copy."""
    home = tmp_path_factory.mktemp("doc-airflow")
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=airflow_env(home, home / "airflow.db"),
                   check=True, capture_output=True, timeout=300)
    return home / "airflow.db"


def airflow_env(home: Path, db: Path, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SCALEDOWN"))}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{db}",
            **more}


# Read back what a block exported, as Airflow reads it.
READ_BACK = '''
import os, sys
from airflow.configuration import conf
from airflow.models.connection import Connection
for name in sys.argv[1:]:
    value = os.environ[name]
    if name.startswith("AIRFLOW_CONN_"):
        conn = Connection.from_json(value, conn_id=name.removeprefix("AIRFLOW_CONN_").lower())
        assert conn.conn_type, name
    else:
        section, key = name.removeprefix("AIRFLOW__").lower().split("__", 1)
        assert conf.get(section, key) == value, (name, conf.get(section, key))
print("read back:", *sys.argv[1:])
'''


@pytest.mark.parametrize("block", shell_blocks())
def test_the_command(block, tmp_path, migrated_db, make_emulator):
    runnable = [command for command in block if not skip_reason(command)]
    if not runnable:
        pytest.skip("; ".join(sorted({skip_reason(c) or "" for c in block})))
    server = make_emulator()
    for command in (c for c in runnable if c.startswith(EMULATOR)):
        serve(command, tmp_path)
    script = [command.replace(PRODUCTION, server.url) for command in runnable if not command.startswith(EMULATOR)]
    if not script:
        return
    exported = [m.group(1) for c in script if (m := re.match(r"export (\w+)=", c))]
    options = get_provider_info()["config"]["scaledown"]["options"]
    for name in exported:
        if name.startswith("AIRFLOW__SCALEDOWN__"):
            assert name.removeprefix("AIRFLOW__SCALEDOWN__").lower() in options, f"{name} is not a declared option"
    if exported:
        script.append(f"python -c {shlex.quote(READ_BACK)} {' '.join(exported)}")
    shutil.copy(migrated_db, tmp_path / "airflow.db")
    env = airflow_env(tmp_path, tmp_path / "airflow.db", SCALEDOWN_API_KEY=server.api_key)
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(script)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    if any(" connections test " in f" {c} " for c in script):
        assert "Connection success!" in output, output[-3000:]
    assert server.api_key not in output


def serve(command: str, folder: Path) -> None:
    """Start the emulator as the docs say, on a free port with its files under ``folder``; it must
    answer with the key the command names; then stop it."""
    words = shlex.split(command.replace("/tmp/", f"{folder}/"))
    if "--port" in words:
        words[words.index("--port") + 1] = "0"
    else:
        words += ["--port", "0"]
    if "--port-file" not in words:
        words += ["--port-file", str(folder / "doc-emulator.port")]
    port_file = Path(words[words.index("--port-file") + 1])
    port_file.unlink(missing_ok=True)
    key = words[words.index("--api-key") + 1]
    process = subprocess.Popen(["bash", "-c", shlex.join(words)], env={**os.environ, "PATH": f"{BIN}{os.pathsep}"
                               f"{os.environ.get('PATH', '')}"}, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text()):
            assert process.poll() is None, process.stderr.read().decode()[-2000:] if process.stderr else ""
            assert time.monotonic() < deadline, "the emulator did not start"
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port_file.read_text()}"
        assert requests.get(f"{url}/_emulator/stats", headers={"x-api-key": key}, timeout=10).status_code == 200
        assert requests.get(f"{url}/v1/batches/nope", headers={"x-api-key": "wrong"}, timeout=10).status_code == 401
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
