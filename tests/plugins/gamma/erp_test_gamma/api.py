from fastapi import APIRouter, Depends, HTTPException
from sqlalchemy import select

from erp_core.auth.deps import DbSession, require
from erp_test_gamma.models import GammaItem

router = APIRouter(tags=["test_gamma"])


@router.get("/items", dependencies=[Depends(require("test_gamma.item.read"))])
def items(db: DbSession) -> list[dict[str, object]]:
    return [
        {"id": i.id, "name": i.name} for i in db.scalars(select(GammaItem).order_by(GammaItem.id))
    ]


@router.get("/items/{item_id}", dependencies=[Depends(require("test_gamma.item.read"))])
def item(item_id: int, db: DbSession) -> dict[str, object]:
    i = db.get(GammaItem, item_id)
    if i is None:
        raise HTTPException(404, f"no item {item_id}")
    return {"id": i.id, "name": i.name}
