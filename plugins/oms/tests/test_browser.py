"""The OMS pages in a real browser (Debian's Chromium through Playwright, against a real
``erp serve``): the order pool filtered, then held orders released with the one that cannot be
released saying why; the exception queue, where an address is corrected after an inline error
and an order is released; the rule editor, where a rule's missing parameter is shown next to
its field, then given. Skipped, saying why, where Chromium is missing.

The pages are in English here (the ``erp_locale`` cookie), so that the tests read the same
whether or not the plugin's catalog is loaded."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from erp_core.testing.browser import CHROMIUM, SKIP_REASON, live_erp
from erp_core.testing.fixtures import PASSWORD

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "screenshots"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason=SKIP_REASON)


def _views_module() -> Any:
    """The page tests' data builders (orders in every state)."""
    spec = importlib.util.spec_from_file_location(
        "oms_test_views", Path(__file__).with_name("test_views.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


views = _views_module()


# --- a live server and a browser (as tests/e2e does) ---------------------------------------------


@pytest.fixture
def live_server(erp_settings: Any, erp_db: Any, tmp_path: Path) -> Iterator[str]:
    """``erp serve --no-worker`` in a process of its own, new for every test."""
    with live_erp(erp_settings, tmp_path / "server.log") as base:
        yield base


@pytest.fixture
def browser(erp_browser: Any) -> Any:
    return erp_browser


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest, live_server: str) -> Iterator[Any]:
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, accept_downloads=True, locale="zh-CN"
    )
    context.add_cookies([{"name": "erp_locale", "value": "en", "url": live_server}])
    context.set_default_timeout(10_000)
    pg = context.new_page()
    failures = request.session.testsfailed
    yield pg
    if request.session.testsfailed > failures:  # this test failed (counted before teardown)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = request.node.nodeid.split("::")[-1].replace("/", "_").replace("[", "-")
        pg.screenshot(path=str(ARTIFACTS / f"oms-{name.rstrip(']')}.png"), full_page=True)
    context.close()


