"""Alembic environment: kefu runs migrations programmatically (kefu.serve.db.migrate) with an open connection."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from kefu.serve.tables import Base

config = context.config
connection = config.attributes.get("connection")


def _run(conn: Connection) -> None:
    # render_as_batch lets later migrations ALTER tables on SQLite too.
    context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:  # plain `alembic -x url=... upgrade head`
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    with create_engine(str(url)).connect() as conn:
        _run(conn)
