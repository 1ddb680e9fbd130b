"""The commands that run migrations, `migrate` and `recover`, and `cleanup` after them.

`migrate` and `recover` wait for their migrations to end and say how they
ended. A stopping signal (SIGINT, SIGTERM, SIGHUP; see signals.py) aborts what
the command runs, which rolls it back, waits for the rollback, and exits with
128 + the signal: the volume is never left `migrating` or `maintenance` by a
stopped command. Only a migration that succeeded anyway (it ended before the
abort reached it, or it is a move inside a backend, which cannot stop half
way) exits 0.

They start the service (TaskFlow, the drivers, the notifier): this module is
imported only when one of them runs, never by the commands that only read.
"""

from __future__ import annotations

import argparse

from oslo_log import log as logging

from volmigrate.cli import output, signals
from volmigrate.engine import MigrationService
from volmigrate.engine.exceptions import InvalidVolumeState
from volmigrate.engine.leftovers import KEPT as LEFTOVER_KEPT

LOG = logging.getLogger(__name__)

# The states of a migration that has ended.
ENDED = ("success", "error")


def cmd_migrate(svc: MigrationService, args: argparse.Namespace) -> int:
    """Exit 0 when the volume moved, 1 when the request or the migration failed, and
    128 + N when signal N stopped it (the migration is then aborted and rolled back)."""
    svc.start(recover=False)
    response = None
    try:
        with signals.current().held():  # accepted and launched, or neither
            response = svc.migrate_volume(args.volume, args.dest_host,
                                          lock_volume=args.lock_volume,
                                          force_host_copy=args.force_host_copy)
        output.say(response.message)
        if not response.accepted:
            return 1
        try:
            if args.wait:
                ended = lambda: svc.get_migration(  # noqa: E731
                    response.migration_id)["state"] in ENDED
                output.follow_progress(lambda: svc.get_migration_progress(args.volume),
                                       ended, f"volume {args.volume}")
            migration = svc.wait(response.migration_id)
        except Exception as exc:
            # This command broke, not the migration: never leave it running unwatched.
            _abort_quietly(svc, response.migration_id,
                           f"aborted: the migrate command failed ({type(exc).__name__})")
            raise
    except signals.Interrupted as exc:
        if response is None or not response.accepted:
            raise
        output.say(f"{exc.name} received: aborting migration {response.migration_id} and "
                   f"rolling it back...")
        migration = _abort(svc, response.migration_id,
                           f"aborted: the migrate command received {exc.name}")
        return _report_migration(svc, args.volume, migration, failed_status=exc.exit_status)
    return _report_migration(svc, args.volume, migration, failed_status=1)


def _abort(svc, migration_id: str, reason: str) -> dict:
    """Abort a migration and wait for its rollback; return its final row.

    A migration that ended meanwhile is left as it ended; a move inside a
    backend (which cannot stop half way) is waited for.
    """
    LOG.warning("Aborting migration %s: %s", migration_id, reason)
    try:
        return svc.abort_migration(migration_id, reason)
    except InvalidVolumeState as why:
        migration = svc.get_migration(migration_id)
        if migration["state"] not in ENDED:
            output.say(f"{why}: waiting for it to end")
            migration = svc.wait(migration_id)
        return migration


def _abort_quietly(svc, migration_id: str, reason: str) -> None:
    try:
        _abort(svc, migration_id, reason)
    except Exception:  # the error being reported is the first one
        LOG.exception("Aborting migration %s failed", migration_id)


def _report_migration(svc, volume_ref: str, migration: dict, failed_status: int) -> int:
    """One line: on stdout when the volume moved, else on stderr."""
    volume = svc.get_volume(volume_ref)
    where = (f"(status {volume['status']}, migration_status "
             f"{volume['migration_status']})")
    if migration["state"] == "success":
        output.say(f"Migration {migration['id']} succeeded: volume {volume_ref} is now on "
                   f"{volume['host']} {where}.")
        return 0
    output.error(f"Migration {migration['id']} failed: {migration['error']}; volume "
                 f"{volume_ref} stays on {volume['host']} {where}.")
    return failed_status


