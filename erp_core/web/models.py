"""What the web UI remembers for a user: the columns each list shows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from erp_core.db.base import Base, BigId, TenantScoped, utcnow


class ListPreference(TenantScoped, Base):
    """The columns a user chose for one list (``list_name``: the list's path, e.g.
    ``/inventory/moves``) in one tenant."""

    __tablename__ = "core_list_pref"
    __table_args__ = (UniqueConstraint("tenant_id", "user_id", "list_name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("core_user.id", ondelete="CASCADE"), nullable=False
    )
    list_name: Mapped[str] = mapped_column(String(100), nullable=False)
    #: The chosen column keys, comma-separated, in the list's own order.
    columns: Mapped[str] = mapped_column(String(2000), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(nullable=False, default=utcnow)
