"""The reliability page's closing totals are computed from what the scenarios recorded."""

from tests.reliability.page import render


def _result(number, rows=None, batches=None):
    return {"number": number, "scenario": f"s{number}", "injected": "x", "counted": "y", "rows": rows,
            "batches": batches}


def test_totals_come_from_the_recorded_counts():
    clean = render({"when": "now", "results": [_result(1, (100, 100, 100), (2, 2)), _result(2, batches=(0, 0))]})
    assert "Lost rows: 0. Rows landed twice: 0 (of 100 rows, 1 scenarios). Extra batches paid for: 0 (of 2" in clean
    bad = render({"when": "now", "results": [_result(1, (100, 101, 99), (2, 3)), _result(2, (10, 10, 10))]})
    assert "Lost rows: 1. Rows landed twice: 2 (of 110 rows, 2 scenarios). Extra batches paid for: 1" in bad
    assert "| 2 | s2 | x | y |" in bad and "## Security" in bad
