"""How volumes, types, pools and services look to clients, version by version.

Tempest checks every success body against Cinder's JSON schemas, where a
field beyond those allowed at the requested microversion fails: each field
here appears from the version Cinder added it.
"""

from __future__ import annotations

import datetime
import json
import math

from volmigrate.api import microversions as mv
from volmigrate.api.context import RequestContext

GiB = 1024 ** 3


def timestamp(value: datetime.datetime | None) -> str | None:
    return value.isoformat() if value else None


def size_gb(size_bytes: int) -> int:
    return max(1, math.ceil(size_bytes / GiB))


def volume_links(base: str, project_id: str, volume_id: str) -> list[dict]:
    return [{"rel": "self", "href": f"{base}/v3/{project_id}/volumes/{volume_id}"},
            {"rel": "bookmark", "href": f"{base}/{project_id}/volumes/{volume_id}"}]


def attachments(volume: dict, ctx: RequestContext) -> list[dict]:
    if volume["attach_status"] != "attached" or not volume["attachment_id"]:
        return []
    item = {"id": volume["id"], "attachment_id": volume["attachment_id"],
            "volume_id": volume["id"], "server_id": volume["instance_uuid"],
            "device": volume["mountpoint"], "attached_at": timestamp(volume["attached_at"])}
    if ctx.is_admin:
        item["host_name"] = volume["attached_host"]
    return [item]


def volume_summary(volume: dict, ctx: RequestContext, base: str) -> dict:
    return {"id": volume["id"], "name": volume["name"],
            "links": volume_links(base, ctx.project_id, volume["id"])}


def volume_detail(volume: dict, ctx: RequestContext, version: tuple[int, int], base: str,
                  volume_type: dict | None, allowed: dict[str, bool],
                  for_create: bool = False) -> dict:
    """The detail view; `allowed` says which policy-guarded attributes the caller sees."""
    view = {
        "id": volume["id"], "name": volume["name"], "description": volume["description"],
        "size": size_gb(volume["size"]), "status": volume["status"],
        "availability_zone": volume["availability_zone"] or "nova",
        "created_at": timestamp(volume["created_at"]),
        "updated_at": timestamp(volume["updated_at"]),
        "user_id": volume["user_id"],
        "volume_type": volume_type["name"] if volume_type else None,
        "snapshot_id": None, "source_volid": None,
        "metadata": json.loads(volume["volume_metadata"] or "{}"),
        "links": volume_links(base, ctx.project_id, volume["id"]),
        "attachments": attachments(volume, ctx),
        "bootable": "false", "encrypted": False, "replication_status": None,
        "consistencygroup_id": None, "multiattach": False,
    }
    if not for_create:
        if ctx.is_admin:
            view["migration_status"] = volume["migration_status"]
        if allowed.get("tenant"):
            view["os-vol-tenant-attr:tenant_id"] = volume["project_id"]
        if allowed.get("host"):
            view["os-vol-host-attr:host"] = volume["host"]
        if allowed.get("migstat"):
            view["os-vol-mig-status-attr:migstat"] = volume["migration_status"]
            view["os-vol-mig-status-attr:name_id"] = volume["name_id"]
    if version >= mv.GROUP_VOLUME:
        view["group_id"] = None
    if version >= mv.VOLUME_DETAIL_PROVIDER_ID and ctx.is_admin:
        view["provider_id"] = None
    if version >= mv.SHARED_TARGETS_AND_SERVICE_FIELDS:
        view["shared_targets"] = False
        view["service_uuid"] = None
    if version >= mv.VOLUME_CLUSTER_NAME and ctx.is_admin:
        view["cluster_name"] = None
    if version >= mv.VOLUME_TYPE_ID_IN_VOLUME_DETAIL:
        view["volume_type_id"] = volume["volume_type_id"]
    if version >= mv.ENCRYPTION_KEY_ID_IN_DETAILS:
        view["encryption_key_id"] = None
    if version >= mv.USE_QUOTA:
        view["consumes_quota"] = not (volume["migration_status"] or "").startswith("target:")
    return view


def volume_type(vtype: dict, with_specs: bool, for_create: bool = False) -> dict:
    view = {"id": vtype["id"], "name": vtype["name"], "description": vtype["description"],
            "is_public": vtype["is_public"],
            "os-volume-type-access:is_public": vtype["is_public"]}
    if with_specs:
        view["extra_specs"] = vtype["extra_specs"]
    if not for_create:
        view["qos_specs_id"] = None
    return view


def service(item: dict, zone: str, version: tuple[int, int]) -> dict:
    view = {"binary": item["binary"], "host": item["host"], "zone": zone,
            "status": "enabled", "state": "up" if item["up"] else "down",
            "updated_at": timestamp(datetime.datetime.now(datetime.timezone.utc)
                                    .replace(tzinfo=None)),
            "disabled_reason": None}
    if item["binary"] == "cinder-volume":
        view.update({"replication_status": "disabled", "active_backend_id": None,
                     "frozen": False})
    if version >= mv.SERVICES_CLUSTER:
        view["cluster"] = None
    return view


TASK_STATES = {
    "starting": "migration_starting",
    "completing": "migration_completing",
    "success": "migration_success",
    "error": "migration_error",
}


def migration_progress(progress: dict, driver_assisted: bool, cancelling: bool) -> dict:
    """Manila's get-progress body (2.59+): total_progress, task_state, details."""
    status = progress["migration_status"]
    state = progress["state"]
    if state in ("pending", "running"):
        if cancelling:
            task_state = "migration_cancel_in_progress"
        elif status == "migrating" or (status is None and state == "running"):
            task_state = ("migration_driver_in_progress" if driver_assisted
                          else "data_copying_in_progress")
        else:
            task_state = TASK_STATES.get(status, "migration_in_progress")
    elif state == "success":
        task_state = "migration_success"
    elif (progress["error"] or "").startswith("cancelled"):
        task_state = "migration_cancelled"
    else:
        task_state = "migration_error"
    return {
        "total_progress": 100 if state == "success" else int(progress["percent"]),
        "task_state": task_state,
        "details": {
            "migration_id": progress["migration_id"],
            "source_host": progress["source_host"],
            "destination_host": progress["destination_host"],
            "bytes_copied": progress["bytes_copied"],
            "bytes_total": progress["bytes_total"],
            "bytes_durable": progress["bytes_durable"],
            "rate": progress.get("rate"),
            "eta": progress.get("eta"),
            "error": progress["error"],
            "started_at": timestamp(progress["started_at"]),
            "finished_at": timestamp(progress["finished_at"]),
        },
    }
