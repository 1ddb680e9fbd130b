"""The first schema: volumes and migrations.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "volumes",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255)),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("migration_status", sa.String(32)),
        sa.Column("name_id", sa.String(36)),
        sa.Column("project_id", sa.String(255)),
        sa.Column("attach_status", sa.String(32), nullable=False),
        sa.Column("provider_location", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime),
    )
    op.create_index("ix_volumes_host", "volumes", ["host"])
    op.create_index("ix_volumes_migration_status", "volumes", ["migration_status"])
    op.create_index("ix_volumes_project_id", "volumes", ["project_id"])
    op.create_table(
        "migrations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("volume_id", sa.String(36), nullable=False),
        sa.Column("source_host", sa.String(255), nullable=False),
        sa.Column("dest_host", sa.String(255), nullable=False),
        sa.Column("lock_volume", sa.Boolean, nullable=False),
        sa.Column("force_host_copy", sa.Boolean, nullable=False),
        sa.Column("case", sa.String(32), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("previous_status", sa.String(32), nullable=False),
        sa.Column("dest_volume_id", sa.String(36)),
        sa.Column("bytes_total", sa.BigInteger, nullable=False),
        sa.Column("bytes_copied", sa.BigInteger, nullable=False),
        sa.Column("percent", sa.Float, nullable=False),
        sa.Column("progress_at", sa.DateTime),
        sa.Column("progress_reports", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("abort_reason", sa.Text),
        sa.Column("flow_uuid", sa.String(36)),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("started_at", sa.DateTime),
        sa.Column("finished_at", sa.DateTime),
    )
    op.create_index("ix_migrations_volume_id", "migrations", ["volume_id"])
    op.create_index("ix_migrations_state", "migrations", ["state"])
