"""Tasks of test_alpha: they write notes so that tests can see that a worker ran them."""

from sqlalchemy import select

from erp_core.tasks.base import tenant_task
from erp_test_alpha.models import AlphaNote


@tenant_task(name="test_alpha.write_note", plugin="test_alpha")
def write_note(ctx, text: str) -> int:  # type: ignore[no-untyped-def]
    """Create a note once per ``text`` (idempotent: a redelivered task changes nothing)."""
    existing = ctx.session.scalar(select(AlphaNote).where(AlphaNote.text == text))
    if existing is not None:
        return existing.id
    note = AlphaNote(text=text)
    ctx.session.add(note)
    ctx.session.flush()
    return note.id


@tenant_task(name="test_alpha.tick", plugin="test_alpha")
def tick(ctx) -> None:  # type: ignore[no-untyped-def]
    """Periodic: keep one 'tick' note per tenant and count runs in its tags."""
    note = ctx.session.scalar(select(AlphaNote).where(AlphaNote.text == "tick"))
    if note is None:
        ctx.session.add(AlphaNote(text="tick", tags="1"))
    else:
        note.tags = str(int(note.tags or "0") + 1)
