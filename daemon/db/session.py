"""One engine per process and one session per unit of work: :func:`reading` or :func:`writing`.

On SQLite (the embedded default) the database runs in WAL mode with ``synchronous=FULL``
(an acknowledged instance must survive a power cut, not only a crash) and foreign keys
on. A writing unit begins ``IMMEDIATE``: writers queue on the lock at the start of a
transaction instead of failing half-way when two of them upgrade a read lock. A reading
unit begins deferred and takes no lock at all (WAL readers never block the writer), so
a page, a report or a monitoring query can never make the SCP wait; SQLite's
``query_only`` makes any write attempted in it fail at once instead of upgrading.
On PostgreSQL a writing unit is an ordinary transaction (rows are locked as they are
claimed, see :mod:`daemon.db.queue`) and a reading unit is ``REPEATABLE READ, READ ONLY``:
one snapshot for the whole unit, as on SQLite, and never a serialisation failure.

Within a process, SQLite writing units also queue on one lock of the engine's before
their ``BEGIN IMMEDIATE``: a writer waiting on SQLite's own lock polls it, sleeping up
to 100 ms between tries, while one waiting on the process's lock starts the moment the
previous unit has committed (four associations storing at once each waited tens of
milliseconds per image). Writers in other processes still queue on SQLite's lock.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

__all__ = [
    "DatabaseError",
    "Session",
    "SessionFactory",
    "make_engine",
    "make_session_factory",
    "reading",
    "writing",
]

SessionFactory = sessionmaker[Session]
# What a failing database raises (unreachable, locked past the busy timeout, a
# constraint): the roles above catch this name and never import the driver's layer.
DatabaseError = SQLAlchemyError
_READ_ONLY = "chestaid_read_only"
# A SQLite engine's in-process write lock, and how long a writer waits on it before
# going on to SQLite's own lock (whose busy timeout then applies). Reentrant: a writing
# unit nested in another on one thread meets SQLite's lock as it did before.
_write_locks: weakref.WeakKeyDictionary[Engine, tuple[threading.RLock, float]] = (
    weakref.WeakKeyDictionary()
)


def make_engine(url: str, *, busy_timeout: float = 10.0) -> Engine:
    """Create the process's engine for ``url``.

    A SQLite database's directory is created when missing. Statement parameters are
    kept out of error messages (``hide_parameters``): an error's text is logged, and a
    study's row holds the patient's name and ID. So is PostgreSQL's detail line, which
    quotes the values of a failing row (``Failing row contains (...)``).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        engine = create_engine(url, pool_pre_ping=True, hide_parameters=True)
        event.listen(engine, "handle_error", _without_server_detail)
        return engine
    database = parsed.database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"timeout": busy_timeout, "check_same_thread": False},
        # The pysqlite driver's own transaction handling is switched off below, so
        # SQLAlchemy's BEGIN is the only one.
        isolation_level=None,
        hide_parameters=True,
    )
    _write_locks[engine] = (threading.RLock(), busy_timeout)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(_READ_ONLY, False):
            connection.exec_driver_sql("PRAGMA query_only=1")
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("PRAGMA query_only=0")
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _without_server_detail(context: ExceptionContext) -> None:
    """Drop the server's DETAIL (row and key values) from a driver error and its wrapper.

    Both are cut in place: the wrapper is raised ``from`` the driver's error, and a
    logged traceback prints the two.
    """
    original = context.original_exception
    diag = getattr(original, "diag", None)
    if diag is None or not getattr(diag, "message_detail", None):
        return
    full = str(original)
    primary = getattr(diag, "message_primary", None) or full.split("\n", 1)[0]
    original.args = (primary,)
    wrapper = context.sqlalchemy_exception
    if wrapper is not None and wrapper.args and isinstance(wrapper.args[0], str):
        wrapper.args = (wrapper.args[0].replace(full, primary), *wrapper.args[1:])


def insert_ignoring_conflicts(session: Session, table: Any, key: Any, **values: Any) -> bool:
    """``INSERT ... ON CONFLICT (key) DO NOTHING`` in the session's dialect (PostgreSQL's
    or SQLite's); True when the row was inserted, False when one with its key was there.

    On PostgreSQL an insert racing another transaction's waits for it and then does
    nothing, so a caller that then locks the row reads the one committed meanwhile.
    """
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(**values).on_conflict_do_nothing(index_elements=[key])
    return session.execute(statement.returning(key)).first() is not None


def make_session_factory(engine: Engine) -> SessionFactory:
    """The session factory bound to ``engine``; objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def writing(factory: SessionFactory) -> Iterator[Session]:
    """A unit of work that writes: commits on success, rolls back on any error.

    On SQLite it holds the write lock from its start to its end, so keep it short and
    do any network call (a webhook, a delivery) after it, never inside. Units of one
    process queue on the engine's lock first (see the module's docstring).
    """
    with ExitStack() as stack:
        lock = _write_locks.get(factory.kw.get("bind"))  # type: ignore[arg-type]
        if lock is not None and lock[0].acquire(timeout=lock[1]):
            stack.callback(lock[0].release)
        session = stack.enter_context(factory())
        stack.enter_context(session.begin())
        yield session


@contextmanager
def reading(factory: SessionFactory) -> Iterator[Session]:
    """A unit of work that only reads: one consistent snapshot, no lock, no write.

    A write attempted inside fails (SQLite: "attempt to write a readonly database";
    PostgreSQL: a read-only transaction).
    """
    with factory() as session, session.begin():
        if session.get_bind().dialect.name == "postgresql":
            # READ COMMITTED, the default, takes a new snapshot per statement: a page
            # counting rows then listing them could see a commit in between.
            session.connection(
                execution_options={
                    "isolation_level": "REPEATABLE READ",
                    "postgresql_readonly": True,
                }
            )
        else:
            session.connection(execution_options={_READ_ONLY: True})
        yield session
