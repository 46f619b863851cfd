from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import select

from erp_core.auth.deps import DbSession, require
from erp_core.web.templating import render
from erp_test_alpha.models import AlphaNote

router = APIRouter(include_in_schema=False)


@router.get("", dependencies=[Depends(require("test_alpha.note.read"))])
def notes_page(request: Request, db: DbSession) -> Response:
    notes = list(db.scalars(select(AlphaNote).order_by(AlphaNote.id)))
    return render(request, "alpha/notes.html", {"notes": notes}, block="notes")
