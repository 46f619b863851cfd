"""Browser tests: a real ``erp serve`` on a free port against the test database, driven by
Playwright in Debian's Chromium (never a browser downloaded by Playwright). A failing test
leaves a screenshot in ``test-artifacts/screenshots/``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from erp_core.testing.browser import CHROMIUM, SKIP_REASON, live_erp

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def live_server(erp_settings: Any, erp_db: Any, tmp_path: Path) -> Iterator[str]:
    """``erp serve --no-worker`` in a process of its own (new for every test: the server
    caches per-tenant state keyed by ids that the next test reuses)."""
    with live_erp(erp_settings, tmp_path / "server.log") as base:
        yield base


@pytest.fixture
def browser(erp_browser: Any) -> Any:
    return erp_browser


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
