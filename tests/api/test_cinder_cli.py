"""The real `cinder` command (python-cinderclient, unmodified) drives volmigrate serve.

`cinder migrate` exits 0 even when the migration is refused (cinderclient
prints the error and carries on), so these tests check the volumes' state.
"""

import os
import subprocess

import pytest

from apitest import BIN, PROJECT, GiB
from vmtest import fill_random, sha256_of

pytest.importorskip("cinderclient", reason="python-cinderclient is in the test extras")


def cinder(api, *args, check=True):
    env = dict(os.environ, OS_AUTH_TYPE="noauth", CINDER_ENDPOINT=api.url + "/v3",
               OS_PROJECT_ID=PROJECT, OS_USER_ID="admin")
    result = subprocess.run([os.path.join(BIN, "cinder"), *args], env=env, text=True,
                            capture_output=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def table(output: str) -> dict:
    """`cinder show`'s Property | Value table as a dict."""
    rows = {}
    for line in output.splitlines():
        parts = [p.strip() for p in line.strip().strip("|").split("|")]
        if len(parts) == 2 and parts[0] not in ("Property", ""):
            rows[parts[0]] = parts[1]
    return rows


def test_cinder_cli_migrates_retypes_and_resets(api):
    for name, backend in (("gold", "lvm1"), ("silver", "lvm2")):
        cinder(api, "type-create", name)
        cinder(api, "type-key", name, "set", f"volume_backend_name={backend}")
    cinder(api, "type-create", "plain")  # no backend named: fits both
    created = table(cinder(api, "create", "--volume-type", "gold", "--name", "db1", "1").stdout)
    volume_id = created["id"]
    assert created["os-vol-host-attr:host"] == "node1@lvm1#lvm1"  # placed by its type
    digest = fill_random(api.data_file(api.volume(volume_id)), GiB // 16)

    pools = cinder(api, "get-pools").stdout
    assert "node1@lvm1#lvm1" in pools and "node1@lvm2#lvm2" in pools

    # Its type ties it to lvm1: an administrator's migration elsewhere is refused
    # (cinder exits 0 all the same), and nothing changes.
    refused = cinder(api, "migrate", volume_id, "node1@lvm2#lvm2")
    assert "Your migration request failed to process" in refused.stdout + refused.stderr
    assert "retype the volume" in refused.stdout + refused.stderr
    assert api.volume(volume_id)["migration_status"] is None

    # A retype that needs no migration (policy never) frees it.
    cinder(api, "retype", volume_id, "plain")
    assert api.volume(volume_id)["volume_type"] == "plain"

    # Without --lock-volume, then back with it.
    assert "accepted" in cinder(api, "migrate", volume_id, "node1@lvm2#lvm2").stdout
    moved = api.wait_migration(volume_id)
    assert moved["migration_status"] == "success"
    assert moved["os-vol-host-attr:host"] == "node1@lvm2#lvm2"
    assert sha256_of(api.data_file(moved)) == digest
    cinder(api, "migrate", "--lock-volume", "True", volume_id, "node1@lvm1#lvm1")
    back = api.wait_migration(volume_id)
    assert (back["migration_status"], back["status"]) == ("success", "available")
    assert back["os-vol-host-attr:host"] == "node1@lvm1#lvm1"
    assert sha256_of(api.data_file(back)) == digest

    shown = table(cinder(api, "show", "db1").stdout)  # by name, as operators do
    assert shown["os-vol-mig-status-attr:migstat"] == "success"
    assert volume_id in cinder(api, "list", "--migration_status", "success").stdout
    assert volume_id not in cinder(api, "list", "--migration_status", "error").stdout

    # Same host: refused, nothing changed.
    same = cinder(api, "migrate", volume_id, "node1@lvm1#lvm1")
    assert "already on host" in same.stdout + same.stderr
    assert api.volume(volume_id)["migration_status"] == "success"

    # Retype to a type on the other backend: refused with `never`, migrates on demand.
    never = cinder(api, "retype", volume_id, "silver", check=False)
    assert "Retype requires migration but is not allowed" in never.stdout + never.stderr
    assert api.volume(volume_id)["volume_type"] == "plain"
    cinder(api, "retype", "--migration-policy", "on-demand", volume_id, "silver")
    retyped = api.wait_migration(volume_id)
    assert retyped["id"] == volume_id
    assert (retyped["volume_type"], retyped["os-vol-host-attr:host"]) == (
        "silver", "node1@lvm2#lvm2")
    assert sha256_of(api.data_file(retyped)) == digest

    cinder(api, "reset-state", "--reset-migration-status", volume_id)
    assert api.volume(volume_id)["migration_status"] is None
    assert volume_id in cinder(api, "list", "--status", "available").stdout
