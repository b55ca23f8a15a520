"""The database for a request: one reading or writing unit of work, as a dependency.

A handler that only reads takes ``session: Reading`` and never holds SQLite's write
lock (a page can never make the SCP wait); one that writes takes ``session: Writing``,
committed when the handler returns and before the response is sent, rolled back when
it raises (an ``HTTPException`` included). A handler with slow work (an image
analysis) or a side effect (a webhook) opens its own short unit around the database
part instead, so the lock is never held across it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request

from daemon.db.session import Session, reading, writing
from daemon.web.security import context


def _reading(request: Request) -> Iterator[Session]:
    with reading(context(request).sessions) as session:
        yield from _lent(request, session)


def _writing(request: Request) -> Iterator[Session]:
    with writing(context(request).sessions) as session:
        yield from _lent(request, session)


def _lent(request: Request, session: Session) -> Iterator[Session]:
    """The session, also lent to what the handler calls on the same request (the page's
    alert banner): one connection a request, never a second one waited for."""
    request.state.unit = session
    try:
        yield session
    finally:
        request.state.unit = None


def request_unit(request: Request) -> Session | None:
    """The request's unit of work while its handler runs, if it took one."""
    unit: Session | None = getattr(request.state, "unit", None)
    return unit


# scope="function": the unit ends when the handler returns, before the response goes out.
Reading = Annotated[Session, Depends(_reading, scope="function")]
Writing = Annotated[Session, Depends(_writing, scope="function")]
