"""The documentation keeps up with the code: hooks, settings, CLI commands, the quick start."""

from __future__ import annotations

import inspect
import os
import re
from pathlib import Path

import click
import pytest

from erp_core.auth.permissions import DEFAULT_ROLES, KERNEL_PERMISSIONS
from erp_core.cli import main as cli_main
from erp_core.plugins import hookspecs
from erp_core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    """The lines under ``heading`` up to the next heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    start = lines.index(heading)
    out: list[str] = []
    for line in lines[start + 1 :]:
        m = re.match(r"^(#+) ", line)
        if m and len(m.group(1)) <= level:
            break
        out.append(line)
    return "\n".join(out)


def kernel_hookspecs() -> dict[str, list[str]]:
    specs = {
        name: list(inspect.signature(fn).parameters)
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("erp_") and hasattr(fn, "erp_spec")
    }
    assert specs, "no hookspecs found in erp_core.plugins.hookspecs"
    return specs


@pytest.mark.parametrize("name", sorted(kernel_hookspecs()))
def test_hook_is_documented_with_its_arguments(name: str) -> None:
    text = read(DOCS / "hooks.md")
    heading = f"### {name}"
    assert heading in text.splitlines(), f"docs/hooks.md has no '{heading}' heading"
    body = section(text, heading)
    for arg in kernel_hookspecs()[name]:
        assert re.search(rf"\b{arg}\b", body), f"docs/hooks.md: {name} does not mention {arg!r}"


def test_hooks_doc_has_no_stale_hooks() -> None:
    documented = set(re.findall(r"^### (erp_\w+)\s*$", read(DOCS / "hooks.md"), re.M))
    stale = documented - set(kernel_hookspecs())
    assert not stale, f"docs/hooks.md documents hooks that do not exist: {sorted(stale)}"


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_setting_is_documented(field: str) -> None:
    text = read(DOCS / "operations.md")
    rows = [line for line in text.splitlines() if line.startswith("|") and f"`{field}`" in line]
    assert rows, f"docs/operations.md: no settings table row for `{field}`"
    assert any(f"ERP_{field.upper()}" in row for row in rows), (
        f"docs/operations.md: the row of `{field}` does not name ERP_{field.upper()}"
    )


def _commands(group: click.Group, prefix: str) -> list[str]:
    out: list[str] = []
    for name, cmd in group.commands.items():
        out.append(f"{prefix} {name}")
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, f"{prefix} {name}"))
    return out


@pytest.mark.parametrize("command", sorted(_commands(cli_main, "erp")))
def test_cli_command_is_documented(command: str) -> None:
    text = "\n".join(read(p) for p in sorted(DOCS.glob("*.md")))
    assert command in text, f"no page in docs/ mentions `{command}`"


def test_security_doc_lists_kernel_permissions_and_roles() -> None:
    text = read(DOCS / "security.md")
    for perm in KERNEL_PERMISSIONS:
        assert f"`{perm.name}`" in text, f"docs/security.md does not list {perm.name}"
    for role in DEFAULT_ROLES:
        assert f"`{role}`" in text, f"docs/security.md does not describe role {role}"


def test_readme_quick_start_is_two_commands() -> None:
    readme = read(ROOT / "README.md")
    quick = section(readme, "## Quick start")
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", quick, re.M | re.S)
    assert len(blocks) == 2, "the quick start must show exactly two fenced code blocks"
    commands = []
    for lang, body in blocks:
        assert lang in ("sh", "bash", "shell"), f"quick start block is {lang!r}, not shell"
        lines = [
            line.strip() for line in body.splitlines() if line.strip() and not line.startswith("#")
        ]
        assert len(lines) == 1, f"a quick start block must hold one command, got {lines}"
        commands.append(lines[0])
    assert commands == ["./scripts/run", "./scripts/test"]
    for cmd in commands:
        script = ROOT / cmd
        assert script.is_file() and os.access(script, os.X_OK), f"{cmd} is not executable"
    ci = read(ROOT / ".ci" / "run")
    assert "scripts/test" in ci, ".ci/run must run the README's test command"


def test_relative_links_resolve() -> None:
    pages = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", read(page)):
            if re.match(r"^[a-z]+:", target):
                continue
            assert (page.parent / target).exists(), f"{page.name}: broken link {target}"
