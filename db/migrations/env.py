"""Alembic environment: run only programmatically, on the connection volmigrate passes."""

from alembic import context

from volmigrate.db import models
from volmigrate.db.migrations import VERSION_TABLE

OUR_TABLES = {"volumes", "migrations"}


def _ours(obj, name, type_, reflected, compare_to) -> bool:
    # TaskFlow's tables share the database; never compare or touch them.
    return type_ != "table" or name in OUR_TABLES


context.configure(connection=context.config.attributes["connection"],
                  target_metadata=models.metadata, version_table=VERSION_TABLE,
                  render_as_batch=True, include_object=_ours)
with context.begin_transaction():
    context.run_migrations()
