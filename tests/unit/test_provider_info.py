import importlib.metadata
import json
from pathlib import Path

import airflow
import jsonschema

from airflow_batch_provider.get_provider_info import get_provider_info


def test_provider_info_matches_airflows_schema_and_the_distribution():
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert info["package-name"] == importlib.metadata.metadata("airflow-batch-provider")["Name"]
    entry_points = importlib.metadata.entry_points(group="apache_airflow_provider")
    assert any(ep.value == "airflow_batch_provider.get_provider_info:get_provider_info" for ep in entry_points)


def test_protocol_imports_nothing_of_airflow():
    import subprocess
    import sys
    code = ("import sys, airflow_batch_provider.protocol; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'airflow'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_setting_of_the_connection_has_a_form_field():
    from airflow_batch_provider.hooks.settings import ApiSettings

    [connection_type] = get_provider_info()["connection-types"]
    assert set(connection_type["conn-fields"]) == set(ApiSettings.extra_fields())