def cmd_recover(svc: MigrationService, args: argparse.Namespace) -> int:
    """Exit 0 when every migration left by a dead process is resumed or rolled back and
    has ended; 128 + N when signal N stopped it (what it resumed is then rolled back)."""
    svc.start(recover=False)
    actions: list[dict] = []
    try:
        with signals.current().held():  # every migration claimed is also launched
            actions = svc.recover()
        if not actions:
            output.say("Nothing to recover: no migration was left without a running flow.")
            return 0
        for action in actions:
            output.say(f"Migration {action['migration_id']} of volume {action['volume_id']}: "
                       f"{action['action']} ({action['detail']})")
        for action in actions:
            if action["action"] != "resumed":
                continue
            migration = svc.wait(action["migration_id"])
            volume = svc.get_volume(migration["volume_id"])
            outcome = migration["state"] + (f": {migration['error']}"
                                            if migration["error"] else "")
            output.say(f"Migration {migration['id']} ended {outcome}; volume {volume['id']} "
                       f"is on {volume['host']} (status {volume['status']}, migration_status "
                       f"{volume['migration_status']}).")
    except signals.Interrupted as exc:
        return _abort_recovered(svc, actions, exc)
    return 0


def _abort_recovered(svc, actions: list[dict], exc: signals.Interrupted) -> int:
    """Roll back what `recover` resumed and has not finished; one line says what ended."""
    reason = f"aborted: the recover command received {exc.name}"
    ended = []
    for action in actions:
        if action["action"] != "resumed":
            continue
        migration = svc.get_migration(action["migration_id"])
        if migration["state"] not in ENDED:
            output.say(f"{exc.name} received: aborting migration {migration['id']} and "
                       f"rolling it back...")
            migration = _abort(svc, migration["id"], reason)
        ended.append(f"migration {migration['id']} of volume {migration['volume_id']} "
                     f"ended {migration['state']}"
                     + (f" ({migration['error']})" if migration["error"] else ""))
    output.error(f"volmigrate: recover stopped by {exc.name}"
                 + (": " + "; ".join(ended) if ended else ""))
    return exc.exit_status


def cmd_cleanup(svc: MigrationService, args: argparse.Namespace) -> int:
    """Only the leftovers part of `recover`: one line per leftover, non-zero if some stay."""
    svc.start(recover=False)
    with signals.current().held():  # a claimed leftover is deleted, or given back
        results = svc.clean_up_leftovers()
    if not results:
        output.say("Nothing to clean up: no migration left data behind.")
        return 0
    for result in results:
        line = (f"Migration {result['migration_id']} of volume {result['volume_id']}: "
                f"{result['action']} ({result['detail']})")
        (output.error if result["action"] == LEFTOVER_KEPT else output.say)(line)
    return 1 if any(r["action"] == LEFTOVER_KEPT for r in results) else 0


def cmd_cancel(svc: MigrationService, args: argparse.Namespace) -> int:
    """Cancel the volume's running migration, wherever it runs, and wait for its rollback.

    Exit 0 when it ended rolled back, 1 when there was nothing to cancel or it
    could not be (a move inside a backend), or it succeeded before the cancel
    reached it.
    """
    migration = svc.cancel_migration(args.volume)
    output.say(f"Cancelling migration {migration['id']} of volume {args.volume}")
    ended = svc.wait(migration["id"])
    if ended["state"] == "error":
        output.say(f"Migration {ended['id']} cancelled: {ended['error']}; volume "
                   f"{args.volume} stays on {ended['source_host']}")
        return 0
    output.error(f"volmigrate: migration {ended['id']} ended {ended['state']} before the "
                 f"cancel reached it")
    return 1
