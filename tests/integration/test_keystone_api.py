"""volmigrate serve with auth_strategy = keystone, against a real Keystone.

An administrator's token migrates; a member of another project is refused
(403) what Cinder's policies keep for administrators and never sees the
migration status or the host; no token, or a bad one, gets 401.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))

from apitest import ApiServer  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture
def keystone_api(keystone, tmp_path):
    server = ApiServer(tmp_path, auth_strategy="keystone",
                       sections={"keystone_authtoken": keystone.authtoken_options})
    server.start()
    yield server
    server.stop()


def test_keystone_tokens_and_cinder_policies(keystone, keystone_api):
    api = keystone_api
    _u, owner_project, owner = keystone.make_user("ks-owners", "member")
    _u, other_project, other = keystone.make_user("ks-others", "member")
    _u, admin_project, admin = keystone.make_user("ks-admins", "admin")

    created = api.call("POST", "/volumes", {"volume": {"name": "v", "size": 1}},
                       token=owner, project=owner_project)
    assert created.status_code == 202, created.text
    vid = created.json()["volume"]["id"]
    own = api.call("GET", f"/volumes/{vid}", token=owner, project=owner_project).json()
    for hidden in ("migration_status", "os-vol-mig-status-attr:migstat",
                   "os-vol-host-attr:host"):
        assert hidden not in own["volume"], hidden
    assert own["volume"]["os-vol-tenant-attr:tenant_id"] == owner_project

    # Another project's member: 404 for the volume (it is not theirs), 403 for admin calls.
    assert api.call("GET", f"/volumes/{vid}", token=other,
                    project=other_project).status_code == 404
    assert api.call("GET", "/scheduler-stats/get_pools", token=other,
                    project=other_project).status_code == 403
    for action in ({"os-migrate_volume": {"host": "node1@lvm2"}},
                   {"os-reset_status": {"status": "error"}}):
        refused = api.action(vid, action, token=owner, project=owner_project)
        assert refused.status_code == 403, refused.text
        assert "forbidden" in refused.json()

    # The administrator, from its own project's URL, reads and migrates it.
    seen = api.call("GET", f"/volumes/{vid}", token=admin, project=admin_project, version="3.71")
    assert seen.status_code == 200
    assert seen.json()["volume"]["os-vol-host-attr:host"].startswith("node1@")
    source = seen.json()["volume"]["os-vol-host-attr:host"]
    dest = "node1@lvm2" if "@lvm1" in source else "node1@lvm1"
    assert api.action(vid, {"os-migrate_volume": {"host": dest}}, token=admin,
                      project=admin_project).status_code == 202
    assert api.call("GET", "/scheduler-stats/get_pools", token=admin,
                    project=admin_project).status_code == 200

    # No token, a bad token: 401, before anything is read.
    assert api.call("GET", "/volumes", token="", project=owner_project).status_code == 401
    assert api.call("GET", "/volumes", token="not-a-token",
                    project=owner_project).status_code == 401
    # Version discovery needs none.
    import requests
    assert requests.get(api.url + "/", timeout=30).status_code == 300
