"""Accessibility checks that need no browser: colour contrast of both themes (WCAG 2 ratios),
and on every page a language, a title, a skip link to the main region and a label for every
form control."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from erp_core.testing.fixtures import login

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CSS = ROOT / "themes/default/erp_theme_default/static/erp.css"
CONTRAST_CSS = ROOT / "themes/contrast/erp_theme_contrast/static/contrast.css"

#: (foreground, background) custom properties that carry text, each needing 4.5:1.
TEXT_PAIRS = [
    ("text", "bg"),
    ("text", "surface"),
    ("muted", "bg"),
    ("muted", "surface"),
    ("link", "surface"),
    ("link", "bg"),
    ("primary-text", "primary"),
    ("secondary-text", "secondary-bg"),
    ("danger-text", "danger"),
    ("topbar-text", "topbar-bg"),
    ("nav-text", "nav-bg"),
    ("nav-title", "nav-bg"),
    ("nav-current-text", "nav-current-bg"),
    ("success-text", "success-bg"),
    ("info-text", "info-bg"),
    ("warning-text", "warning-bg"),
    ("error-text", "error-bg"),
    ("badge-text", "badge-bg"),
    ("badge-on-text", "badge-on-bg"),
]
#: Non-text pairs (focus ring, field borders) need 3:1 (WCAG 1.4.11).
UI_PAIRS = [("focus", "bg"), ("focus", "surface"), ("border", "surface")]


def _vars(css: str) -> dict[str, str]:
    root = re.search(r":root\s*{([^}]*)}", css)
    assert root, "no :root block"
    return dict(re.findall(r"--([\w-]+)\s*:\s*(#[0-9a-fA-F]{6})\s*;", root.group(1)))


def _luminance(hex_color: str) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def themes() -> dict[str, dict[str, str]]:
    default = _vars(DEFAULT_CSS.read_text(encoding="utf-8"))
    dark = {**default, **_vars(CONTRAST_CSS.read_text(encoding="utf-8"))}
    return {"default": default, "contrast": dark}


def test_contrast_formula() -> None:
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0
    assert round(contrast("#777777", "#ffffff"), 2) == 4.48  # the classic just-too-light grey


@pytest.mark.parametrize("theme", ["default", "contrast"])
def test_theme_colours_have_enough_contrast(theme: str) -> None:
    colours = themes()[theme]
    low = []
    for fg, bg in TEXT_PAIRS:
        ratio = contrast(colours[fg], colours[bg])
        if ratio < (7.0 if theme == "contrast" else 4.5):
            low.append(f"{fg} on {bg}: {ratio:.2f}")
    for fg, bg in UI_PAIRS:
        ratio = contrast(colours[fg], colours[bg])
        if ratio < 3.0:
            low.append(f"{fg} against {bg}: {ratio:.2f}")
    assert low == []


class _Page(HTMLParser):
    CONTROLS = ("input", "select", "textarea")

    def __init__(self) -> None:
        super().__init__()
        self.labels: set[str] = set()
        self.controls: list[dict[str, str | None]] = []
        self.lang: str | None = None
        self.title = ""
        self.skip_link = False
        self.main_id = False
        self._in_title = False
        self._in_label = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        elif tag == "title":
            self._in_title = True
        elif tag == "label":
            self._in_label += 1
            if a.get("for"):
                self.labels.add(str(a["for"]))
        elif tag == "a" and "skip-link" in (a.get("class") or "") and a.get("href") == "#main":
            self.skip_link = True
        elif tag == "main" and a.get("id") == "main":
            self.main_id = True
        elif tag in self.CONTROLS and a.get("type") not in ("hidden", "submit", "button"):
            self.controls.append({"tag": tag, "wrapped": "1" if self._in_label else "", **a})

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag == "label":
            self._in_label = max(0, self._in_label - 1)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data

    def unlabelled(self) -> list[str]:
        return [
            f"{c['tag']} name={c.get('name')!r}"
            for c in self.controls
            if not (
                c["wrapped"]
                or c.get("id") in self.labels
                or c.get("aria-label")
                or c.get("aria-labelledby")
            )
        ]


PAGES = [
    "/",
    "/admin/plugins",
    "/admin/plugins?view=stages",
    "/admin/users",
    "/admin/roles",
    "/admin/roles/new",
    "/admin/tokens",
    "/admin/audit",
    "/admin/settings",
    "/ledger/accounts?balances=1",
    "/ledger/entries",
    "/ledger/entries/new",
    "/ledger/trial-balance?date_from=2026-10-01",
    "/ledger/periods",
    "/inventory/skus",
    "/inventory/warehouses",
    "/inventory/stock",
    "/inventory/stock/by-location",
    "/inventory/moves",
    "/inventory/count",
    "/no/such/page",
]


@pytest.mark.parametrize("theme", ["default", "contrast"])
def test_every_page_is_labelled_and_navigable_by_keyboard(client, make_tenant, theme) -> None:
    t = make_tenant("acme", plugins=("test_alpha",))
    client.patch("/api/v1/tenants/current", json={"theme": theme}, headers=t.auth)
    client.cookies.set("erp_locale", "en")
    anonymous = client.get("/login")
    pages = [("/login", anonymous.text)]
    login(client, t.email)
    pages += [(p, client.get(p, headers={"accept": "text/html"}).text) for p in PAGES]
    for path, html in pages:
        page = _Page()
        page.feed(html)
        assert page.lang in ("en", "zh-CN"), path
        assert page.title.strip(), path
        assert page.skip_link and page.main_id, path
        assert page.unlabelled() == [], path
        if path != "/login":  # before login there is no tenant, hence the default theme
            assert f"/static/{theme}/" in html, path
