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
        cfg.IntOpt("flip_byte_at", default=-1,
                   help="a writable file-like connection stores this byte inverted: a "
                        "disk that corrupts one byte (local_access = stream only)"),
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

    def open_connection(self, connection, writable):
        handle = super().open_connection(connection, writable)
        if writable and self.configuration.flip_byte_at >= 0:
            return _FlippingWriter(handle, self.configuration.flip_byte_at)
        return handle

    def disconnect_volume(self, volume, connection):
        self._maybe_fail("disconnect")
        return super().disconnect_volume(volume, connection)


class _FlippingWriter:
    """A file whose writes store one byte inverted, as a failing disk would."""

    def __init__(self, handle, offset: int) -> None:
        self._handle, self._offset = handle, offset

    def write(self, data) -> int:
        data = bytearray(data)
        position = self._handle.tell()
        if position <= self._offset < position + len(data):
            data[self._offset - position] ^= 0xFF
        return self._handle.write(data)

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._handle.close()
