"""Errors drivers raise; the engine turns them into migration error reasons."""


class DriverError(Exception):
    """A backend operation failed; the message is shown to administrators."""


class DriverConfigError(DriverError):
    """The backend's configuration cannot work on this host."""
