"""Browser tests: a real ``erp serve`` on a free port against the test database, driven by
Playwright in Debian's Chromium (never a browser downloaded by Playwright). A failing test
leaves a screenshot in ``test-artifacts/screenshots/``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(
        reason="browser tests need Debian's Chromium at /usr/bin/chromium "
        "(apt-get install chromium; scripts/test-services installs it)"
    )
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(erp_settings: Any, erp_db: Any, tmp_path: Path) -> Iterator[str]:
    """``erp serve --no-worker`` in a process of its own (new for every test: the server
    caches per-tenant state keyed by ids that the next test reuses)."""
    port = _free_port()
    env = {
        **os.environ,
        "ERP_DATABASE_URL": erp_settings.resolved_database_url(),
        "ERP_BROKER_URL": erp_settings.resolved_broker_url(),
        "ERP_VAR_DIR": str(erp_settings.var_path),
        "ERP_SECRET_KEY": "e2e-secret",
        "ERP_LOG_LEVEL": "WARNING",
    }
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "erp_core.cli", "serve", "--no-worker", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=log,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            else:
                raise AssertionError(log_path.read_text())
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=15)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, accept_downloads=True, locale="zh-CN"
    )
    context.set_default_timeout(10_000)
    pg = context.new_page()
    yield pg
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = request.node.nodeid.split("::")[-1].replace("/", "_").replace("[", "-")
        pg.screenshot(path=str(ARTIFACTS / f"{name.rstrip(']')}.png"), full_page=True)
    context.close()
