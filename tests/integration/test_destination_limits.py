"""What a destination cannot hold is refused before paying, naming the row or the parameter; what
submit accepts, every load lands (issue: paid for means landed)."""

from __future__ import annotations

import pandas as pd
import pytest

from airflow_batch_provider.destinations.table import TableSchemaError
from airflow_batch_provider.operators.load import BatchOutputToTableOperator
from airflow_batch_provider.operators.submit import DataFrameToBatchOperator, InvalidInputError, InvalidRowsError
from airflow_batch_provider.protocol import Classify, Extract, Label
from airflow_batch_provider.tabular.results_to_columns import column_name
from tests.integration.test_load_operators import load, submit
from tests.state_store import DictStateStore

LONG_LABEL = "Does the reviewer say the delivery was late, the box damaged, or the item missing"  # 81 characters


def ids_frame(ids):
    return pd.DataFrame({"review_id": ids, "body": [f"Review {i}: the kettle is great." for i in range(len(ids))]})


def test_long_derived_column_names_are_shortened_the_same_way_every_time():
    first, second = column_name("score", LONG_LABEL), column_name("score", LONG_LABEL + " or broken")
    assert len(first) <= 63 and len(second) <= 63 and first != second
    assert first == column_name("score", LONG_LABEL) and first.startswith("score_does_the_reviewer")
    assert column_name("score", "Very negative!") == "score_very_negative"  # short names unchanged


def test_a_long_label_lands_day_after_day(env, tmp_path, database):
    """Issue: a 70-character label with label_scores=True failed every MariaDB load, and the second
    PostgreSQL load (the column name had been truncated to 63 bytes)."""
    env()
    request = Classify([Label(LONG_LABEL, "Is it?"), Label("positive", "Does the review praise it?")])
    for day in (1, 2):
        summary = load(submit(tmp_path / str(day), ids_frame(list(range(20))), request=request), mode="upsert",
                       label_scores=True)
        assert summary["ok"] == 20
    column = column_name("score", LONG_LABEL)
    assert database(f"SELECT COUNT({column}) FROM review_labels") == [(20,)]


def test_an_entity_type_with_a_long_name_lands(env, tmp_path, database):
    env()
    request = Extract({"the product the reviewer bought and is writing about in this review": "product"})
    load(submit(tmp_path / "a", ids_frame([1, 2, 3]), request=request), entity_columns="first")
    load(submit(tmp_path / "b", ids_frame([1, 2, 3]), request=request), entity_columns="first", mode="upsert")
    assert database("SELECT COUNT(*) FROM review_labels") == [(3,)]


def test_a_string_id_longer_than_a_key_column_is_refused_before_paying_naming_the_way_out(env, tmp_path):
    server = env()
    ids = ["a" * 1000, "b"]
    with pytest.raises(InvalidRowsError, match=r"'a{20}.*id is longer than 768 characters.*destination="):
        submit(tmp_path, ids_frame(ids))
    assert server.stats()["requests"] == {}


@pytest.mark.parametrize("database", ["postgres", "mysql", "sqlite"], indirect=True)
def test_a_long_id_is_accepted_where_the_declared_destination_holds_it(env, tmp_path, database):
    """A 1,000-character id: PostgreSQL and SQLite hold it, MySQL/MariaDB's key column does not."""
    server = env()
    ids = ["é" * 1000, "b"]  # 2,000 UTF-8 bytes
    if database.kind == "mysql":
        with pytest.raises(InvalidRowsError, match="id is longer than 768 characters"):
            submit(tmp_path, ids_frame(ids), destination="warehouse")
        assert server.stats()["requests"] == {}
        return
    load(submit(tmp_path, ids_frame(ids), destination="warehouse"), mode="upsert")
    assert database("SELECT COUNT(*), MAX(LENGTH(review_id)) FROM review_labels") == [(2, 1000)]


def test_an_id_column_name_longer_than_the_destination_holds_is_refused(env, tmp_path):
    env()
    name = "review_identifier_as_exported_from_the_legacy_crm_system_in_2019_q3"  # 67 characters
    frame = ids_frame([1, 2]).rename(columns={"review_id": name})
    operator = DataFrameToBatchOperator(task_id="submit", dataframe=frame, id_column=name, text_column="body",
                                        request=Classify([Label("x", "Is it x?")]), manifest_dir=str(tmp_path))
    with pytest.raises(InvalidInputError, match=f"{len(name)} characters.*Shorten it; or declare the load.s destination"):
        operator.execute({"task_state_store": DictStateStore()})


@pytest.mark.parametrize("where", ["id_column", "table", "skip_landed_table"])
def test_a_percent_in_a_name_pasted_into_sql_is_refused_when_the_dag_is_built(where):
    request = Classify([Label("x", "Is it x?")])
    with pytest.raises(TableSchemaError, match="holds a '%'"):
        if where == "table":
            BatchOutputToTableOperator(task_id="l", job={}, conn_id="w", table="labels%s")
        else:
            DataFrameToBatchOperator(task_id="s", dataframe=None, request=request, text_column="body",
                                     id_column="id%s" if where == "id_column" else "id",
                                     **({"skip_landed_conn_id": "w", "skip_landed_table": "t%s"}
                                        if where == "skip_landed_table" else {}))
