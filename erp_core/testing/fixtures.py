"""pytest plugin (entry point ``pytest11: erp``): fixtures for testing the kernel and plugins.

The database is SQLite in a temporary folder, or the PostgreSQL database named by
``ERP_TEST_DATABASE_URL``; it is migrated once per session and emptied after every test that
used it. ``ERP_TEST_BROKER_URL`` selects the task broker for worker tests (default: embedded).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from erp_core.db.session import Database
    from erp_core.plugins.registry import PluginRegistry
    from erp_core.settings import Settings

PASSWORD = "correct-horse-battery"


@dataclass
class TenantFixture:
    """A tenant with an owner who can log in and an owner API token."""

    id: int
    slug: str
    email: str
    password: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="session")
def erp_var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("erp-var")


@pytest.fixture(scope="session")
def erp_settings(erp_var_dir: Path) -> Settings:
    from erp_core.settings import load_settings

    url = os.environ.get("ERP_TEST_DATABASE_URL") or f"sqlite:///{erp_var_dir / 'erp.sqlite'}"
    broker = os.environ.get("ERP_TEST_BROKER_URL") or (
        f"sqla+sqlite:///{erp_var_dir / 'broker.sqlite'}"
    )
    return load_settings(
        database_url=url,
        broker_url=broker,
        var_dir=str(erp_var_dir),
        secret_key="test-secret",
        login_max_failures=5,
    )


@pytest.fixture(scope="session")
def erp_registry(erp_settings: Settings) -> PluginRegistry:
    from erp_core.plugins.registry import PluginRegistry

    return PluginRegistry.discover(erp_settings.plugins or None)


@pytest.fixture(scope="session")
def erp_database(erp_settings: Settings, erp_registry: PluginRegistry) -> Iterator[Database]:
    from erp_core.db.migrate import upgrade
    from erp_core.db.session import Database

    database = Database(erp_settings.resolved_database_url())
    database.registry = erp_registry
    _drop_everything(database)
    upgrade(erp_settings, erp_registry, database.engine)
    yield database
    database.dispose()


def _drop_everything(database: Database) -> None:
    """Start from an empty database (a PostgreSQL test database may hold an earlier run)."""
    from sqlalchemy import MetaData, text

    if database.is_postgres:
        with database.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    else:
        md = MetaData()
        md.reflect(database.engine)
        md.drop_all(database.engine)


def empty_tables(database: Database) -> None:
    """Delete every row of every table except Alembic's, and forget cached plugin sets."""
    from sqlalchemy import MetaData, text

    from erp_core.db import cache
    from erp_core.tenancy import service

    service._cache.clear()
    cache.clear()
    md = MetaData()
    md.reflect(database.engine)
    names = [t.name for t in md.sorted_tables if t.name != "alembic_version"]
    with database.engine.begin() as conn:
        if database.is_postgres:
            conn.execute(text("SELECT set_config('erp.all_tenants', 'on', true)"))
            quoted = ", ".join(f'"{n}"' for n in names)
            conn.execute(text(f"TRUNCATE {quoted} RESTART IDENTITY CASCADE"))
        else:
            # triggers that keep rows immutable (ledger entries, ...) are set aside meanwhile
            # (PostgreSQL's TRUNCATE does not fire them)
            triggers = list(
                conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))
            )
            for name, _ in triggers:
                conn.execute(text(f'DROP TRIGGER "{name}"'))
            for n in reversed(names):
                conn.execute(text(f'DELETE FROM "{n}"'))
            for _, sql in triggers:
                conn.execute(text(sql))


@pytest.fixture
def erp_db(erp_database: Database) -> Iterator[Database]:
    """The migrated database, emptied after the test."""
    yield erp_database
    empty_tables(erp_database)


@pytest.fixture
def erp_app(erp_settings: Settings, erp_registry: PluginRegistry, erp_db: Database) -> FastAPI:
    from erp_core.app import create_app

    return create_app(erp_settings, registry=erp_registry, db=erp_db)


@pytest.fixture
def client(erp_app: FastAPI) -> Iterator[TestClient]:
    from fastapi.testclient import TestClient

    with TestClient(erp_app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def make_tenant(erp_db: Database, erp_registry: PluginRegistry) -> Any:
    """Factory: ``make_tenant("acme", plugins=("test_alpha",), role="owner")``."""
    from erp_core.auth import service
    from erp_core.tenancy.service import create_tenant, enable_plugin

    known = [p.name for p in erp_registry.permissions()]

    def make(
        slug: str,
        *,
        plugins: tuple[str, ...] = (),
        role: str = "owner",
        email: str | None = None,
        password: str = PASSWORD,
    ) -> TenantFixture:
        email = email or f"owner@{slug}.test"
        with erp_db.session() as s, s.begin():
            tenant = create_tenant(s, slug, slug.title(), registry=erp_registry)
            user = service.get_user(s, email) or service.create_user(s, email, password)
            service.add_member(s, tenant, user, role)
            for p in plugins:
                enable_plugin(s, erp_registry, tenant, p, with_dependencies=True)
            _, token = service.create_token(
                s, tenant, user, name="test", scopes=["*"], known_permissions=known
            )
            return TenantFixture(tenant.id, slug, email, password, token)

    return make


@pytest.fixture
def erp_cli(erp_settings: Settings, erp_db: Database, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run ``erp`` commands against the test database: ``erp_cli("tenants", "create", ...)``
    returns click's ``Result`` (``input=`` feeds standard input)."""
    from click.testing import CliRunner

    from erp_core.cli import main

    monkeypatch.setenv("ERP_DATABASE_URL", erp_settings.resolved_database_url())
    monkeypatch.setenv("ERP_BROKER_URL", erp_settings.resolved_broker_url())
    monkeypatch.setenv("ERP_VAR_DIR", str(erp_settings.var_path))
    monkeypatch.setenv("ERP_SECRET_KEY", erp_settings.secret_key)
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> Any:
        return runner.invoke(main, list(args), input=input, catch_exceptions=False)

    return run


@pytest.fixture(scope="session")
def erp_browser() -> Iterator[Any]:
    """One headless Chromium (Debian's, see :mod:`erp_core.testing.browser`) shared by every
    browser test of the run: Playwright's sync API allows one instance per process."""
    from erp_core.testing.browser import CHROMIUM, CHROMIUM_ARGS, SKIP_REASON

    if not CHROMIUM.exists():
        pytest.skip(SKIP_REASON)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def login(client: TestClient, email: str, password: str = PASSWORD, tenant: str = "") -> Any:
    """Log in through the real form (CSRF cookie included); returns the final response."""
    import re

    page = client.get("/login")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, "login form has no CSRF token"
    return client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": match.group(1), "tenant": tenant},
        follow_redirects=False,
    )


def csrf_of(client: TestClient) -> str:
    """The CSRF token of the logged-in session (as pages embed it)."""
    import re

    page = client.get("/")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, "page has no CSRF token"
    return match.group(1)
