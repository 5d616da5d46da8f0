"""The fixtures users enable to test their DAGs offline."""

import json
import os

import requests


def test_batch_api_connection_points_the_default_connection_at_the_emulator(batch_api_connection):
    conn = json.loads(os.environ["AIRFLOW_CONN_BATCH_API_DEFAULT"])
    assert conn["conn_type"] == "batch_api" and conn["host"] == batch_api_connection.url
    response = requests.get(conn["host"] + "/_emulator/stats", headers={"x-api-key": conn["password"]})
    assert response.status_code == 200
    assert batch_api_connection.url.startswith("http://127.0.0.1:")
