"""What a tenant gets when it enables the OMS: settings and a starting set of review rules."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from erp_oms.models import ReviewRule
from erp_oms.service import settings_of

#: (kind, params, action, reason, tag): the checks every merchant wants on day one.
DEFAULT_RULES: tuple[tuple[str, dict[str, object], str, str, str], ...] = (
    ("address_invalid", {}, "hold", "Address incomplete or inconsistent", ""),
    ("blacklist", {}, "hold", "Buyer or address on the blacklist", ""),
    ("stock_short", {}, "hold", "Not enough stock", ""),
    ("duplicate", {}, "tag", "", "possible duplicate"),
    ("buyer_note", {}, "tag", "", "buyer note"),
)


def seed_defaults(session: Session) -> None:
    """Idempotent: enabling the OMS again adds nothing."""
    settings_of(session)
    if session.scalar(select(func.count()).select_from(ReviewRule)):
        return
    for pos, (kind, params, action, reason, tag) in enumerate(DEFAULT_RULES):
        session.add(
            ReviewRule(
                position=(pos + 1) * 10,
                name=reason or tag,
                kind=kind,
                params=params,
                action=action,
                reason=reason,
                tag=tag,
            )
        )
    session.flush()
