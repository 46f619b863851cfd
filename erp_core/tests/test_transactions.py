"""Transactions behave the same on SQLite and PostgreSQL: a savepoint is nested in the
session's transaction, and rolling the transaction back undoes what the savepoint kept."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from erp_core.tenancy.models import Tenant


def _count(db: Any, slug: str) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).where(Tenant.slug == slug)) or 0)


def test_a_savepoint_after_reads_only_stays_inside_the_transaction(erp_db):
    with erp_db.session() as s:
        s.begin()
        s.scalar(select(func.count()).select_from(Tenant))  # a read: no write yet
        with s.begin_nested():
            s.add(Tenant(slug="nested", name="Nested"))
            s.flush()
        s.rollback()
    assert _count(erp_db, "nested") == 0


def test_a_released_savepoint_commits_with_its_transaction(erp_db):
    with erp_db.session() as s, s.begin():
        with s.begin_nested():
            s.add(Tenant(slug="kept", name="Kept"))
            s.flush()
        # a failed inner part is undone alone; the rest of the transaction goes on
        with pytest.raises(IntegrityError), s.begin_nested():
            s.add(Tenant(slug="kept", name="Again"))
            s.flush()
    assert _count(erp_db, "kept") == 1
