"""Errors raised inside migration flows; their text becomes the migration's error reason."""


class MigrationFailed(Exception):
    """A step of a migration failed; the message says which and why."""


class MigrationAborted(MigrationFailed):
    """An attach or detach (or an administrator) stopped the migration."""


class CopyFailed(MigrationFailed):
    """The data copy failed (dd exited non-zero, an I/O error, ...)."""
