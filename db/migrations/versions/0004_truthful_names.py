"""Names that say what they hold: the durable checkpoint and the migration cases.

`migrations.bytes_copied` held the bytes known durable on the destination
(where a resumed copy starts), while notifications and the progress API use
"bytes copied" for how far the copy has got: the column becomes
`bytes_durable`. The host-copy cases were named for dd, which runs only with
`copy_method = dd`: `generic-dd` becomes `host-copy-paths` and
`generic-file-io` becomes `host-copy-file-io`.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

CASES = {"generic-dd": "host-copy-paths", "generic-file-io": "host-copy-file-io"}


def upgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.alter_column("bytes_copied", new_column_name="bytes_durable",
                           existing_type=sa.BigInteger, existing_nullable=False)
    migrations = sa.table("migrations", sa.column("case", sa.String))
    for old, new in CASES.items():
        op.execute(migrations.update().where(migrations.c.case == old).values(case=new))
