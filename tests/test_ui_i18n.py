"""Every visible string of the UI is translated: templates hold no text outside translation
calls, and the catalogs of the kernel and of every plugin or theme that ships one have a
finished translation for each message their source contains."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from jinja2 import Environment

from erp_core.i18n import Catalogs, Message, translate
from erp_core.i18n_tools import kernel_domain, plugin_domains, problems

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_DIRS = [
    ROOT / "erp_core" / "web" / "templates",
    *sorted(ROOT.glob("themes/*/*/templates")),
]
#: Attributes whose values people see (or hear, through a screen reader).
TEXT_ATTRIBUTES = {"title", "placeholder", "aria-label", "alt", "hx-confirm", "data-error-text"}
LETTER = re.compile(r"[^\W\d_]")
HOLE = "\x00"


def templates() -> list[Path]:
    found = [p for d in TEMPLATE_DIRS for p in sorted(d.rglob("*.html"))]
    assert len(found) > 15
    return found


def without_translated_parts(env: Environment, source: str) -> str:
    """The template's markup with every expression, tag and ``{% trans %}`` body replaced
    by a hole: what is left is text written into the template as it is."""
    out: list[str] = []
    depth = 0
    in_block: list[str] | None = None
    in_var = False
    for _, kind, value in env.lex(source):
        if kind == "block_begin":
            in_block = []
        elif kind == "block_end":
            name = in_block[0] if in_block else ""
            depth += {"trans": 1, "endtrans": -1}.get(name, 0)
            in_block = None  # a tag leaves nothing (it may sit inside an HTML tag)
        elif in_block is not None:
            if kind == "name":
                in_block.append(value)
        elif kind == "variable_begin":
            in_var = True
        elif kind == "variable_end":
            in_var = False
            out.append(HOLE)
        elif in_var or kind.startswith("comment") or kind.startswith("linecomment"):
            continue
        elif kind == "data":
            out.append(HOLE if depth else value)
    return "".join(out)


class _Visible(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        for name, value in attrs:
            if name in TEXT_ATTRIBUTES and value and LETTER.search(value.replace(HOLE, "")):
                self.found.append(f'{tag}[{name}="{value}"]')

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)

    def handle_data(self, data: str) -> None:
        text = data.replace(HOLE, "").strip()
        if not self._skip and LETTER.search(text):
            self.found.append(text)


def untranslated_text(env: Environment, source: str) -> list[str]:
    parser = _Visible()
    parser.feed(without_translated_parts(env, source))
    return parser.found


@pytest.mark.parametrize("path", templates(), ids=lambda p: str(p.relative_to(ROOT)))
def test_template_has_no_text_outside_translation_calls(path: Path) -> None:
    env = Environment(extensions=["jinja2.ext.i18n"])
    found = untranslated_text(env, path.read_text(encoding="utf-8"))
    assert found == [], f"{path.relative_to(ROOT)}: wrap in _() or {{% trans %}}: {found}"


def test_the_scanner_finds_what_it_should() -> None:
    env = Environment(extensions=["jinja2.ext.i18n"])
    bad = '<p>Hello {{ name }}</p><a title="Open" href="{{ u }}">{{ _("ok") }}</a><b>订单</b>'
    assert untranslated_text(env, bad) == ["Hello", 'a[title="Open"]', "订单"]
    good = (
        '<p>{{ _("Hello") }} · {{ n }}</p>{% trans n=1 %}{{ n }} rows{% endtrans %}'
        '<a aria-label="{{ _(\'Open\') }}" href="/x">✎</a><script>var a = "b";</script>'
        "{# a comment #}"
    )
    assert untranslated_text(env, good) == []


@pytest.mark.parametrize("domain", [kernel_domain(), *plugin_domains()], ids=lambda d: d.name)
def test_catalog_has_every_message_translated(domain) -> None:
    """Extraction from the source, compared with the committed catalogs: a new string that
    nobody translated, a fuzzy entry or a placeholder that does not match fails here.
    (Update them with ``python -m erp_core.i18n_tools update``.)"""
    assert problems(domain) == []


def test_plugin_catalogs_come_after_the_kernels() -> None:
    domains = {d.name: d.locale_dir for d in plugin_domains()}
    assert "default" in domains  # the default theme ships a catalog of its own
    catalogs = Catalogs(domains.items())
    zh = catalogs.for_locale("zh_CN")
    assert zh.gettext("Menu") == "菜单"  # only in the theme's catalog
    assert zh.gettext("Users") == "用户"  # the kernel's
    assert zh.dgettext("default", "Menu") == "菜单"
    assert zh.dgettext("nope", "Menu") == "Menu"
    assert catalogs.for_locale("en").gettext("Users") == "Users"
    assert catalogs.for_locale("xx").locale == "zh_CN"  # unknown: the default language


def test_messages_stay_english_for_the_api_and_translate_for_people() -> None:
    zh = Catalogs().for_locale("zh_CN")
    m = Message("role %(name)s already exists", name="'clerk'")
    assert str(m) == "role 'clerk' already exists"
    assert translate(m, zh) == "角色 'clerk' 已存在"
    assert translate(ValueError(m), zh) == "角色 'clerk' 已存在"
    assert translate("not in any catalog", zh) == "not in any catalog"
