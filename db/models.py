"""SQLAlchemy 2 models: volumes and the history of their migrations."""

from __future__ import annotations

import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Float, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Volume status values (DESIGN.md "Domain").
STATUS_CREATING = "creating"
STATUS_AVAILABLE = "available"
STATUS_IN_USE = "in-use"
STATUS_MAINTENANCE = "maintenance"
STATUS_DELETING = "deleting"
STATUS_ERROR = "error"

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


class Base(DeclarativeBase):
    pass


class Volume(Base):
    __tablename__ = "volumes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    host: Mapped[str] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(32))
    migration_status: Mapped[str | None] = mapped_column(String(32), index=True)
    # The backend object holding the data after a migration swapped it in;
    # None while the data still lives in the object named after `id`.
    name_id: Mapped[str | None] = mapped_column(String(36))
    project_id: Mapped[str | None] = mapped_column(String(255), index=True)
    attach_status: Mapped[str] = mapped_column(String(32), default=ATTACH_DETACHED)
    provider_location: Mapped[str | None] = mapped_column(Text)
    # The identity of the backend object holding the data (JSON of what the
    # driver's volume_identity() said when it was created), as Cinder's
    # provider_id: before the source is deleted, the destination must still
    # be that very object.
    provider_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime.datetime | None] = mapped_column(DateTime, onupdate=utcnow)


class Migration(Base):
    __tablename__ = "migrations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # No foreign key: the history outlives a deleted volume.
    volume_id: Mapped[str] = mapped_column(String(36), index=True)
    source_host: Mapped[str] = mapped_column(String(255))
    dest_host: Mapped[str] = mapped_column(String(255))
    lock_volume: Mapped[bool] = mapped_column(Boolean, default=False)
    force_host_copy: Mapped[bool] = mapped_column(Boolean, default=False)
    case: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(32), index=True)
    # Status of the volume when the request was accepted, restored at the end.
    previous_status: Mapped[str] = mapped_column(String(32))
    dest_volume_id: Mapped[str | None] = mapped_column(String(36))
    bytes_total: Mapped[int] = mapped_column(BigInteger, default=0)
    # Bytes known durable on the destination: where a resumed copy starts.
    bytes_durable: Mapped[int] = mapped_column(BigInteger, default=0)
    # How far the copy had got at the last progress report (its "bytes copied";
    # may run ahead of bytes_durable).
    progress_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    percent: Mapped[float] = mapped_column(Float, default=0.0)
    progress_at: Mapped[datetime.datetime | None] = mapped_column(DateTime)
    progress_reports: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    # Set by an attach/detach (from any process) to stop an unlocked migration.
    abort_reason: Mapped[str | None] = mapped_column(Text)
    flow_uuid: Mapped[str | None] = mapped_column(String(36))
    # The service process running the flow ("hostname/boot_id/pid/start_ticks"),
    # and when it last said it was alive; recovery claims flows of dead owners.
    owner: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[datetime.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime.datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime.datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime.datetime | None] = mapped_column(DateTime)
