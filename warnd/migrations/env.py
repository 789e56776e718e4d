"""Alembic environment: always given a live connection by warnd.migrations (no URL in an ini file)."""

from __future__ import annotations

from alembic import context

from warnd.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `warnd db upgrade` (warnd.migrations.upgrade)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTERs go through batch mode
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
