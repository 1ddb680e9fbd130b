"""What the Block Storage API needs: volume types, owners, descriptions, attachments, retype.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "volume_types",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("description", sa.String(255), nullable=True),
        sa.Column("is_public", sa.Boolean, nullable=False),
        sa.Column("extra_specs", sa.Text, nullable=False),
        sa.Column("encryption", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=True),
    )
    with op.batch_alter_table("volumes") as batch:
        batch.add_column(sa.Column("volume_type_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("user_id", sa.String(255), nullable=True))
        batch.add_column(sa.Column("description", sa.String(255), nullable=True))
        batch.add_column(sa.Column("volume_metadata", sa.Text, nullable=True))
        batch.add_column(sa.Column("availability_zone", sa.String(255), nullable=True))
        batch.add_column(sa.Column("attachment_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("instance_uuid", sa.String(36), nullable=True))
        batch.add_column(sa.Column("attached_host", sa.String(255), nullable=True))
        batch.add_column(sa.Column("mountpoint", sa.String(255), nullable=True))
        batch.add_column(sa.Column("attach_mode", sa.String(8), nullable=True))
        batch.add_column(sa.Column("attached_at", sa.DateTime, nullable=True))
    with op.batch_alter_table("migrations") as batch:
        batch.add_column(sa.Column("new_type_id", sa.String(36), nullable=True))
