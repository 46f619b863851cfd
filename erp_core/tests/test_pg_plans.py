"""PostgreSQL's generic plans of the inventory's hot statements by primary key.

psycopg prepares a statement once it has run five times, and PostgreSQL may then plan it once
for any parameters. On a table never analyzed (every table of a new database, for about its
first minute) such a plan could take an index that starts with ``tenant_id`` for
``tenant_id = $1 AND id = $2`` and walk the tenant's rows for each row: shipping a page of
orders on a new database took 2.4 ms per order in that one statement instead of 0.15."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from erp_core.inventory import service as inv

_plans = itertools.count(1)


def _generic_plan(conn: Any, stmt: Any, params: dict[str, Any]) -> str:
    """The plan PostgreSQL makes of ``stmt`` for any parameters."""
    state = stmt.compile(dialect=conn.dialect).construct_expanded_state(params)
    names: list[str] = []

    def number(m: re.Match[str]) -> str:
        if m.group(1) not in names:
            names.append(m.group(1))
        return f"${names.index(m.group(1)) + 1}"

    sql = re.sub(r"%\((\w+)\)s", number, state.statement)
    # a name of its own each time: a statement run five times would be prepared by psycopg
    name = f"erp_plan_{next(_plans)}"
    conn.exec_driver_sql(f"PREPARE {name} AS {sql}")
    args = ", ".join(repr(state.parameters[n]) for n in names)
    rows = conn.exec_driver_sql(f"EXPLAIN EXECUTE {name}({args})").all()
    return "\n".join(r[0] for r in rows)


def test_statements_by_primary_key_use_it_on_a_table_never_analyzed(erp_db):
    if not erp_db.is_postgres:
        pytest.skip("PostgreSQL's plan cache")
    with erp_db.engine.connect() as conn:
        for table in ("inv_move", "inv_quant"):  # empty, never analyzed, same indexes
            conn.exec_driver_sql(f"CREATE TEMP TABLE {table} (LIKE public.{table} INCLUDING ALL)")
        conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        cases: list[tuple[Any, dict[str, Any]]] = [
            (inv._VALUE_MOVE, {"t": 1, "m": 7, "c": 1, "v": 1}),
            (inv._VALUE_AND_FINISH_MOVE, {"t": 1, "m": 7, "c": 1, "v": 1, "at": "2026-12-01"}),
            (inv._MOVES, {"t": 1, "ids": [7, 8, 9]}),
            (inv._set_moves_statement(("state",)), {"t": 1, "ids": [7], "v_state": "done"}),
            (inv._TAKE, {"qid": 3, "tid": 1, "take": 1}),
            (inv._GIVE_BACK, {"qid": 3, "tid": 1, "take": 1}),
            (inv._AVAILABLE, {"qid": 3, "tid": 1}),
        ]
        plans = [
            (str(stmt).split("WHERE")[0][:50], _generic_plan(conn, stmt, p)) for stmt, p in cases
        ]
        conn.rollback()
    for what, plan in plans:
        # no index that starts with tenant_id: the tenant is a filter beside the key
        assert "Index Cond: ((tenant_id" not in plan and "Index Cond: (tenant_id" not in plan, (
            what,
            plan,
        )


def test_the_reserve_function_takes_its_quant_by_primary_key(erp_db):
    """The same for the PL/pgSQL reservation (migration c0000006), whose statements PostgreSQL
    plans as prepared ones: its update of the quant it chose, as installed, planned for any
    parameters, goes by the primary key (the key is unique, so the tenant condition beside it
    does not tempt the planner into another index)."""
    if not erp_db.is_postgres:
        pytest.skip("PostgreSQL's plan cache")
    with erp_db.engine.connect() as conn:
        source = conn.exec_driver_sql(
            "SELECT prosrc FROM pg_proc WHERE proname = 'erp_inv_reserve_one'"
        ).scalar_one()
        found = re.search(r"UPDATE inv_quant q SET .*?;", source, re.S)
        assert found, source
        sql = found.group(0).rstrip(";")
        for n, var in enumerate(("v_quant", "p_tid", "p_take"), 1):
            sql = re.sub(rf"\b{var}\b", f"${n}::bigint", sql)
        assert not re.search(r"\b[vp]_\w+", sql), sql  # every variable given
        conn.exec_driver_sql("CREATE TEMP TABLE inv_quant (LIKE public.inv_quant INCLUDING ALL)")
        conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        conn.exec_driver_sql(f"PREPARE erp_reserve_take AS {sql}")
        plan = "\n".join(
            r[0] for r in conn.exec_driver_sql("EXPLAIN EXECUTE erp_reserve_take(3, 1, 1)").all()
        )
        conn.rollback()
    assert "inv_quant_pkey" in plan and "Index Cond: (id = " in plan, plan
    assert "Index Cond: ((tenant_id" not in plan and "Index Cond: (tenant_id" not in plan, plan
