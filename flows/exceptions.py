"""Errors raised inside migration flows; their text becomes the migration's error reason.

The data mover raises its own errors (:mod:`volmigrate.flows.datamover.errors`);
the tasks that call it raise these in their place, with the same text, so
that a failed migration's reason reads as the data mover wrote it.
"""


class MigrationFailed(Exception):
    """A step of a migration failed; the message says which and why."""


class MigrationAborted(MigrationFailed):
    """An attach or detach (or an administrator) stopped the migration."""
