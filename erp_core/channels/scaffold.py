"""``erp connectors new NAME``: scaffold a connector distribution that passes the kit.

The template (``erp_core/channels/template``) is a working sales channel connector for a small
placeholder protocol, its sandbox, and a test running the conformance kit; the author then
replaces the protocol with the platform's real one, keeping the kit green.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import click

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{1,30}$")
#: Template file -> where it goes in the new distribution ({pkg}: the package folder).
FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "package/__init__.py.tmpl": "{pkg}/__init__.py",
    "package/manifest.py.tmpl": "{pkg}/manifest.py",
    "package/channel.py.tmpl": "{pkg}/channel.py",
    "package/sandbox.py.tmpl": "{pkg}/sandbox.py",
    "tests/test_conformance.py.tmpl": "tests/test_conformance.py",
}


class ScaffoldError(ValueError):
    pass


def class_prefix(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def render(text: str, name: str, title: str) -> str:
    return (
        text.replace("{{name}}", name)
        .replace("{{Name}}", class_prefix(name))
        .replace("{{title}}", title)
    )


def scaffold(name: str, target: Path, *, title: str = "") -> list[Path]:
    """Write the distribution ``erp-connector-NAME`` into ``target`` (which must not exist or
    be empty); return the files written."""
    if not NAME_RE.match(name):
        raise ScaffoldError(
            f"connector name {name!r} must be 2-31 characters: a lowercase letter, then "
            "lowercase letters, digits or underscores"
        )
    if name == "core":
        raise ScaffoldError("'core' is reserved for the kernel")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ScaffoldError(f"{target} already exists and is not an empty folder")
    title = title.strip() or class_prefix(name)
    if any(c in title for c in '"\\\n{}'):
        raise ScaffoldError("the title must not contain quotes, backslashes, braces or newlines")
    root = resources.files("erp_core.channels") / "template"
    written = []
    for src, dest in FILES.items():
        text = render((root / src).read_text(encoding="utf-8"), name, title)
        path = target / dest.format(pkg=f"erp_connector_{name}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


@click.group("connectors")
def connectors_group() -> None:
    """Connector development: scaffold a new connector."""


@connectors_group.command("new")
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write it (default: ./connectors/NAME).",
)
@click.option("--title", default="", help="Display name of the platform (default: from NAME).")
def new_command(name: str, directory: Path | None, title: str) -> None:
    """Scaffold the connector distribution erp-connector-NAME with a sandbox and the kit."""
    target = directory or Path("connectors") / name
    try:
        files = scaffold(name, target, title=title)
    except ScaffoldError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Wrote {len(files)} files to {target}:")
    for f in files:
        click.echo(f"  {f}")
    click.echo(
        "Next: install it (uv workspace member, or `pip install -e "
        f"{target}`), then run `pytest {target}/tests`."
    )
