"""Translations: gettext catalogs for the kernel and every plugin, and translatable messages.

Source strings (msgids) are English. The kernel's catalog is the ``erp`` domain in
``erp_core/locale/<locale>/LC_MESSAGES/erp.po``; a plugin, connector or theme ships its own
catalog, domain = its name, in the folder its manifest names in ``translations``
(``<folder>/<locale>/LC_MESSAGES/<name>.po``). The ``.po`` files are compiled in memory the first
time a locale is used, so a fresh checkout needs no build step.

Code that raises an error a person will read wraps the text in :func:`N_` (a :class:`Message`):
it is still a plain English ``str`` for the JSON API, logs and the CLI, and the web UI translates
it with :func:`translate`.
"""

from __future__ import annotations

import gettext as _gettext
import logging
from collections.abc import Iterable
from contextvars import ContextVar
from io import BytesIO
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Locales the UI offers, in the order of the language switch.
LOCALES: tuple[str, ...] = ("zh_CN", "en")
DEFAULT_LOCALE = "zh_CN"
KERNEL_DOMAIN = "erp"
KERNEL_LOCALE_DIR = Path(__file__).parent / "locale"


class Message(str):
    """An English message that remembers its msgid and parameters, so that it can be shown
    translated: ``Message("role %(name)s already exists", name="clerk")``."""

    msgid: str
    params: dict[str, Any]

    def __new__(cls, msgid: str, /, **params: Any) -> Message:
        obj = super().__new__(cls, msgid % params if params else msgid)
        obj.msgid = msgid
        obj.params = params
        return obj

    def __reduce__(self) -> Any:  # keep msgid and parameters through pickling (task errors)
        return (_rebuild, (self.msgid, self.params))


def _rebuild(msgid: str, params: dict[str, Any]) -> Message:
    return Message(msgid, **params)


#: Marks a translatable message (extracted by Babel under the ``N_`` keyword).
N_ = Message


def _compile(po_path: Path, locale: str) -> _gettext.GNUTranslations | None:
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    try:
        with po_path.open("rb") as fh:
            catalog = read_po(fh, locale=locale)
        buf = BytesIO()
        write_mo(buf, catalog)  # fuzzy entries are left out
        buf.seek(0)
        return _gettext.GNUTranslations(buf)
    except Exception:  # a broken plugin catalog must not break the UI
        log.exception("cannot read translations %s", po_path)
        return None


class Catalogs:
    """The translations of one process: the kernel's domain, then each plugin's.

    ``for_locale("zh_CN")`` is one :class:`gettext.NullTranslations` that looks a message up in
    the kernel's catalog first and then in each plugin's, in registry order (a plugin's own
    strings are found without naming its domain); ``dgettext(domain, msg)`` looks in one only.
    """

    def __init__(self, domains: Iterable[tuple[str, Path]] = ()) -> None:
        self.domains: list[tuple[str, Path]] = [(KERNEL_DOMAIN, KERNEL_LOCALE_DIR), *domains]
        self._cache: dict[str, Translations] = {}

    def for_locale(self, locale: str) -> Translations:
        if locale not in LOCALES:
            locale = DEFAULT_LOCALE
        hit = self._cache.get(locale)
        if hit is None:
            hit = self._cache[locale] = self._load(locale)
        return hit

    def _load(self, locale: str) -> Translations:
        by_domain: dict[str, _gettext.NullTranslations] = {}
        for domain, folder in self.domains:
            po = folder / locale / "LC_MESSAGES" / f"{domain}.po"
            if po.is_file():
                t = _compile(po, locale)
                if t is not None:
                    by_domain[domain] = t
        return Translations(locale, by_domain)


class Translations(_gettext.NullTranslations):
    """Kernel catalog first, then each plugin's (``gettext`` fallbacks), plus ``dgettext``."""

    def __init__(self, locale: str, by_domain: dict[str, _gettext.NullTranslations]) -> None:
        super().__init__()
        self.locale = locale
        self.by_domain = by_domain
        for t in by_domain.values():
            self.add_fallback(t)

    def dgettext(self, domain: str, message: str) -> str:
        t = self.by_domain.get(domain)
        return t.gettext(message) if t is not None else message

    def dngettext(self, domain: str, singular: str, plural: str, n: int) -> str:
        t = self.by_domain.get(domain)
        if t is None:
            return singular if n == 1 else plural
        return t.ngettext(singular, plural, n)


_NULL = Translations("en", {})
_active: ContextVar[_gettext.NullTranslations] = ContextVar("erp_translations", default=_NULL)


def activate(translations: _gettext.NullTranslations) -> Any:
    """Make ``translations`` the current ones (returns a token for :func:`deactivate`)."""
    return _active.set(translations)


def deactivate(token: Any) -> None:
    _active.reset(token)


def active() -> _gettext.NullTranslations:
    return _active.get()


def gettext(message: str) -> str:
    return _active.get().gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return _active.get().ngettext(singular, plural, n)


def pgettext(context: str, message: str) -> str:
    return _active.get().pgettext(context, message)


def npgettext(context: str, singular: str, plural: str, n: int) -> str:
    return _active.get().npgettext(context, singular, plural, n)


def translate(message: object, translations: _gettext.NullTranslations | None = None) -> str:
    """``message`` in the current (or the given) language: a :class:`Message` is translated and
    its parameters filled in (parameters that are messages are translated too); another string
    is looked up as it is; anything else is turned into a string."""
    t = translations or _active.get()
    if isinstance(message, Message):
        params = {
            k: translate(v, t) if isinstance(v, Message) else v for k, v in message.params.items()
        }
        text = t.gettext(message.msgid)
        try:
            return text % params if params else text
        except (KeyError, ValueError, TypeError):  # a bad translation: fall back to English
            log.warning("translation of %r does not fit its parameters", message.msgid)
            return str(message)
    if isinstance(message, BaseException):
        return translate(message.args[0], t) if message.args else type(message).__name__
    return t.gettext(message) if isinstance(message, str) else str(message)
