"""SQLAlchemy 2 tables: volumes and the history of their migrations.

SQLAlchemy Core tables, not ORM classes: nothing above db/ holds a row object
(db.api returns plain dicts), and importing ``sqlalchemy.orm`` cost about
0.2 s of every command's start-up, `volmigrate list` included.
"""

from __future__ import annotations

import datetime

from sqlalchemy import (BigInteger, Boolean, Column, DateTime, Float, Integer, MetaData, String,
                        Table, Text)

# Volume status values (DESIGN.md "Domain").
STATUS_CREATING = "creating"
STATUS_AVAILABLE = "available"
STATUS_IN_USE = "in-use"
STATUS_MAINTENANCE = "maintenance"
STATUS_DELETING = "deleting"
STATUS_ERROR = "error"
# A retype that needs a migration holds the volume in this status (Cinder's).
STATUS_RETYPING = "retyping"

# migration_status values; None means "never migrated".
MIGRATION_STARTING = "starting"
MIGRATION_MIGRATING = "migrating"
MIGRATION_COMPLETING = "completing"
MIGRATION_SUCCESS = "success"
MIGRATION_ERROR = "error"
MIGRATION_RUNNING_STATES = (MIGRATION_STARTING, MIGRATION_MIGRATING, MIGRATION_COMPLETING)
MIGRATION_STATUSES = MIGRATION_RUNNING_STATES + (MIGRATION_SUCCESS, MIGRATION_ERROR)

ATTACH_DETACHED = "detached"
ATTACH_ATTACHED = "attached"

# Migration row states.
STATE_PENDING = "pending"    # accepted, waiting for a worker
STATE_RUNNING = "running"
STATES_UNFINISHED = (STATE_PENDING, STATE_RUNNING)
STATE_SUCCESS = "success"
STATE_ERROR = "error"

# Names of the hidden destination volumes a generic migration creates.
TARGET_PREFIX = "target:"


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


metadata = MetaData()

# Every column says whether it may be NULL: Core's default (it may) is the
# opposite of what the former ORM models implied for most columns. Defaults are
# computed in Python, as the ORM's were. The tables are named `*_table` apart
# from the package volmigrate.db.migrations (the alembic revisions).
volumes_table = Table(
    "volumes", metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(255), nullable=True),
    Column("size", BigInteger, nullable=False),
    Column("host", String(255), nullable=False, index=True),
    Column("status", String(32), nullable=False),
    Column("migration_status", String(32), nullable=True, index=True),
    # The backend object holding the data after a migration swapped it in;
    # None while the data still lives in the object named after `id`.
    Column("name_id", String(36), nullable=True),
    Column("project_id", String(255), nullable=True, index=True),
    Column("attach_status", String(32), nullable=False, default=ATTACH_DETACHED),
    Column("provider_location", Text, nullable=True),
    # The identity of the backend object holding the data (JSON of what the
    # driver's volume_identity() said when it was created), as Cinder's
    # provider_id: before the source is deleted, the destination must still
    # be that very object.
    Column("provider_id", Text, nullable=True),
    Column("created_at", DateTime, nullable=False, default=utcnow),
    Column("updated_at", DateTime, nullable=True, onupdate=utcnow),
    # What the Block Storage API shows and keeps (revision 0005).
    Column("volume_type_id", String(36), nullable=True),
    Column("user_id", String(255), nullable=True),
    Column("description", String(255), nullable=True),
    Column("volume_metadata", Text, nullable=True),  # JSON object of strings
    Column("availability_zone", String(255), nullable=True),
    # The one attachment a volume may have (no multiattach).
    Column("attachment_id", String(36), nullable=True),
    Column("instance_uuid", String(36), nullable=True),
    Column("attached_host", String(255), nullable=True),
    Column("mountpoint", String(255), nullable=True),
    Column("attach_mode", String(8), nullable=True),
    Column("attached_at", DateTime, nullable=True),
)

volume_types_table = Table(
    "volume_types", metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("description", String(255), nullable=True),
    Column("is_public", Boolean, nullable=False, default=True),
    Column("extra_specs", Text, nullable=False, default="{}"),  # JSON object of strings
    # Cinder's encryption type of the volume type (JSON), kept and shown only:
    # volmigrate refuses to create volumes of an encrypted type.
    Column("encryption", Text, nullable=True),
    Column("created_at", DateTime, nullable=False, default=utcnow),
    Column("updated_at", DateTime, nullable=True, onupdate=utcnow),
)

migrations_table = Table(
    "migrations", metadata,
    Column("id", String(36), primary_key=True),
    # No foreign key: the history outlives a deleted volume.
    Column("volume_id", String(36), nullable=False, index=True),
    Column("source_host", String(255), nullable=False),
    Column("dest_host", String(255), nullable=False),
    Column("lock_volume", Boolean, nullable=False, default=False),
    Column("force_host_copy", Boolean, nullable=False, default=False),
    Column("case", String(32), nullable=False),
    Column("state", String(32), nullable=False, index=True),
    # Status of the volume when the request was accepted, restored at the end.
    Column("previous_status", String(32), nullable=False),
    Column("dest_volume_id", String(36), nullable=True),
    Column("bytes_total", BigInteger, nullable=False, default=0),
    # Bytes known durable on the destination: where a resumed copy starts.
    Column("bytes_durable", BigInteger, nullable=False, default=0),
    # How far the copy had got at the last progress report (its "bytes copied";
    # may run ahead of bytes_durable).
    Column("progress_bytes", BigInteger, nullable=False, default=0),
    Column("percent", Float, nullable=False, default=0.0),
    Column("progress_at", DateTime, nullable=True),
    Column("progress_reports", Integer, nullable=False, default=0),
    Column("error", Text, nullable=True),
    # Set by an attach/detach (from any process) to stop an unlocked migration.
    Column("abort_reason", Text, nullable=True),
    Column("flow_uuid", String(36), nullable=True),
    # The service process running the flow ("hostname/boot_id/pid/start_ticks"),
    # and when it last said it was alive; recovery claims flows of dead owners.
    Column("owner", String(255), nullable=True),
    Column("heartbeat_at", DateTime, nullable=True),
    Column("created_at", DateTime, nullable=False, default=utcnow),
    Column("started_at", DateTime, nullable=True),
    Column("finished_at", DateTime, nullable=True),
    # Set by a retype: the volume takes this type when the migration succeeds.
    Column("new_type_id", String(36), nullable=True),
)
