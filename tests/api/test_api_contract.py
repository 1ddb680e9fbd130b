"""The Block Storage API's contract with clients: discovery, microversions, error bodies,
bad input that changes nothing, the hidden destination, races, cancel and progress."""

import concurrent.futures
import json

import pytest
import requests

from apitest import PROJECT, GiB
from vmtest import MiB, fill_random, sha256_of, wait_for

# Copies held on purpose: 64 KiB/s over a 1 GiB volume would take hours.
HELD = {"volume_copy_bps_limit": 64 * 1024, "migration_checkpoint_size": "1M"}


def test_version_discovery_needs_no_token(api):
    for path, status in (("/", 300), ("/v3", 200), ("/v3/", 200)):
        response = requests.get(api.url + path, timeout=30)
        assert response.status_code == status, path
        (version,) = response.json()["versions"]
        assert (version["min_version"], version["version"]) == ("3.0", "3.71")
        assert response.headers["OpenStack-API-Version"] == "volume 3.0"


def test_microversions_are_negotiated(api):
    response = api.call("GET", "/types", version="3.71")
    assert response.headers["OpenStack-API-Version"] == "volume 3.71"
    assert "OpenStack-API-Version" in response.headers["Vary"]
    for wanted, status in (("3.72", 406), ("2.0", 406), ("3.x", 400)):
        response = api.call("GET", "/types", version=wanted)
        assert response.status_code == status
        assert response.json()[{406: "notAcceptable", 400: "badRequest"}[status]]["message"]
    volume = api.create_volume("v")
    base = api.call("GET", f"/volumes/{volume['id']}").json()["volume"]
    assert "volume_type_id" not in base and "cluster_name" not in base  # 3.63 and 3.61
    assert "volume_type_id" in api.volume(volume["id"])


def _fault(response, code: int) -> str:
    assert response.status_code == code, response.text
    (name,) = response.json()
    body = response.json()[name]
    assert body["code"] == code
    assert "Traceback" not in response.text
    return body["message"]


def test_bad_input_gets_a_clear_4xx_and_changes_nothing(api):
    api.create_type("gold", "lvm1")
    volume = api.create_volume("v", "gold")
    before = api.volume(volume["id"])
    vid = volume["id"]
    assert _fault(api.call("POST", f"/volumes/{vid}/action", raw=b"{not json"), 400) \
        == "Malformed request body"
    assert "There is no such action: os-frobnicate" in _fault(
        api.action(vid, {"os-frobnicate": {}}), 400)
    assert "boolean" in _fault(api.action(vid, {"os-migrate_volume": {
        "host": "node1@lvm2#lvm2", "lock_volume": "maybe"}}), 400)
    assert "Additional properties" in _fault(api.action(vid, {"os-migrate_volume": {
        "host": "node1@lvm2#lvm2", "speed": "fast"}}), 400)
    # Its type names lvm1: a migration elsewhere is a retype's job, as in Cinder.
    assert "retype the volume" in _fault(api.action(vid, {"os-migrate_volume": {
        "host": "node1@lvm2#lvm2"}}), 400)
    assert "must be an integer" in _fault(api.call("POST", "/volumes", {"volume": {
        "size": "big"}}), 400)
    assert "Your migration request failed to process" in _fault(api.action(vid, {
        "os-migrate_volume": {"host": "node1@lvm2#lvm2; rm -rf /"}}), 400)
    assert "One and only one of cluster and host" in _fault(api.action(vid, {
        "os-migrate_volume": {"host": "node1@lvm2", "cluster": "node1@lvm2"}},
        version="3.16"), 400)
    assert "could not be found" in _fault(api.call("GET", "/volumes/" + "f" * 8), 404)
    assert "Malformed request url" == _fault(
        api.call("GET", f"/volumes/{vid}", token="admin:ffff0000"), 400)
    too_big = api.call("POST", "/volumes", raw=b'{"volume": {"name": "' + b"x" * 200000
                       + b'"}}')
    assert too_big.status_code == 413
    assert "Traceback" not in too_big.text
    assert _fault(api.call("GET", "/nothing/here"), 404)
    assert api.volume(vid) == before
    listed = api.call("GET", "/volumes/detail").json()["volumes"]
    assert [v["id"] for v in listed] == [vid]


def test_twenty_concurrent_migrations_of_one_volume_one_wins(make_api):
    api = make_api(**HELD).start()
    volume = api.create_volume("v")
    body = {"os-migrate_volume": {"host": api.other_host(volume["id"])}}
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(lambda _: api.action(volume["id"], body).status_code,
                              range(20)))
    assert sorted(codes) == [202] + [400] * 19
    assert api.volume(volume["id"])["migration_status"] in ("starting", "migrating")
    assert api.action(volume["id"], {"os-migration_cancel": None}).status_code == 202
    assert api.wait_migration(volume["id"])["migration_status"] == "error"


