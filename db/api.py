"""Queries on volumes and migrations.

Every state change that races with another request is a conditional UPDATE
(`WHERE id = ? AND <expected state>`) whose row count says who won, never a
read followed by a write.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from volmigrate.db import models

volumes = models.volumes_table
migrations = models.migrations_table
volume_types = models.volume_types_table


class Not:
    """An expectation that a column is *not* one of the given values."""

    def __init__(self, *values: Any) -> None:
        self.values = values


def _to_dict(row: Row | None) -> dict | None:
    return None if row is None else dict(row._mapping)


def _inserted(connection: Connection, table: sa.Table, values: Mapping[str, Any]) -> dict:
    """Insert one row and return all its columns, without reading it back.

    The values given and the Python-side defaults the INSERT sent, None for
    the columns it left out: these get NULL, as the ORM's explicit NULLs gave
    them, since no such column has a server default (0002's progress_bytes has
    one, but also a Python-side default, so it is always sent).
    """
    result = connection.execute(sa.insert(table).values(**values))
    row = dict.fromkeys(table.c.keys())
    row.update(result.last_inserted_params())
    return row


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
    """The service's data access; thread-safe (a pooled connection per call)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _get(self, table: sa.Table, row_id: str) -> dict | None:
        with self.engine.connect() as c:
            return _to_dict(c.execute(sa.select(table).where(table.c.id == row_id)).first())

    def _all(self, query: sa.Select) -> list[dict]:
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(query)]

    # -- generic helpers -------------------------------------------------
    def _conditional_update(
        self, connection: Connection, table: sa.Table, row_id: str,
        values: Mapping[str, Any], expected: Mapping[str, Any] | None = None,
    ) -> bool:
        conds = [table.c.id == row_id]
        for key, exp in (expected or {}).items():
            conds.append(_condition(table.c[key], exp))
        values = dict(values)
        if "updated_at" in table.c:
            values.setdefault("updated_at", models.utcnow())
        result = connection.execute(sa.update(table).where(*conds).values(**values))
        return result.rowcount == 1

    # -- volumes -----------------------------------------------------------
    def create_volume(self, values: Mapping[str, Any]) -> dict:
        values = dict(values)
        values.setdefault("id", str(uuid.uuid4()))
        values.setdefault("attach_status", models.ATTACH_DETACHED)
        with self.engine.begin() as c:
            return _inserted(c, volumes, values)

    def get_volume(self, volume_id: str) -> dict | None:
        return self._get(volumes, volume_id)

    def list_volumes(
        self, *, migration_status: str | None = None, hidden_project: str | None = None,
        include_hidden: bool = False, project_id: str | None = None,
        status: str | None = None, host: str | None = None, name: str | None = None,
    ) -> list[dict]:
        """Volumes matching every filter given.

        `host` matches as Cinder's does, by level: ``node`` matches volumes on
        ``node``, ``node@any`` and ``node#any``; ``node@be`` matches its pools.
        """
        query = sa.select(volumes).order_by(volumes.c.created_at, volumes.c.id)
        if migration_status is not None:
            if migration_status.lower() == "none":
                query = query.where(volumes.c.migration_status.is_(None))
            else:
                query = query.where(volumes.c.migration_status == migration_status)
        if not include_hidden and hidden_project is not None:
            query = query.where(
                sa.or_(volumes.c.project_id.is_(None), volumes.c.project_id != hidden_project))
        if project_id is not None:
            query = query.where(volumes.c.project_id == project_id)
        if status is not None:
            query = query.where(volumes.c.status == status)
        if name is not None:
            query = query.where(volumes.c.name == name)
        if host is not None:
            escaped = host.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            levels = [volumes.c.host == host,
                      volumes.c.host.like(escaped + "#%", escape="\\")]
            if "@" not in host:
                levels.append(volumes.c.host.like(escaped + "@%", escape="\\"))
            query = query.where(sa.or_(*levels))
        return self._all(query)

    def update_volume(
        self, volume_id: str, values: Mapping[str, Any],
        expected: Mapping[str, Any] | None = None,
    ) -> bool:
        """Update one volume if it is in the `expected` state; True if it was."""
        with self.engine.begin() as c:
            return self._conditional_update(c, volumes, volume_id, values, expected)

    def delete_volume_row(self, volume_id: str) -> None:
        with self.engine.begin() as c:
            c.execute(sa.delete(volumes).where(volumes.c.id == volume_id))

    def swap_volume_data(self, source_id: str, dest_id: str) -> bool:
        """Point the source volume at the destination's backend object and back.

        After the swap the source row (the id users know) holds the migrated
        data on the destination host, and the hidden destination row names the
        old source object, so deleting it later through the normal path removes
        the old data. One transaction: a crash leaves either state, never half.
        """
        with self.engine.begin() as c:
            rows = {r.id: r for r in c.execute(
                sa.select(volumes).where(volumes.c.id.in_([source_id, dest_id])))}
            src, dst = rows.get(source_id), rows.get(dest_id)
            if src is None or dst is None:
                return False
            src_obj, dst_obj = src.name_id or src.id, dst.name_id or dst.id
            now = models.utcnow()
            # An object named after the row itself is recorded as None.
            for row, other, obj in ((src, dst, dst_obj), (dst, src, src_obj)):
                c.execute(sa.update(volumes).where(volumes.c.id == row.id).values(
                    host=other.host, name_id=obj if obj != row.id else None,
                    provider_location=other.provider_location,
                    provider_id=other.provider_id, updated_at=now))
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
        with self.engine.begin() as c:
            if not self._conditional_update(
                    c, volumes, volume_id, volume_values, volume_expected):
                return None
            values = dict(migration_values)
            values.setdefault("id", str(uuid.uuid4()))
            return _inserted(c, migrations, dict(volume_id=volume_id, **values))

    def get_migration(self, migration_id: str) -> dict | None:
        return self._get(migrations, migration_id)

    def latest_migration(self, volume_id: str) -> dict | None:
        query = (sa.select(migrations)
                 .where(migrations.c.volume_id == volume_id)
                 .order_by(migrations.c.created_at.desc(), migrations.c.id)
                 .limit(1))
        with self.engine.connect() as c:
            return _to_dict(c.execute(query).first())

    def list_migrations(
        self, *, volume_id: str | None = None, states: Iterable[str] | None = None,
    ) -> list[dict]:
        query = sa.select(migrations).order_by(migrations.c.created_at)
        if volume_id is not None:
            query = query.where(migrations.c.volume_id == volume_id)
        if states is not None:
            query = query.where(migrations.c.state.in_(list(states)))
        return self._all(query)

    def heartbeat(self, owner: str) -> None:
        """Tell other processes the owner still runs its unfinished migrations."""
        with self.engine.begin() as c:
            c.execute(sa.update(migrations)
                      .where(migrations.c.owner == owner,
                             migrations.c.state.in_(models.STATES_UNFINISHED))
                      .values(heartbeat_at=models.utcnow()))

    def update_migration(
        self, migration_id: str, values: Mapping[str, Any],
        expected: Mapping[str, Any] | None = None,
    ) -> bool:
        with self.engine.begin() as c:
            return self._conditional_update(c, migrations, migration_id, values, expected)

    # -- volume types ----------------------------------------------------------
    def create_volume_type(self, values: Mapping[str, Any]) -> dict | None:
        """Insert a type; None when its name is taken (names are unique)."""
        values = dict(values)
        values.setdefault("id", str(uuid.uuid4()))
        try:
            with self.engine.begin() as c:
                return _inserted(c, volume_types, values)
        except sa.exc.IntegrityError:
            return None

    def get_volume_type(self, type_id: str) -> dict | None:
        return self._get(volume_types, type_id)

    def get_volume_type_by_name(self, name: str) -> dict | None:
        with self.engine.connect() as c:
            return _to_dict(c.execute(
                sa.select(volume_types).where(volume_types.c.name == name)).first())

    def list_volume_types(self) -> list[dict]:
        return self._all(sa.select(volume_types).order_by(volume_types.c.name))

    def update_volume_type(self, type_id: str, values: Mapping[str, Any]) -> bool | None:
        """Update a type; False when it is gone, None when the new name is taken."""
        try:
            with self.engine.begin() as c:
                return self._conditional_update(c, volume_types, type_id, values)
        except sa.exc.IntegrityError:
            return None

    def delete_volume_type(self, type_id: str) -> bool | None:
        """Delete a type no volume uses; False when it is gone, None when in use.

        One transaction, so a volume created with the type meanwhile either
        sees it or keeps it.
        """
        with self.engine.begin() as c:
            used = c.execute(sa.select(sa.func.count()).select_from(volumes).where(
                sa.or_(volumes.c.volume_type_id == type_id))).scalar_one()
            pending = c.execute(sa.select(sa.func.count()).select_from(migrations).where(
                migrations.c.new_type_id == type_id,
                migrations.c.state.in_(models.STATES_UNFINISHED))).scalar_one()
            if used or pending:
                return None
            return c.execute(sa.delete(volume_types).where(
                volume_types.c.id == type_id)).rowcount == 1
