from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import select

from erp_core.auth.deps import DbSession, require
from erp_core.web.listing import Column, Edit, ListView, mount_list
from erp_core.web.templating import render
from erp_test_alpha.models import AlphaNote

router = APIRouter(include_in_schema=False)


@router.get("", dependencies=[Depends(require("test_alpha.note.read"))])
def notes_page(request: Request, db: DbSession) -> Response:
    notes = list(db.scalars(select(AlphaNote).order_by(AlphaNote.id)))
    return render(request, "alpha/notes.html", {"notes": notes}, block="notes")


def _retag(db: Any, principal: Any, note_id: int, value: str) -> None:
    if len(value) > 20:
        raise ValueError("tags are at most 20 characters")
    note = db.get(AlphaNote, note_id)
    note.tags = value


# The list component as a plugin uses it: mounted under the plugin's prefix (/alpha/list).
NOTES = mount_list(
    router,
    "/list",
    ListView(
        name="alpha_notes",
        title="Alpha notes",
        query=select(AlphaNote),
        id_expr=AlphaNote.id,
        columns=(
            Column(key="text", title="Text", expr=AlphaNote.text, sortable=True),
            Column(
                key="tags",
                title="Tags",
                expr=AlphaNote.tags,
                edit=Edit(save=_retag, permission="test_alpha.note.write"),
            ),
        ),
        search=(AlphaNote.text,),
        sort="text",
        page_size=5,
    ),
    read="test_alpha.note.read",
)
