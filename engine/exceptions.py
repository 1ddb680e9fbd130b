"""Errors of the embedding API; each message is meant for an administrator."""


class VolmigrateError(Exception):
    """Base of the errors the service raises for a request it refuses."""


class ConfigError(VolmigrateError):
    """The configuration is invalid; the service does not start."""


class InvalidInput(VolmigrateError):
    """A request's argument is invalid (a size, a host, a name)."""


class NotFound(VolmigrateError):
    """What the request names does not exist (a volume type, an attachment)."""


class VolumeNotFound(NotFound):
    def __init__(self, volume_id: str) -> None:
        super().__init__(f"volume {volume_id} not found")


class MigrationNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"no migration found for {ref}")


class InvalidVolumeState(VolmigrateError):
    """The volume's status does not allow the request now."""


class VolumeLocked(InvalidVolumeState):
    """A locked migration (status maintenance) forbids attach and detach."""


class BackendError(VolmigrateError):
    """A backend operation outside a migration failed."""
