"""Request parameters shared by kernel and plugin routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

#: The largest row id (ids are BIGINT on PostgreSQL, 64-bit INTEGER on SQLite).
MAX_ID = 2**63 - 1

#: A row id in a path: ``def get_thing(thing_id: Id)``. Anything else is a 422, never a query.
Id = Annotated[int, Path(ge=1, le=MAX_ID, description="row id")]
