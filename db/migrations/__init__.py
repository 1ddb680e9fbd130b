"""Alembic migrations of volmigrate's own tables (TaskFlow migrates its own)."""

# TaskFlow's persistence uses alembic's default "alembic_version" in the same database.
VERSION_TABLE = "volmigrate_alembic_version"
# The schema of the databases made before these migrations existed.
FIRST_REVISION = "0001"
