"""Fixtures: a real service on real files in a temporary state_path."""

from __future__ import annotations

import hashlib
import os
import textwrap
import warnings

import pytest

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

from oslo_config import cfg  # noqa: E402
from oslo_messaging.notify import _impl_test as notify_test  # noqa: E402

from volmigrate.engine import MigrationService  # noqa: E402

MiB = 1024 * 1024
NODE = "node1"
IS_ROOT = os.geteuid() == 0
HAS_LOOP = IS_ROOT and os.path.exists("/dev/loop-control")


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            digest.update(block)
    return digest.hexdigest()


def fill_random(path: str, size: int) -> str:
    """Write random data over the whole volume file; return its sha256."""
    with open(path, "r+b") as f:
        remaining = size
        while remaining:
            n = min(remaining, 4 * MiB)
            f.write(os.urandom(n))
            remaining -= n
    return sha256_of(path)


def write_config(tmp_path, backends: dict[str, dict] | None = None, **defaults) -> str:
    backends = backends or {"a": {}, "b": {}}
    options = {"state_path": str(tmp_path / "state"), "host": NODE,
               "enabled_backends": ",".join(backends),
               "migration_progress_report_interval": "0.1"}
    options.update({k: str(v) for k, v in defaults.items()})
    lines = ["[DEFAULT]"] + [f"{k} = {v}" for k, v in options.items()]
    for name, opts in backends.items():
        lines += ["", f"[{name}]"]
        opts = dict(opts)
        opts.setdefault("volume_driver", "local")
        lines += [f"{k} = {v}" for k, v in opts.items()]
    lines += ["", "[oslo_messaging_notifications]", "driver = test"]
    path = tmp_path / "volmigrate.conf"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def notifications(event_type: str | None = None) -> list[dict]:
    """Notifications sent so far: [{'event_type', 'payload', 'priority', 'publisher_id'}]."""
    found = []
    for _ctxt, message, priority, _retry in notify_test.NOTIFICATIONS:
        if event_type is None or message["event_type"] == event_type:
            found.append(dict(message, priority=priority))
    return found


@pytest.fixture
def make_service(tmp_path):
    """Factory: make_service(backends=..., **DEFAULT options) -> started MigrationService."""
    started = []

    def factory(backends=None, start=True, **defaults) -> MigrationService:
        conf = cfg.ConfigOpts()
        conf(["--config-file", write_config(tmp_path, backends, **defaults)])
        svc = MigrationService(conf)
        if start:
            svc.start()
            started.append(svc)
        return svc

    notify_test.reset()
    yield factory
    for svc in started:
        svc.stop()
    notify_test.reset()


@pytest.fixture
def service(make_service):
    return make_service()


def volume_files(tmp_path, backend: str) -> list[str]:
    folder = tmp_path / "state" / "volumes" / backend
    return sorted(os.listdir(folder)) if folder.exists() else []


VOLUME_KEYS = ("id", "name", "size", "host", "status", "attach_status", "project_id",
               "name_id", "provider_location")
MIGRATION_KEYS = ("id", "volume_id", "source_host", "dest_host", "lock_volume",
                  "force_host_copy", "case", "previous_status", "error", "abort_reason")


def snapshot(svc: MigrationService) -> tuple:
    """Everything a rejected request could change: rows, statuses, hosts, requests.

    Left out: what a migration running beside the request moves on its own
    (its progress, heartbeat, starting -> migrating).
    """
    running = ("starting", "migrating", "completing")

    def volume(v):
        status = "running" if v["migration_status"] in running else v["migration_status"]
        return tuple(v[k] for k in VOLUME_KEYS) + (status,)

    return ([volume(v) for v in svc.list_volumes(include_hidden=True)],
            [tuple(m[k] for k in MIGRATION_KEYS) for m in svc.list_migrations()])


def host(backend: str) -> str:
    return f"{NODE}@{backend}"


def dedent(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


def wait_for(predicate, timeout: float = 10.0) -> None:
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def wait_migrating(svc: MigrationService, volume_id: str) -> None:
    wait_for(lambda: svc.get_volume(volume_id)["migration_status"] == "migrating")


# -- data of any backend's volume, through its driver ---------------------------
def _open_volume(svc: MigrationService, volume: dict, writable: bool):
    """(file object, cleanup) on a volume of any backend, as a migration reaches it."""
    from volmigrate.drivers.base import ACCESS_STREAM
    from volmigrate.flows.volume_tasks import volume_ref

    driver = svc.drivers[volume["host"].split("@", 1)[1].split("#", 1)[0]]
    ref = volume_ref(volume)
    connection = driver.connect_volume(ref, writable)
    try:
        if connection["access"] == ACCESS_STREAM:
            handle = driver.open_connection(connection, writable)
        else:
            handle = open(connection["path"], "r+b" if writable else "rb")
    except BaseException:
        driver.disconnect_volume(ref, connection)
        raise

    def cleanup():
        handle.close()
        driver.disconnect_volume(ref, connection)
    return handle, cleanup


def write_volume(svc: MigrationService, volume: dict, extents=None) -> str:
    """Write random data into a volume (all of it, or the (offset, length) extents,
    the rest left as it is: zeros on a new volume); return the volume's sha256."""
    handle, cleanup = _open_volume(svc, volume, True)
    try:
        for offset, length in extents or [(0, volume["size"])]:
            handle.seek(offset)
            while length:
                n = min(length, 4 * MiB)
                handle.write(os.urandom(n))
                length -= n
        handle.flush()
        try:
            os.fsync(handle.fileno())
        except (OSError, ValueError):
            pass  # a file-like object's flush() is its sync
    finally:
        cleanup()
    return volume_sha256(svc, volume)


def volume_sha256(svc: MigrationService, volume: dict) -> str:
    """sha256 of exactly the volume's `size` bytes, read through its driver."""
    handle, cleanup = _open_volume(svc, volume, False)
    digest = hashlib.sha256()
    try:
        remaining = volume["size"]
        while remaining:
            block = handle.read(min(remaining, MiB))
            if not block:
                raise AssertionError(f"volume {volume['id']} ended {remaining} bytes early")
            digest.update(block)
            remaining -= len(block)
    finally:
        cleanup()
    return digest.hexdigest()
