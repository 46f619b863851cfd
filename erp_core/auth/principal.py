"""Who is making a request, for which tenant, with which permissions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    user_id: int
    email: str
    name: str
    tenant_id: int
    tenant_slug: str
    role: str
    permissions: frozenset[str]
    via: Literal["session", "token", "system"]
    token_id: int | None = None
    session_id: int | None = None
    csrf_token: str | None = None

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def label(self) -> str:
        return f"token:{self.token_id}" if self.via == "token" else self.email
