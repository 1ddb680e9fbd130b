"""Durable copy checkpoints and flow ownership (crash recovery).

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.add_column(sa.Column("progress_bytes", sa.BigInteger, nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("owner", sa.String(255)))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime))
