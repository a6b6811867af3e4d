"""The store: one SQLAlchemy engine (SQLite in WAL mode by default, PostgreSQL by URL) migrated by alembic."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from kefu.errors import KefuError
from kefu.serve.tables import State


def resolve_url(url: str, root: Path) -> str:
    """A relative SQLite path is relative to the config file's folder, like every other path in kefu.yaml."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        db = Path(u.database).expanduser()
        if not db.is_absolute():
            db = root / db
        db.parent.mkdir(parents=True, exist_ok=True)
        return str(u.set(database=str(db)))
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets readers run while one writer commits; FULL fsyncs every commit so a crash never loses a
    # committed audit row (WAL + NORMAL could lose the last transactions on power loss).
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str) -> Engine:
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        eng = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(eng, "connect", _sqlite_pragmas)
        return eng
    if u.get_backend_name() == "postgresql" and u.drivername == "postgresql":
        u = u.set(drivername="postgresql+psycopg")  # psycopg 3 is what kefu ships with
    return create_engine(u, pool_size=10, max_overflow=20, pool_pre_ping=True)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", "kefu.serve:migrations")
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Store:
    """Owns the engine and hands out sessions; everything that reads or writes goes through `session()`."""

    def __init__(self, url: str, root: Path = Path("."), auto_migrate: bool = True) -> None:
        self.url = resolve_url(url, root)
        try:
            self.engine = make_engine(self.url)
            if auto_migrate:
                migrate(self.engine)
        except Exception as e:
            raise KefuError(f"serve.db_url: cannot open the store {make_url(self.url)!r}: {e}") from e
        self._factory = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back on error."""
        with self._factory() as s, s.begin():
            yield s

    def get_state(self, key: str) -> str | None:
        with self.session() as s:
            return s.scalar(select(State.value).where(State.key == key))

    def dispose(self) -> None:
        self.engine.dispose()


def bump_state(s: Session, key: str) -> int:
    """Increment a counter row in the caller's transaction (the write also serialises concurrent bumpers)."""
    row = s.get(State, key, with_for_update=True)
    if row is None:
        s.add(State(key=key, value="1"))
        return 1
    row.value = str(int(row.value) + 1)
    return int(row.value)
