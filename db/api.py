"""Queries on volumes and migrations.

Every state change that races with another request is a conditional UPDATE
(`WHERE id = ? AND <expected state>`) whose row count says who won, never a
read followed by a write.
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from volmigrate.db import models


# SQLAlchemy 2.1 sometimes makes the annotated class of an ORM UPDATE without its
# cache flag when threads build one at once (seen once in 30 processes' heartbeats).
# The statement runs all the same, uncached; the warning only reached a user's
# terminal as noise.
warnings.filterwarnings("ignore", message=r"Class Annotated\w+ will not make use of SQL "
                                          r"compilation caching", category=sa.exc.SAWarning)


class Not:
    """An expectation that a column is *not* one of the given values."""

    def __init__(self, *values: Any) -> None:
        self.values = values


def _to_dict(row: models.Base | None) -> dict | None:
    if row is None:
        return None
    return {c.key: getattr(row, c.key) for c in sa.inspect(row).mapper.column_attrs}


def _condition(column, expected: Any):
    if isinstance(expected, Not):
        values = [v for v in expected.values if v is not None]
        cond = column.not_in(values) if values else sa.true()
        if None in expected.values:
            return sa.and_(column.is_not(None), cond)
        return sa.or_(column.is_(None), cond)
    if isinstance(expected, (tuple, list, set, frozenset)):
        values = [v for v in expected if v is not None]
        cond = column.in_(values) if values else sa.false()
        return sa.or_(column.is_(None), cond) if None in expected else cond
    if expected is None:
        return column.is_(None)
    return column == expected


class Database:
    """The service's data access; thread-safe (a session per call)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def _session(self) -> Session:
        return self._sessions()

    # -- generic helpers -------------------------------------------------
    def _conditional_update(
        self, session: Session, model, row_id: str, values: Mapping[str, Any],
        expected: Mapping[str, Any] | None = None,
    ) -> bool:
        conds = [model.id == row_id]
        for key, exp in (expected or {}).items():
            conds.append(_condition(getattr(model, key), exp))
        values = dict(values)
        if hasattr(model, "updated_at"):
            values.setdefault("updated_at", models.utcnow())
        result = session.execute(sa.update(model).where(*conds).values(**values))
        return result.rowcount == 1

    # -- volumes -----------------------------------------------------------
    def create_volume(self, values: Mapping[str, Any]) -> dict:
        values = dict(values)
        values.setdefault("id", str(uuid.uuid4()))
        values.setdefault("attach_status", models.ATTACH_DETACHED)
        with self._session() as s, s.begin():
            row = models.Volume(**values)
            s.add(row)
            s.flush()
            return _to_dict(row)

    def get_volume(self, volume_id: str) -> dict | None:
        with self._session() as s:
            return _to_dict(s.get(models.Volume, volume_id))

    def list_volumes(
        self, *, migration_status: str | None = None, hidden_project: str | None = None,
        include_hidden: bool = False,
    ) -> list[dict]:
        query = sa.select(models.Volume).order_by(models.Volume.created_at, models.Volume.id)
        if migration_status is not None:
            if migration_status.lower() == "none":
                query = query.where(models.Volume.migration_status.is_(None))
            else:
                query = query.where(models.Volume.migration_status == migration_status)
        if not include_hidden and hidden_project is not None:
            query = query.where(
                sa.or_(models.Volume.project_id.is_(None),
                       models.Volume.project_id != hidden_project))
        with self._session() as s:
            return [_to_dict(r) for r in s.scalars(query)]

    def update_volume(
        self, volume_id: str, values: Mapping[str, Any],
        expected: Mapping[str, Any] | None = None,
    ) -> bool:
        """Update one volume if it is in the `expected` state; True if it was."""
        with self._session() as s, s.begin():
            return self._conditional_update(s, models.Volume, volume_id, values, expected)

    def delete_volume_row(self, volume_id: str) -> None:
        with self._session() as s, s.begin():
            s.execute(sa.delete(models.Volume).where(models.Volume.id == volume_id))

    def swap_volume_data(self, source_id: str, dest_id: str) -> bool:
        """Point the source volume at the destination's backend object and back.

        After the swap the source row (the id users know) holds the migrated
        data on the destination host, and the hidden destination row names the
        old source object, so deleting it later through the normal path removes
        the old data. One transaction: a crash leaves either state, never half.
        """
        with self._session() as s, s.begin():
            src = s.get(models.Volume, source_id)
            dst = s.get(models.Volume, dest_id)
            if src is None or dst is None:
                return False
            src_obj, dst_obj = src.name_id or src.id, dst.name_id or dst.id
            src.host, dst.host = dst.host, src.host
            # An object named after the row itself is recorded as None.
            src.name_id = dst_obj if dst_obj != src.id else None
            dst.name_id = src_obj if src_obj != dst.id else None
            src.provider_location, dst.provider_location = (
                dst.provider_location, src.provider_location)
            src.provider_id, dst.provider_id = dst.provider_id, src.provider_id
            src.updated_at = dst.updated_at = models.utcnow()
            return True

    # -- migrations ----------------------------------------------------------
    def accept_migration(
        self, volume_id: str, volume_values: Mapping[str, Any],
        volume_expected: Mapping[str, Any], migration_values: Mapping[str, Any],
    ) -> dict | None:
        """Atomically mark the volume and record the migration, or do nothing.

        Returns the new migration row, or None when the volume was no longer in
        the expected state (another request won the race).
        """
        with self._session() as s, s.begin():
            if not self._conditional_update(
                    s, models.Volume, volume_id, volume_values, volume_expected):
                return None
            values = dict(migration_values)
            values.setdefault("id", str(uuid.uuid4()))
            row = models.Migration(volume_id=volume_id, **values)
            s.add(row)
            s.flush()
            return _to_dict(row)

    def get_migration(self, migration_id: str) -> dict | None:
        with self._session() as s:
            return _to_dict(s.get(models.Migration, migration_id))

    def latest_migration(self, volume_id: str) -> dict | None:
        query = (sa.select(models.Migration)
                 .where(models.Migration.volume_id == volume_id)
                 .order_by(models.Migration.created_at.desc(), models.Migration.id)
                 .limit(1))
        with self._session() as s:
            return _to_dict(s.scalars(query).first())

    def list_migrations(
        self, *, volume_id: str | None = None, states: Iterable[str] | None = None,
    ) -> list[dict]:
        query = sa.select(models.Migration).order_by(models.Migration.created_at)
        if volume_id is not None:
            query = query.where(models.Migration.volume_id == volume_id)
        if states is not None:
            query = query.where(models.Migration.state.in_(list(states)))
        with self._session() as s:
            return [_to_dict(r) for r in s.scalars(query)]

    def heartbeat(self, owner: str) -> None:
        """Tell other processes the owner still runs its unfinished migrations."""
        with self._session() as s, s.begin():
            s.execute(sa.update(models.Migration)
                      .where(models.Migration.owner == owner,
                             models.Migration.state.in_(models.STATES_UNFINISHED))
                      .values(heartbeat_at=models.utcnow()))

    def update_migration(
        self, migration_id: str, values: Mapping[str, Any],
        expected: Mapping[str, Any] | None = None,
    ) -> bool:
        with self._session() as s, s.begin():
            return self._conditional_update(
                s, models.Migration, migration_id, values, expected)
