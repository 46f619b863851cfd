"""Kernel permissions, default roles, and permission-pattern matching.

A role holds patterns: ``*`` (everything), ``core.*``, ``*.read``, an exact name, and negations
such as ``!core.*`` that take precedence over every grant.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

from erp_core.plugins.manifest import Permission

KERNEL_PERMISSIONS: tuple[Permission, ...] = (
    Permission(name="core.tenant.read", title="View tenant settings"),
    Permission(name="core.tenant.manage", title="Change tenant settings"),
    Permission(name="core.users.read", title="View users"),
    Permission(name="core.users.manage", title="Add, change and remove users"),
    Permission(name="core.roles.read", title="View roles and permissions"),
    Permission(name="core.roles.manage", title="Change roles and permissions"),
    Permission(name="core.tokens.read", title="View API tokens"),
    Permission(name="core.tokens.manage", title="Create and revoke API tokens"),
    Permission(name="core.plugins.read", title="View installed plugins"),
    Permission(name="core.plugins.manage", title="Enable and disable plugins"),
    Permission(name="core.audit.read", title="View the audit log"),
    Permission(name="core.ledger.read", title="View accounts, entries and balances"),
    Permission(name="core.ledger.post", title="Post and reverse journal entries"),
    Permission(
        name="core.ledger.manage",
        title="Manage the chart of accounts, account mapping and period locks",
    ),
    Permission(name="core.inventory.read", title="View SKUs, warehouses, stock and moves"),
    Permission(name="core.inventory.write", title="Receive, reserve, move and transfer stock"),
    Permission(name="core.inventory.manage", title="Manage SKUs, warehouses and locations"),
    Permission(name="core.inventory.count", title="Apply inventory counts and scrap stock"),
    Permission(name="core.channels.read", title="View channel accounts (never their secrets)"),
    Permission(
        name="core.channels.manage",
        title="Add, change and deactivate channel accounts and enter their credentials",
    ),
)

#: Roles every new tenant starts with: name -> (title, patterns).
DEFAULT_ROLES: dict[str, tuple[str, list[str]]] = {
    "owner": ("Owner", ["*"]),
    "admin": ("Administrator", ["*", "!core.tenant.manage"]),
    # every plugin permission; of the kernel's, reading tenant settings and plugins, and the
    # ledger's reading and posting (not its chart, mapping and period locks)
    "staff": (
        "Staff",
        [
            "*",
            "!core.users.*",
            "!core.roles.*",
            "!core.tokens.*",
            "!core.audit.*",
            "!core.tenant.manage",
            "!core.plugins.manage",
            "!core.ledger.manage",
            "!core.channels.manage",
        ],
    ),
    "viewer": ("Viewer", ["*.read"]),
}


def valid_pattern(pattern: str) -> bool:
    p = pattern[1:] if pattern.startswith("!") else pattern
    return bool(p) and all(c.isalnum() or c in "._*" for c in p)


def grants(patterns: Iterable[str], permission: str) -> bool:
    """Whether ``patterns`` grant ``permission`` (negations win)."""
    allowed = False
    for p in patterns:
        if p.startswith("!"):
            if fnmatchcase(permission, p[1:]):
                return False
        elif fnmatchcase(permission, p):
            allowed = True
    return allowed


def effective(patterns: Iterable[str], known: Iterable[str]) -> frozenset[str]:
    """The concrete permissions among ``known`` that ``patterns`` grant."""
    pats = list(patterns)
    return frozenset(k for k in known if grants(pats, k))
