"""Message extraction and catalog upkeep (Babel), for the kernel and for plugins.

    python -m erp_core.i18n_tools update   # extract, then merge into every .po (zh_CN, en)
    python -m erp_core.i18n_tools check    # fail if a catalog lacks or fuzzes a message

A *domain* is the kernel (``erp``: ``erp_core``'s Python code and templates, plus the titles of
the kernel's permissions and default roles) or one plugin/theme (its name: the Python package
and templates folder beside its manifest). Its catalogs are ``<locale dir>/<locale>/LC_MESSAGES/
<domain>.po``. Source strings are English; the ``en`` catalog keeps them as they are.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

from erp_core.i18n import KERNEL_DOMAIN, KERNEL_LOCALE_DIR, LOCALES

KEYWORDS = {
    "_": None,
    "gettext": None,
    "ngettext": (1, 2),
    "pgettext": ((1, "c"), 2),
    "N_": None,
    "Message": None,
}
JINJA_OPTIONS = {"trimmed": "true", "extensions": "jinja2.ext.i18n"}


@dataclass(frozen=True, slots=True)
class Domain:
    name: str
    package_dir: Path
    locale_dir: Path
    #: Extra msgids that come from data rather than source code (permission titles ...).
    extra: tuple[str, ...] = ()


def kernel_domain() -> Domain:
    from erp_core.auth.permissions import DEFAULT_ROLES, KERNEL_PERMISSIONS

    extra = [p.title for p in KERNEL_PERMISSIONS]
    extra += [title for title, _ in DEFAULT_ROLES.values()]
    return Domain(KERNEL_DOMAIN, Path(__file__).parent, KERNEL_LOCALE_DIR, tuple(extra))


def plugin_domains() -> list[Domain]:
    """Installed plugins, connectors and themes that ship catalogs (``translations``)."""
    from erp_core.plugins.registry import PluginRegistry
    from erp_core.web.templating import resource_path

    out = []
    for m in PluginRegistry.discover().manifests():
        if m.translations:
            package = m.translations.partition(":")[0]
            pkg_dir = resource_path(f"{package}:")
            extra = (m.title, m.description, *(p.title for p in m.permissions))
            extra += tuple(mi.title for mi in m.menus)
            out.append(Domain(m.name, pkg_dir, resource_path(m.translations), extra))
    return out


def _method_map(domain: Domain) -> list[tuple[str, str]]:
    return [
        ("**/tests/**", "ignore"),
        ("**/locale/**", "ignore"),
        ("**.py", "python"),
        ("**/templates/**.html", "jinja2"),
    ]


def extract(domain: Domain) -> Catalog:
    """Every translatable message of ``domain``, as a template catalog."""
    catalog = Catalog(project=domain.name, charset="utf-8")
    found: Iterator[tuple[str, int, object, list[str], object]] = extract_from_dir(
        str(domain.package_dir),
        method_map=_method_map(domain),
        options_map={"**/templates/**.html": JINJA_OPTIONS},
        keywords=KEYWORDS,
        strip_comment_tags=True,
    )
    for filename, lineno, message, comments, context in found:
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)  # type: ignore[arg-type]
    for msgid in domain.extra:
        if msgid and msgid not in catalog:
            catalog.add(msgid, None, [("(data)", 0)])
    return catalog


def po_path(domain: Domain, locale: str) -> Path:
    return domain.locale_dir / locale / "LC_MESSAGES" / f"{domain.name}.po"


def update(domain: Domain, locales: Iterable[str] = LOCALES) -> list[Path]:
    """Merge the extracted messages into each locale's catalog (new ones untranslated,
    vanished ones dropped); returns the files written."""
    template = extract(domain)
    written = []
    for locale in locales:
        path = po_path(domain, locale)
        if path.exists():
            with path.open("rb") as fh:
                catalog = read_po(fh, locale=locale)
        else:
            catalog = Catalog(locale=locale, project=domain.name, charset="utf-8")
        catalog.update(template, no_fuzzy_matching=True)
        catalog.obsolete.clear()
        if locale == "en":  # the source language: every message stands for itself
            for msg in catalog:
                if msg.id and not msg.string:
                    msg.string = msg.id
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            write_po(fh, catalog, width=100, sort_output=True, include_lineno=False)
        written.append(path)
    return written


def problems(domain: Domain, locales: Iterable[str] = LOCALES) -> list[str]:
    """What is missing or wrong in ``domain``'s catalogs, compared with its source."""
    template = extract(domain)
    out: list[str] = []
    for locale in locales:
        path = po_path(domain, locale)
        if not path.exists():
            out.append(f"{path}: missing")
            continue
        with path.open("rb") as fh:
            catalog = read_po(fh, locale=locale)
        for msg in template:
            if not msg.id:
                continue
            have = catalog.get(msg.id, msg.context)
            if have is None:
                out.append(f"{path}: no entry for {msg.id!r}")
            elif have.fuzzy:
                out.append(f"{path}: fuzzy entry for {msg.id!r}")
            elif not (have.string if isinstance(have.string, str) else all(have.string or ())):
                out.append(f"{path}: untranslated {msg.id!r}")
        for msg, errors in catalog.check():
            for err in errors:
                out.append(f"{path}: {msg.id!r}: {err}")
    return out


def main(argv: list[str]) -> int:
    domains = [kernel_domain(), *plugin_domains()]
    if argv[:1] == ["update"]:
        for d in domains:
            for path in update(d):
                print(f"wrote {path}")
        return 0
    if argv[:1] == ["check"]:
        found = [line for d in domains for line in problems(d)]
        for line in found:
            print(line)
        return 1 if found else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