def _login(page: Any, base: str, email: str) -> None:
    page.goto(base + "/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.locator("section.login button[type=submit]").click()
    page.wait_for_url(base + "/")


@pytest.fixture
def pool(make_tenant: Any, erp_db: Any) -> Any:
    return views.build_pool(erp_db, make_tenant("acme", plugins=("oms",)))


def _status(erp_db: Any, pool: Any, key: str) -> str:
    return str(views._status(erp_db, pool.tenant.id, pool.ids[key]))


# --- the tests ------------------------------------------------------------------------------------


def test_filter_the_order_pool_then_release_held_orders(
    live_server: str, page: Any, pool: Any, erp_db: Any
) -> None:
    from playwright.sync_api import expect

    _login(page, live_server, pool.tenant.email)
    page.locator('nav#side-nav [data-menu="oms.orders"]').click()
    page.wait_for_url(live_server + "/oms/orders")
    rows = page.locator("#list-orders tbody tr")
    expect(rows).to_have_count(len(pool.ids))

    # a filter narrows the list in place, and the URL follows
    page.select_option("#filter-orders-status_is", "held")
    page.wait_for_url(re.compile(r".*status_is=held.*"))
    expect(rows).to_have_count(3)
    expect(page.locator("#list-orders")).to_contain_text("NOPE-1")

    # release every held order: two go, the one with an unmapped SKU says why it stays
    page.locator("#list-orders thead input[data-select-all]").check()
    page.select_option("#bulk-action-orders", "release")
    page.locator("#bulk-orders button[type=submit]").click()
    problems = page.locator("#bulk-problems-orders")
    expect(problems).to_contain_text("Tunmapped: map SKU NOPE-1 first")
    expect(page.locator(".flash-success, .flash-warning")).to_contain_text("2 orders released.")
    expect(rows).to_have_count(1)  # the held orders of the filtered page: one left
    expect(rows.first).to_contain_text("Tunmapped")
    assert _status(erp_db, pool, "address") == "reviewed"
    assert _status(erp_db, pool, "stock") == "reviewed"
    assert _status(erp_db, pool, "unmapped") == "held"

    # holding needs a reason: said next to the reason field, then done with one
    page.select_option("#filter-orders-status_is", "reserved")
    expect(rows).to_have_count(2)
    rows.filter(has_text="Treserved").locator("input[name=ids]").check()
    page.select_option("#bulk-action-orders", "hold")
    page.locator("#bulk-orders button[type=submit]").click()
    expect(page.locator("#bulk-reason-orders-error")).to_have_text("say why the orders are held")
    # the rows stay selected and the action chosen: only the reason is missing
    expect(rows.filter(has_text="Treserved").locator("input[name=ids]")).to_be_checked()
    expect(page.locator("#bulk-action-orders")).to_have_value("hold")
    page.fill("#bulk-reason-orders", "The buyer called")
    page.locator("#bulk-orders button[type=submit]").click()
    expect(page.locator(".flash-success")).to_contain_text("1 orders held.")
    expect(rows).to_have_count(1)
    assert _status(erp_db, pool, "reserved") == "held"


def test_fix_an_address_and_release_in_the_exception_queue(
    live_server: str, page: Any, pool: Any, erp_db: Any
) -> None:
    from playwright.sync_api import expect

    oid = pool.ids["address"]
    _login(page, live_server, pool.tenant.email)
    page.locator('nav#side-nav [data-menu="oms.exceptions"]').click()
    page.wait_for_url(live_server + "/oms/exceptions")
    cards = page.locator("article.exception")
    expect(cards).to_have_count(3)
    card = page.locator(f"#exc-{oid}")
    expect(card).to_contain_text("Unknown province: 火星")

    # the form is open for the bad address; a mistake is shown next to its field
    page.fill(f"#addr-{oid}-province", "江苏")
    page.fill(f"#addr-{oid}-city", "")
    page.fill(f"#addr-{oid}-district", "玄武区")
    page.fill(f"#addr-{oid}-address", "中山路 18 号 3 楼")
    card.get_by_role("button", name="Save the address and review again").click()
    city = page.locator(f"#addr-{oid}-city")
    expect(page.locator(f"#addr-{oid}-city-error")).to_have_text("this is needed")
    expect(city).to_have_attribute("aria-invalid", "true")
    expect(city).to_be_focused()
    expect(page.locator(f"#addr-{oid}-address")).to_have_value("中山路 18 号 3 楼")
    assert _status(erp_db, pool, "address") == "held"

    city.fill("南京市")
    city.press("Enter")
    expect(page.locator(".flash-success")).to_contain_text(
        "The address of order Taddress is corrected; the order goes back to the review."
    )
    expect(cards).to_have_count(2)
    assert _status(erp_db, pool, "address") == "new"

    # release one order from its card; another that cannot be released says why
    stock = pool.ids["stock"]
    page.locator(f"#exc-{stock}").get_by_role("button", name="Release order Tstock").click()
    expect(page.locator(f"#exc-{stock}")).to_have_count(0)
    expect(page.locator(".flash-success")).to_contain_text("1 orders released.")
    unmapped = pool.ids["unmapped"]
    page.locator(f"#exc-{unmapped}").get_by_role("button", name="Release order Tunmapped").click()
    expect(page.locator("#bulk-problems-exceptions")).to_contain_text("map SKU NOPE-1 first")
    expect(cards).to_have_count(1)
    assert _status(erp_db, pool, "stock") == "reviewed"


def test_create_a_rule_with_an_error_shown_inline_then_fixed(
    live_server: str, page: Any, pool: Any, erp_db: Any
) -> None:
    from playwright.sync_api import expect

    _login(page, live_server, pool.tenant.email)
    page.locator('nav#side-nav [data-menu="oms.rules"]').click()
    page.wait_for_url(live_server + "/oms/rules")
    expect(page.locator("#rule-list tbody tr")).to_have_count(5)
    page.get_by_role("link", name="New rule").click()
    page.wait_for_url(live_server + "/oms/rules/new")

    # what was typed stays when another type brings its own fields
    page.fill("#rule-reason", "Big order")
    page.select_option("#rule-kind", "amount_over")
    amount = page.locator("#param-amount")
    expect(amount).to_be_visible()
    expect(page.locator("#rule-reason")).to_have_value("Big order")

    page.get_by_role("button", name="Save the rule").click()
    expect(page.locator("#param-amount-error")).to_have_text("Amount is required")
    expect(amount).to_have_attribute("aria-invalid", "true")
    amount.fill("lots")
    page.get_by_role("button", name="Save the rule").click()
    expect(page.locator("#param-amount-error")).to_have_text("Amount must be a number")
    expect(amount).to_be_focused()

    amount.fill("1000")
    page.get_by_role("button", name="Save the rule").click()
    page.wait_for_url(live_server + "/oms/rules")
    expect(page.locator(".flash-success")).to_contain_text("Rule Big order saved.")
    rows = page.locator("#rule-list tbody tr")
    expect(rows).to_have_count(6)
    expect(rows.last).to_contain_text("Amount: 1000")

    # switched off in place
    rows.last.get_by_role("button", name="Turn rule Big order off").click()
    expect(rows.last).to_have_attribute("data-active", "off")
