"""The ledger pages in the browser: post a journal entry by hand (an error shown next to its
field, corrected, posted), see the entry, then the trial balance of its period."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from erp_core.testing.fixtures import PASSWORD


def _login(page: Any, base: str, email: str) -> None:
    page.goto(base + "/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.locator("section.login button[type=submit]").click()
    page.wait_for_url(base + "/")


def test_post_an_entry_by_hand_then_read_the_trial_balance(live_server, page, make_tenant):
    t = make_tenant("acme")
    _login(page, live_server, t.email)
    page.locator('nav#side-nav [data-menu="core.ledger.entries"]').click()
    page.wait_for_url(live_server + "/ledger/entries")
    page.get_by_role("link", name="新建凭证").click()
    page.wait_for_url(live_server + "/ledger/entries/new")

    page.fill("#entry-date", "2026-10-05")
    page.fill("#entry-narration", "十月房租")
    page.select_option("#lines-0-account", "5602")
    page.fill("#lines-0-debit", "3000")
    page.select_option("#lines-1-account", "1002")
    page.fill("#lines-1-credit", "3000,00x")
    post = page.get_by_role("button", name="过账", exact=True)
    post.click()
    # a bad amount: shown next to its field, which gets the focus; what was typed stays
    error = page.locator("#lines-1-credit-error")
    expect(error).to_contain_text("请输入金额")
    credit = page.locator("#lines-1-credit")
    expect(credit).to_have_attribute("aria-invalid", "true")
    expect(credit).to_be_focused()
    expect(page.locator("#entry-narration")).to_have_value("十月房租")
    expect(page.locator("#lines-0-account")).to_have_value("5602")

    # a third line, added without leaving the page
    page.get_by_role("button", name="添加一行").click()
    expect(page.locator("#lines-2-account")).to_be_focused()

    # unbalanced: the totals say so
    credit.fill("2999.99")
    page.get_by_role("button", name="过账", exact=True).click()
    expect(page.locator("#entry-balance-error")).to_contain_text("借贷不平衡")
    expect(page.locator("#entry-balance-error")).to_contain_text("差额 ¥0.01")
    expect(page.locator("#lines-1-credit-error")).to_have_count(0)

    page.locator("#lines-1-credit").fill("3000.00")
    page.get_by_role("button", name="过账", exact=True).click()
    page.wait_for_url(re.compile(re.escape(live_server) + r"/ledger/entries/\d+$"))
    expect(page.locator(".flash-success")).to_contain_text("已过账")
    expect(page.locator("h1")).to_contain_text("凭证")
    postings = page.locator("#postings tbody tr")
    expect(postings).to_have_count(2)
    expect(postings.nth(0)).to_contain_text("5602")
    expect(postings.nth(0)).to_contain_text("¥3,000.00")
    expect(postings.nth(1)).to_contain_text("银行存款")

    # the trial balance of October
    page.locator('nav#side-nav [data-menu="core.ledger.trial_balance"]').click()
    page.wait_for_url(live_server + "/ledger/trial-balance")
    page.fill("#tb-period", "2026-10")
    page.get_by_role("button", name="显示").click()
    page.wait_for_url(re.compile(r".*period=2026-10.*"))  # htmx keeps the URL current
    expect(page.locator("#trial-balance caption")).to_contain_text("2026-10-01 至 2026-10-31")
    rent = page.locator('#trial-balance tr[data-account="5602"]')
    expect(rent).to_contain_text("¥3,000.00")
    total = page.locator('#trial-balance tr.totals[data-currency="CNY"]')
    expect(total).to_have_attribute("data-balanced", "yes")
    expect(total).to_contain_text("平衡")
