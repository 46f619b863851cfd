from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from erp_core.db.base import Base, BigId, TenantScoped


class AlphaNote(TenantScoped, Base):
    __tablename__ = "test_alpha_note"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    text: Mapped[str] = mapped_column(String(200), nullable=False)
    tags: Mapped[str] = mapped_column(String(200), nullable=False, default="")