def test_hidden_destination_cancel_and_progress(make_api):
    api = make_api(**HELD).start()
    volume = api.create_volume("v")
    vid = volume["id"]
    digest = fill_random(api.data_file(api.volume(vid)), 4 * MiB)
    source, dest = api.host_of(vid), api.other_host(vid)
    assert "There is no migration being performed" in _fault(
        api.action(vid, {"os-migration_cancel": None}), 400)
    assert api.action(vid, {"os-migrate_volume": {"host": dest.partition("#")[0],
                                                  "lock_volume": "True"}}).status_code == 202
    wait_for(lambda: api.volume(vid)["migration_status"] == "migrating")
    # Locked: attach and detach are refused until the end.
    assert api.volume(vid)["status"] == "maintenance"
    assert "locked" in _fault(api.action(vid, {"os-attach": {
        "mountpoint": "/dev/vdb", "instance_uuid": "4f1c2d3e-0000-4000-8000-000000000001"}}),
        400)
    # The destination is hidden from lists, shown to an administrator who asks for it.
    listed = api.call("GET", "/volumes/detail?all_tenants=1").json()["volumes"]
    assert [v["id"] for v in listed] == [vid]
    hidden = api.call("GET", f"/volumes/detail?all_tenants=1&migration_status=target:{vid}")
    (target,) = hidden.json()["volumes"]
    assert target["os-vol-host-attr:host"] == dest
    member = api.call("GET", f"/volumes/{target['id']}", token=f"someone:{PROJECT}")
    assert member.status_code == 200  # noauth callers are administrators
    progress = api.action(vid, {"os-migration_get_progress": None})
    assert progress.status_code == 200
    body = progress.json()
    assert set(body) == {"total_progress", "task_state", "details"}
    assert body["task_state"] == "data_copying_in_progress"
    assert 0 <= body["total_progress"] < 100
    assert body["details"]["bytes_total"] == GiB
    assert set(body["details"]) >= {"bytes_copied", "bytes_total", "rate", "eta"}
    same = api.call("GET", f"/volumes/{vid}/migration-progress").json()
    assert same["task_state"] == "data_copying_in_progress"

    assert api.action(vid, {"os-migration_cancel": None}).status_code == 202
    ended = api.wait_migration(vid)
    assert (ended["migration_status"], ended["status"]) == ("error", "available")
    assert ended["os-vol-host-attr:host"] == source
    assert sha256_of(api.data_file(ended)) == digest  # the source, untouched
    after = api.action(vid, {"os-migration_get_progress": None}).json()
    assert after["task_state"] == "migration_cancelled"
    assert after["details"]["error"].startswith("cancelled")
    gone = api.call("GET", f"/volumes/{target['id']}")
    assert gone.status_code == 404
    assert "There is no migration being performed" in _fault(
        api.action(vid, {"os-migration_cancel": None}), 400)


def test_attach_detach_reset_and_force_actions(api):
    volume = api.create_volume("v")
    vid = volume["id"]
    server = "4f1c2d3e-0000-4000-8000-000000000001"
    assert api.action(vid, {"os-attach": {"mountpoint": "/dev/vdb",
                                          "instance_uuid": server}}).status_code == 202
    attached = api.volume(vid)
    assert attached["status"] == "in-use"
    (attachment,) = attached["attachments"]
    assert (attachment["server_id"], attachment["device"]) == (server, "/dev/vdb")
    assert "detach it first" in _fault(api.call("DELETE", f"/volumes/{vid}"), 400)
    assert api.action(vid, {"os-reset_status": {"status": "error"}}).status_code == 202
    assert api.action(vid, {"os-force_detach": {
        "attachment_id": attachment["attachment_id"], "connector": None}}).status_code == 202
    detached = api.volume(vid)
    assert (detached["status"], detached["attachments"]) == ("available", [])
    assert "no attachment" in _fault(api.action(vid, {"os-reset_status": {
        "status": "in-use"}}), 400)
    for status in ("creating", "maintenance"):
        assert api.action(vid, {"os-reset_status": {"status": status}}).status_code == 202
        assert api.volume(vid)["status"] == status
    assert api.action(vid, {"os-force_delete": {}}).status_code == 202
    assert api.call("GET", f"/volumes/{vid}").status_code == 404
