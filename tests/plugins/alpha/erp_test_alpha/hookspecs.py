"""Extension point owned by test_alpha."""

from erp_core import hookspec


@hookspec
def erp_test_alpha_note_created(session, note) -> list[str]:  # type: ignore[no-untyped-def]
    """A note was created (in the creating transaction). Return tags to add to it."""
