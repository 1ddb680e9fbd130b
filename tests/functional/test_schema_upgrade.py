"""The service database is upgraded in place on start; the models match the migrations."""

import datetime

import pytest
import sqlalchemy as sa
from alembic import command as alembic_command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from vmtest import MiB, host
from volmigrate.db import migrations, models
from volmigrate.db import session as db_session

OLD_VOLUME = {"id": "11111111-1111-1111-1111-111111111111", "name": "old", "size": MiB,
              "host": "node1@a#a", "status": "available", "migration_status": "success",
              "attach_status": "detached", "created_at": datetime.datetime(2026, 1, 1)}
RENAMED = {"bytes_copied": "bytes_durable"}
OLD_MIGRATION = {"id": "22222222-2222-2222-2222-222222222222",
                 "volume_id": OLD_VOLUME["id"], "source_host": "node1@b#b",
                 "dest_host": "node1@a#a", "lock_volume": False, "force_host_copy": False,
                 "case": "generic-dd", "state": "success", "previous_status": "available",
                 "bytes_total": MiB, "bytes_copied": MiB, "percent": 100.0,
                 "progress_reports": 3, "created_at": datetime.datetime(2026, 1, 1)}


def _old_database(tmp_path, legacy: bool):
    """A database at the first schema; `legacy`: made without migrations (no version table)."""
    (tmp_path / "state").mkdir()
    engine = db_session.create_engine(f"sqlite:///{tmp_path}/state/volmigrate.sqlite")
    with engine.begin() as conn:
        alembic_command.upgrade(db_session._alembic_config(conn), migrations.FIRST_REVISION)
        if legacy:
            conn.exec_driver_sql(f"DROP TABLE {migrations.VERSION_TABLE}")
        conn.execute(sa.text("INSERT INTO volumes (id, name, size, host, status, "
                             "migration_status, attach_status, created_at) VALUES (:id, "
                             ":name, :size, :host, :status, :migration_status, "
                             ":attach_status, :created_at)"), OLD_VOLUME)
        columns = ", ".join(f'"{k}"' for k in OLD_MIGRATION)
        values = ", ".join(f":{k}" for k in OLD_MIGRATION)
        conn.execute(sa.text(f"INSERT INTO migrations ({columns}) VALUES ({values})"),
                     OLD_MIGRATION)
    engine.dispose()


@pytest.mark.parametrize("legacy", [False, True])
def test_older_database_is_upgraded_on_start(make_service, tmp_path, legacy):
    _old_database(tmp_path, legacy)
    svc = make_service()
    volume = svc.get_volume(OLD_VOLUME["id"])
    assert {k: volume[k] for k in OLD_VOLUME} == OLD_VOLUME
    migration = svc.get_migration(OLD_MIGRATION["id"])
    # Revision 0004 renamed what the names got wrong (the case named for dd,
    # the durable checkpoint named "bytes copied"); the values are kept.
    upgraded = {RENAMED.get(k, k): v for k, v in OLD_MIGRATION.items()}
    upgraded["case"] = "host-copy-paths"
    assert {k: migration[k] for k in upgraded} == upgraded
    assert migration["progress_bytes"] == 0 and migration["owner"] is None
    # Revision 0005 (the API service) adds columns that old rows have empty.
    assert volume["volume_type_id"] is None and volume["attachment_id"] is None
    assert migration["new_type_id"] is None
    with svc.db.engine.connect() as conn:
        assert conn.exec_driver_sql(
            f"SELECT version_num FROM {migrations.VERSION_TABLE}").all() == [("0005",)]
        tables = set(sa.inspect(conn).get_table_names())
    assert {"logbooks", "flowdetails", "atomdetails"} <= tables  # TaskFlow's, beside ours
    # An old finished migration is not "recovered"; a new one runs end to end.
    fresh = svc.create_volume(MiB, host("a"))
    response = svc.migrate_volume(fresh["id"], host("b"))
    assert svc.wait(response.migration_id, 60)["state"] == "success"


def test_upgrade_twice_changes_nothing(tmp_path):
    engine = db_session.create_engine(f"sqlite:///{tmp_path}/db.sqlite")
    db_session.upgrade_schema(engine)
    with engine.connect() as conn:
        first = {t: [c["name"] for c in sa.inspect(conn).get_columns(t)]
                 for t in sa.inspect(conn).get_table_names()}
    db_session.upgrade_schema(engine)
    with engine.connect() as conn:
        second = {t: [c["name"] for c in sa.inspect(conn).get_columns(t)]
                  for t in sa.inspect(conn).get_table_names()}
    assert first == second


def test_models_match_the_migrations(tmp_path):
    engine = db_session.create_engine(f"sqlite:///{tmp_path}/db.sqlite")
    db_session.upgrade_schema(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "include_object": lambda obj, name, type_, *a: (
                type_ != "table" or name in {"volumes", "migrations"})})
        diff = compare_metadata(context, models.metadata)
    assert diff == [], ("db/models.py and db/migrations disagree; add a revision: "
                        f"{diff}")
