"""Newest-first pages by key on (created_at, id): a deep page costs what the first does."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select, tuple_

from ..extensions import db


def newest_first(query: Select, model: Any, cursor: int | None, size: int):
    """One page of `query` over `model`, newest first, after the row with id `cursor`.

    Returns the page's items and the cursor of the next page (None on the last page).
    """
    if cursor is not None:
        last = db.session.execute(
            select(model.created_at, model.id).where(model.id == cursor)
        ).first()
        if last is not None:
            query = query.where(tuple_(model.created_at, model.id) < tuple_(*last))
    rows = db.session.scalars(
        query.order_by(model.created_at.desc(), model.id.desc()).limit(size + 1)
    ).unique().all()
    items = list(rows[:size])
    return items, (items[-1].id if len(rows) > size else None)
