"""A local driver that fails on purpose, for the failure tests.

Everything else is the real local driver: real files, real dd.
"""

from oslo_config import cfg

from volmigrate.drivers.exceptions import DriverError
from volmigrate.drivers.local import LocalDriver, local_opts


class FaultyLocalDriver(LocalDriver):
    options = local_opts + [
        cfg.ListOpt("fail_on", default=[],
                    help="operations that raise: create, connect, delete, disconnect"),
    ]

    def _maybe_fail(self, operation: str) -> None:
        if operation in self.configuration.fail_on:
            raise DriverError(f"injected failure of {operation} on {self.backend_name}")

    def create_volume(self, volume):
        self._maybe_fail("create")
        return super().create_volume(volume)

    def connect_volume(self, volume, writable):
        self._maybe_fail("connect")
        return super().connect_volume(volume, writable)

    def delete_volume(self, volume):
        self._maybe_fail("delete")
        return super().delete_volume(volume)

    def disconnect_volume(self, volume, connection):
        self._maybe_fail("disconnect")
        return super().disconnect_volume(volume, connection)
