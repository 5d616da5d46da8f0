"""What can be checked of docker/ without a Docker engine."""

import re
from pathlib import Path

import yaml

from airflow_batch_provider.get_provider_info import get_provider_info

DOCKER = Path(__file__).resolve().parents[2] / "docker"
COMPOSE = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
DOCKERFILE = (DOCKER / "Dockerfile").read_text()


def _built_here():
    return {name: s for name, s in COMPOSE["services"].items()
            if s.get("build", {}).get("dockerfile") == "docker/Dockerfile"}


def test_every_service_built_from_the_dockerfile_shares_one_image():
    built = _built_here()
    assert {"emulator", "airflow-apiserver", "airflow-scheduler", "airflow-triggerer"} <= set(built)
    assert len({service.get("image") for service in built.values()}) == 1 and None not in {
        service.get("image") for service in built.values()}


def test_every_named_volume_path_is_created_in_the_image_for_the_airflow_user():
    created = " ".join(re.findall(r"RUN mkdir -p ([^\n&]+)", DOCKERFILE))
    owned = " ".join(re.findall(r"chown -R airflow:\S+ ([^\n&]+)", DOCKERFILE))
    for name, service in _built_here().items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source in COMPOSE.get("volumes", {}):  # a named volume, filled from the image's folder
                assert target in created.split() and target in owned.split(), (name, target)


def test_the_image_installs_with_airflows_constraints_for_the_pinned_version():
    assert re.search(r'"apache-airflow==\$\{AIRFLOW_VERSION\}"', DOCKERFILE)
    assert "constraints-${AIRFLOW_VERSION}/constraints-${PYTHON_VERSION}.txt" in DOCKERFILE
    assert re.search(r"FROM apache/airflow:\$\{AIRFLOW_VERSION\}-python\$\{PYTHON_VERSION\}", DOCKERFILE)


def test_the_emulator_and_the_api_server_have_healthchecks():
    assert COMPOSE["services"]["emulator"]["healthcheck"]["test"]
    assert "monitor/health" in " ".join(COMPOSE["services"]["airflow-apiserver"]["healthcheck"]["test"])


def test_the_environment_names_options_the_provider_declares():
    options = {f"AIRFLOW__{section.replace('.', '_').upper()}__{option.upper()}"
               for section, declared in get_provider_info()["config"].items() for option in declared["options"]}
    settings = {name for service in COMPOSE["services"].values()
                for name in (service.get("environment") or {}) if name.startswith("AIRFLOW__SCALEDOWN__")}
    assert settings and settings <= options, settings - options
