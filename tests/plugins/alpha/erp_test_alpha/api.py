from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from erp_core.auth.deps import DbSession, Hooks, require
from erp_test_alpha.models import AlphaNote
from erp_test_alpha.service import create_note

router = APIRouter(tags=["test_alpha"])


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=200)


class NoteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    text: str
    tags: str


@router.get(
    "/notes", response_model=list[NoteOut], dependencies=[Depends(require("test_alpha.note.read"))]
)
def list_notes(db: DbSession) -> list[AlphaNote]:
    return list(db.scalars(select(AlphaNote).order_by(AlphaNote.id)))


@router.get(
    "/notes/{note_id}",
    response_model=NoteOut,
    dependencies=[Depends(require("test_alpha.note.read"))],
)
def get_note(note_id: int, db: DbSession) -> AlphaNote:
    note = db.get(AlphaNote, note_id)
    if note is None:
        raise HTTPException(404, f"no note {note_id}")
    return note


@router.post(
    "/notes",
    response_model=NoteOut,
    status_code=201,
    dependencies=[Depends(require("test_alpha.note.write"))],
)
def post_note(body: NoteIn, db: DbSession, hooks: Hooks) -> AlphaNote:
    note = create_note(db, hooks, body.text)
    db.commit()
    return note


@router.delete(
    "/notes/{note_id}", status_code=204, dependencies=[Depends(require("test_alpha.note.write"))]
)
def delete_note(note_id: int, db: DbSession) -> None:
    note = db.get(AlphaNote, note_id)
    if note is None:
        raise HTTPException(404, f"no note {note_id}")
    db.delete(note)
    db.commit()
