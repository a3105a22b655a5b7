"""The federation planner's choices (no servers): which queries merge partial aggregates, which
send their top rows, and which fall back to raw rows; and the SQL each side runs."""

from __future__ import annotations

import pytest

from orasi_bridge.federation.plan import PARTIALS, plan


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("SELECT count(*) FROM spans", "partial"),
        ("SELECT service_name, avg(duration_ns) FROM spans GROUP BY service_name", "partial"),
        (
            "SELECT upper(service_name), max(time) FROM logs GROUP BY service_name ORDER BY 2 LIMIT 3",
            "partial",
        ),
        ("SELECT service_name, count(DISTINCT name) FROM spans GROUP BY service_name", "raw"),
        ("SELECT count(*) FILTER (WHERE status_code = 'ERROR') FROM spans", "raw"),
        ("SELECT quantile_cont(duration_ns, 0.95) FROM spans", "raw"),
        ("SELECT service_name, count(*) FROM spans GROUP BY 1", "raw"),  # a position: not merged
        ("SELECT service_name, count(*) FROM spans GROUP BY ROLLUP (service_name)", "raw"),
        ("SELECT name, duration_ns FROM spans ORDER BY duration_ns DESC LIMIT 5", "top"),
        ("SELECT name AS n FROM spans ORDER BY n LIMIT 5", "raw"),  # orders by an alias
        ("SELECT DISTINCT name FROM spans LIMIT 5", "raw"),
        ("SELECT name, row_number() OVER () FROM spans LIMIT 5", "raw"),
        ("SELECT s.name FROM spans s JOIN logs l USING (trace_id)", "raw"),
        ("SELECT count(*) FROM spans WHERE trace_id IN (SELECT trace_id FROM logs)", "raw"),
        ("SELECT name FROM spans", "raw"),
    ],
)
def test_the_plan_of_a_query(sql: str, kind: str) -> None:
    assert plan(sql).kind == kind


def test_partial_aggregates_and_their_merge() -> None:
    found = plan(
        "SELECT service_name, count(*) AS n, avg(duration_ns) AS mean FROM spans "
        "WHERE time > now() - INTERVAL 1 HOUR GROUP BY service_name HAVING count(*) > 1 "
        "ORDER BY n DESC LIMIT 3"
    )
    assert found.tables == ("spans",)
    assert found.region_sql == {
        PARTIALS: "SELECT service_name AS __g0, count_star() AS __a0, sum(duration_ns) AS __a1, "
        "count(duration_ns) AS __a2, count_star() AS __a3 FROM spans "
        'WHERE ("time" > (now() - to_hours(CAST(trunc(CAST(1 AS DOUBLE)) AS BIGINT)))) GROUP BY service_name'
    }
    assert found.coordinator_sql == (
        "SELECT __g0 AS service_name, COALESCE(CAST(sum(__a0) AS BIGINT), 0) AS n, "
        "(sum(__a1) / sum(__a2)) AS mean FROM __orasi_partials GROUP BY __g0 "
        "HAVING (COALESCE(CAST(sum(__a3) AS BIGINT), 0) > 1) ORDER BY n DESC LIMIT 3"
    )


def test_top_rows_and_raw_rows_send_only_the_columns_the_query_uses() -> None:
    top = plan(
        "SELECT name FROM spans WHERE status_code = 'ERROR' ORDER BY duration_ns DESC LIMIT 2 OFFSET 3"
    )
    assert top.region_sql == {
        "spans": 'SELECT "name", duration_ns, status_code FROM spans '
        "WHERE (status_code = 'ERROR') ORDER BY duration_ns DESC LIMIT 5"
    }
    raw = plan("SELECT median(duration_ns) FROM spans WHERE service_name = 'a'")
    assert raw.region_sql == {"spans": 'SELECT "service_name", "duration_ns" FROM spans'}


def test_a_query_with_limit_0_asks_the_regions_for_no_rows() -> None:
    """What a Flight SQL client sends to learn a result's schema."""
    described = plan("SELECT * FROM (SELECT median(duration_ns) AS m FROM spans) LIMIT 0")
    assert described.kind == "raw"
    assert described.region_sql == {"spans": "SELECT * FROM spans LIMIT 0"}
