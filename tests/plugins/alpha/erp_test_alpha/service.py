from sqlalchemy.orm import Session

from erp_test_alpha.models import AlphaNote


def create_note(session: Session, hooks, text: str) -> AlphaNote:  # type: ignore[no-untyped-def]
    note = AlphaNote(text=text)
    session.add(note)
    session.flush()
    tags = [
        t
        for extra in hooks.erp_test_alpha_note_created(session=session, note=note)
        for t in (extra or [])
    ]
    note.tags = ",".join(sorted(tags))
    session.flush()
    return note
