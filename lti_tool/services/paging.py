"""Newest-first pages by key on (created_at, id), or another time column and id: a deep page
costs what the first does."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select, tuple_

from ..extensions import db

# The largest id any table can hold (a signed 64-bit integer): a larger cursor names no row.
MAX_ID = 2**63 - 1


def newest_first(query: Select, model: Any, cursor: int | None, size: int, by: Any = None,
                 cursor_where: Any = None):
    """One page of `query` over `model`, newest first by `by` (default `created_at`), after the
    row with id `cursor`.

    Returns the page's items and the cursor of the next page (None on the last page). A cursor
    that names no row (deleted, made up, beyond any id; with `cursor_where`, none that meets
    it) gives the first page.
    """
    by = model.created_at if by is None else by
    if cursor is not None and abs(cursor) <= MAX_ID:
        lookup = select(by, model.id).where(model.id == cursor)
        if cursor_where is not None:
            lookup = lookup.where(cursor_where)
        last = db.session.execute(lookup).first()
        if last is not None:
            query = query.where(tuple_(by, model.id) < tuple_(*last))
    rows = db.session.scalars(
        query.order_by(by.desc(), model.id.desc()).limit(size + 1)
    ).unique().all()
    return page_of(rows, size)


def page_of(rows: list, size: int) -> tuple[list, int | None]:
    """The first `size` of `size + 1` rows read, and the next page's cursor if there is one."""
    items = list(rows[:size])
    return items, (items[-1].id if len(rows) > size else None)
