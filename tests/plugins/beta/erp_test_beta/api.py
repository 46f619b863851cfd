from fastapi import APIRouter, Depends

from erp_core.auth.deps import require

router = APIRouter(tags=["test_beta"])


@router.get("/ping", dependencies=[Depends(require("test_beta.ping.read"))])
def ping() -> dict[str, str]:
    return {"pong": "beta"}
