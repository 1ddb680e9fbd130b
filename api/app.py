"""The Block Storage v3 routes, on Flask, over one started MigrationService.

Every resource is routed with and without ``/{project_id}`` (Cinder's 3.67
behaviour, served at every version). A request is: microversion negotiated
(406 out of range), caller known (keystonemiddleware or noauth, in the WSGI
pipeline before this app), URL project checked against the token's,
policy enforced (oslo.policy), then the engine called. Engine refusals
become Cinder's 4xx bodies; anything unexpected is a 500 whose body says
only that, with the traceback in the log.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import flask
from oslo_log import log as logging
from oslo_policy import policy as oslo_policy
from werkzeug import exceptions as http

from volmigrate.api import faults, microversions as mv, views
from volmigrate.api.context import RequestContext, from_environ
from volmigrate.api.policies import make_enforcer
from volmigrate.engine import MigrationService
from volmigrate.engine.exceptions import (BackendError, InvalidInput, InvalidVolumeState,
                                          NotFound)
from volmigrate.engine.types import Conflict

LOG = logging.getLogger(__name__)

GiB = 1024 ** 3
TRUE_STRINGS = ("1", "t", "true", "on", "y", "yes")
FALSE_STRINGS = ("0", "f", "false", "off", "n", "no")
HIDDEN_PREFIX = "target:"
VOLUME_FILTERS = ("migration_status", "status", "host", "name", "all_tenants",
                  "project_id", "sort", "sort_key", "sort_dir", "limit", "marker",
                  "offset", "with_count", "metadata", "bootable", "availability_zone")


def version_document(base: str) -> dict:
    return {"versions": [{
        "id": "v3.0", "status": "CURRENT", "version": mv.text(mv.MAX_VERSION),
        "min_version": mv.text(mv.MIN_VERSION), "updated": "2023-08-31T00:00:00Z",
        "links": [{"rel": "describedby", "type": "text/html",
                   "href": "https://docs.openstack.org/"},
                  {"rel": "self", "href": f"{base}/v3/"}],
        "media-types": [{"base": "application/json",
                         "type": "application/vnd.openstack.volume+json;version=3"}],
    }]}


def boolean(value, what: str) -> bool:
    """Cinder's boolean parameter: true/false, or the strings the clients send ("True")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE_STRINGS:
        return True
    if isinstance(value, str) and value.strip().lower() in FALSE_STRINGS:
        return False
    raise faults.bad_request(f"Invalid value for {what}: {value!r} is not a boolean")


def create_app(service: MigrationService) -> flask.Flask:
    """The API as a WSGI app (authentication is the pipeline's job, see server.py)."""
    conf = service.conf
    enforcer = make_enforcer(conf)
    # An explicit instance path: Flask cannot find one for a module of a namespace package.
    app = flask.Flask(__name__, instance_path=os.path.join(conf.state_path, "api"))
    app.json.sort_keys = False

    def admin_check(ctx: RequestContext) -> bool:
        return enforcer.enforce("context_is_admin", {}, ctx.credentials())

    # -- per-request plumbing ------------------------------------------------
    def ctx() -> RequestContext:
        return flask.g.ctx

    def version() -> tuple[int, int]:
        return flask.g.version

    def base_url() -> str:
        return (conf.public_endpoint or flask.request.host_url).rstrip("/")

    def allowed(rule: str, target: dict | None = None) -> bool:
        """oslo.policy's answer, asked once per rule and project in a request: a list
        of 1,000 volumes would otherwise ask it 3,000 times (92% of the list's time)."""
        target = target or {"project_id": ctx().project_id}
        answers = flask.g.setdefault("policy_answers", {})
        key = (rule, target.get("project_id"))
        if key not in answers:
            answers[key] = enforcer.enforce(rule, target, ctx().credentials())
        return answers[key]

    def authorize(rule: str, target: dict | None = None) -> None:
        if not allowed(rule, target):
            raise faults.Fault(403, f"Policy doesn't allow {rule} to be performed.")

    @app.before_request
    def _before() -> None:
        request = flask.request
        flask.g.version = mv.MIN_VERSION
        flask.g.version = mv.negotiate(request.headers.get(mv.HEADER))
        if request.path.rstrip("/") in ("", "/v3"):
            return  # version discovery: no caller needed
        flask.g.ctx = from_environ(request.environ, admin_check)
        url_project = (request.view_args or {}).get("project_id")
        if url_project is not None and url_project != flask.g.ctx.project_id:
            raise faults.bad_request("Malformed request url")

    @app.after_request
    def _after(response: flask.Response) -> flask.Response:
        v = getattr(flask.g, "version", mv.MIN_VERSION)
        response.headers[mv.HEADER] = f"{mv.SERVICE} {mv.text(v)}"
        response.headers.add("Vary", mv.HEADER)
        return response

    def fault_response(code: int, message: str) -> flask.Response:
        return flask.Response(faults.body(code, message), status=code,
                              mimetype="application/json")

    @app.errorhandler(faults.Fault)
    def _fault(exc: faults.Fault):
        return fault_response(exc.code, exc.message)

    @app.errorhandler(mv.VersionError)
    def _version(exc: mv.VersionError):
        return fault_response(exc.status, str(exc))

    @app.errorhandler(http.HTTPException)
    def _http(exc: http.HTTPException):
        messages = {404: "The resource could not be found.",
                    405: "The method is not allowed for this resource.",
                    413: "Request is too large."}
        return fault_response(exc.code, messages.get(exc.code, exc.description))

    @app.errorhandler(NotFound)
    def _not_found(exc: NotFound):
        return fault_response(404, str(exc)[:1].upper() + str(exc)[1:])

    @app.errorhandler(Conflict)
    def _conflict(exc: Conflict):
        return fault_response(409, str(exc))

    @app.errorhandler(InvalidInput)
    @app.errorhandler(InvalidVolumeState)
    def _invalid(exc: Exception):
        return fault_response(400, str(exc))

    @app.errorhandler(oslo_policy.PolicyNotAuthorized)
    def _policy(exc: Exception):
        return fault_response(403, str(exc))

    @app.errorhandler(BackendError)
    def _backend(exc: BackendError):
        LOG.error("Request %s %s failed: %s", flask.request.method, flask.request.path, exc)
        return fault_response(500, str(exc))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        LOG.exception("Request %s %s failed unexpectedly", flask.request.method,
                      flask.request.path)
        return fault_response(500, "The server has either erred or is incapable of "
                                   "performing the requested operation.")

    def json_body(required_key: str | None = None) -> dict:
        raw = flask.request.get_data(cache=False)
        try:
            body = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            raise faults.bad_request("Malformed request body") from None
        if not isinstance(body, dict):
            raise faults.bad_request("Malformed request body")
        if required_key is not None and not isinstance(body.get(required_key), dict):
            raise faults.bad_request(f"Missing required element '{required_key}' in "
                                     f"request body.")
        return body

    def empty(status: int = 202) -> flask.Response:
        return flask.Response(b"", status=status)

    def route(rule: str, **options) -> Callable:
        """Register a view under /v3/{project_id}/... and /v3/..."""
        def register(view: Callable) -> Callable:
            app.add_url_rule("/v3/<project_id>" + rule, view_func=view, **options)
            app.add_url_rule("/v3" + rule, endpoint=view.__name__ + "_no_project",
                             view_func=view, defaults={"project_id": None}, **options)
            return view
        return register

    # -- version discovery ---------------------------------------------------
    @app.get("/")
    def versions_root():
        return flask.jsonify(version_document(base_url())), 300

    @app.get("/v3")
    @app.get("/v3/")
    def versions_v3():
        return flask.jsonify(version_document(base_url()))

    # -- volumes ---------------------------------------------------------------
    def type_of(volume: dict, cache: dict | None = None) -> dict | None:
        type_id = volume["volume_type_id"]
        if type_id is None:
            return None
        if cache is not None and type_id in cache:
            return cache[type_id]
        try:
            found = service.types.get(type_id)
        except NotFound:
            found = None
        if cache is not None:
            cache[type_id] = found
        return found

    def usable_type(ref: str) -> dict:
        """A type the caller may use: a private type is an administrator's only (no
        per-project type access is kept), so for others it does not exist, as in Cinder."""
        try:
            volume_type = service.types.get(ref)
        except NotFound:
            volume_type = None
        if volume_type is None or (not volume_type["is_public"] and not ctx().is_admin):
            raise faults.not_found(f"Volume type {ref} could not be found.")
        return volume_type

    def attribute_rights(volume: dict) -> dict[str, bool]:
        target = {"project_id": volume["project_id"]}
        return {"tenant": allowed("volume_extension:volume_tenant_attribute", target),
                "host": allowed("volume_extension:volume_host_attribute", target),
                "migstat": allowed("volume_extension:volume_mig_status_attribute", target)}

    def detail(volume: dict, cache: dict | None = None, for_create: bool = False) -> dict:
        return views.volume_detail(volume, ctx(), version(), base_url(),
                                   type_of(volume, cache), attribute_rights(volume),
                                   for_create=for_create)

    def find_volume(volume_id: str, rule: str = "volume:get") -> dict:
        """The volume, if the caller may see it: another project's is a 404, as in Cinder."""
        try:
            volume = service.get_volume(volume_id, include_hidden=ctx().is_admin)
        except NotFound:
            raise faults.not_found(f"Volume {volume_id} could not be found.") from None
        if not ctx().is_admin and volume["project_id"] != ctx().project_id:
            raise faults.not_found(f"Volume {volume_id} could not be found.")
        authorize(rule, {"project_id": volume["project_id"]})
        return volume

    def list_volumes(project_id: str | None) -> list[dict]:
        authorize("volume:get_all")
        args = flask.request.args
        unknown = [k for k in args if k not in VOLUME_FILTERS]
        if unknown and not ctx().is_admin:
            raise faults.bad_request(f"Invalid filters {', '.join(sorted(unknown))} are "
                                     f"found in query options.")
        filters = {k: args[k] for k in ("status", "host", "name") if k in args}
        all_tenants = ctx().is_admin and boolean(args.get("all_tenants", "0"), "all_tenants")
        if not all_tenants:
            filters["project_id"] = ctx().project_id
        elif args.get("project_id"):
            filters["project_id"] = args["project_id"]
        migration_status = args.get("migration_status")
        # The hidden destinations of running migrations are shown to an
        # administrator only when asked for by their migration status.
        hidden = (ctx().is_admin and migration_status is not None
                  and migration_status.startswith(HIDDEN_PREFIX))
        volumes = service.list_volumes(migration_status, include_hidden=hidden, **filters)
        for key in ("limit", "offset"):
            if key in args and not args[key].isdigit():
                raise faults.bad_request(f"Invalid value for {key}: {args[key]!r}")
        offset = int(args.get("offset", 0))
        volumes = volumes[offset:]
        if "limit" in args:
            volumes = volumes[:int(args["limit"])]
        return volumes

    @route("/volumes", methods=["GET"])
    def volumes_index(project_id):
        return {"volumes": [views.volume_summary(v, ctx(), base_url())
                            for v in list_volumes(project_id)]}

    @route("/volumes/detail", methods=["GET"])
    def volumes_detail(project_id):
        cache: dict = {}
        return {"volumes": [detail(v, cache) for v in list_volumes(project_id)]}

    @route("/volumes/<volume_id>", methods=["GET"])
    def volumes_show(project_id, volume_id):
        return {"volume": detail(find_volume(volume_id))}

    @route("/volumes", methods=["POST"])
    def volumes_create(project_id):
        authorize("volume:create")
        spec = json_body("volume")["volume"]
        for unsupported in ("snapshot_id", "source_volid", "imageRef", "backup_id",
                            "consistencygroup_id", "group_id"):
            if spec.get(unsupported):
                raise faults.bad_request(f"{unsupported} is not supported: volmigrate "
                                         f"creates empty volumes only")
        if boolean(spec.get("multiattach", False), "multiattach"):
            raise faults.bad_request("multiattach volumes are not supported")
        size = spec.get("size")
        if isinstance(size, str) and size.isdigit():
            size = int(size)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise faults.bad_request(f"Invalid input received: size {size!r} must be an "
                                     f"integer (GiB) and greater than 0")
        zone = spec.get("availability_zone")
        if zone not in (None, conf.storage_availability_zone):
            raise faults.bad_request(f"Availability zone '{zone}' is invalid.")
        volume_type = None
        if spec.get("volume_type") is not None:
            volume_type = usable_type(str(spec["volume_type"]))
        volume = service.create_volume(size * GiB, None, name=spec.get("name"),
                                       project_id=ctx().project_id, volume_type=volume_type,
                                       user_id=ctx().user_id,
                                       description=spec.get("description"),
                                       metadata=spec.get("metadata"))
        return {"volume": detail(volume, for_create=True)}, 202

    @route("/volumes/<volume_id>", methods=["DELETE"])
    def volumes_delete(project_id, volume_id):
        force = boolean(flask.request.args.get("force", "false"), "force")
        volume = find_volume(volume_id, "volume:force_delete" if force else "volume:delete")
        service.delete_volume(volume["id"], force=force)
        return empty()

    @route("/volumes/<volume_id>/migration-progress", methods=["GET"])
    def volumes_progress(project_id, volume_id):
        return migration_progress(find_volume(volume_id))

    def migration_progress(volume: dict) -> dict:
        authorize("volume_extension:migration_progress",
                  {"project_id": volume["project_id"]})
        progress = service.get_migration_progress(volume["id"])
        migration = service.get_migration(progress["migration_id"])
        return views.migration_progress(
            progress, driver_assisted=migration["case"] == "driver-assisted",
            cancelling=bool(migration["abort_reason"]))

    # -- volume actions ------------------------------------------------------------
    @route("/volumes/<volume_id>/action", methods=["POST"])
    def volumes_action(project_id, volume_id):
        body = json_body()
        if len(body) != 1:
            raise faults.bad_request("Malformed request body: give exactly one action")
        name, args = next(iter(body.items()))
        handler = ACTIONS.get(name)
        if handler is None:
            raise faults.bad_request(f"There is no such action: {name}")
        volume = find_volume(volume_id)
        return handler(volume, args)

    def action_args(args, name: str, allowed_keys: tuple[str, ...],
                    required: tuple[str, ...] = ()) -> dict:
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise faults.bad_request(f"Invalid input for {name}: an object is expected")
        extra = sorted(set(args) - set(allowed_keys))
        if extra:
            raise faults.bad_request(f"Invalid input for {name}: Additional properties are "
                                     f"not allowed ({', '.join(map(repr, extra))} "
                                     f"unexpected)")
        for key in required:
            if args.get(key) is None:
                raise faults.bad_request(f"Invalid input for {name}: '{key}' is a "
                                         f"required property")
        return args

    def migration_answer(response) -> flask.Response:
        if response.accepted:
            return empty()
        raise faults.bad_request(response.message)

    def migrate(volume: dict, args) -> flask.Response:
        authorize("volume_extension:volume_admin_actions:migrate_volume",
                  {"project_id": volume["project_id"]})
        keys = ("host", "force_host_copy", "lock_volume")
        if version() >= mv.VOLUME_MIGRATE_CLUSTER:
            keys += ("cluster",)
        args = action_args(args, "os-migrate_volume", keys,
                           () if version() >= mv.VOLUME_MIGRATE_CLUSTER else ("host",))
        host, cluster = args.get("host"), args.get("cluster")
        if (host is None) == (cluster is None):
            raise faults.bad_request("One and only one of cluster and host must be set.")
        target = host if host is not None else cluster
        if not isinstance(target, str) or not target or len(target) > 255:
            raise faults.bad_request("Invalid input for os-migrate_volume: host must be a "
                                     "string of 1 to 255 characters")
        return migration_answer(service.migrate_volume(
            volume["id"], target,
            lock_volume=boolean(args.get("lock_volume", False), "lock_volume"),
            force_host_copy=boolean(args.get("force_host_copy", False), "force_host_copy")))

    def retype(volume: dict, args) -> flask.Response:
        authorize("volume:retype", {"project_id": volume["project_id"]})
        args = action_args(args, "os-retype", ("new_type", "migration_policy"), ("new_type",))
        policy = args.get("migration_policy") or "never"
        if not isinstance(args["new_type"], str) or policy not in ("never", "on-demand"):
            raise faults.bad_request("Invalid input for os-retype: new_type must be a type "
                                     "name or id, migration_policy never or on-demand")
        try:
            usable_type(args["new_type"])
        except faults.Fault:
            raise faults.bad_request(f"Your migration request failed to process: Invalid "
                                     f"volume_type passed: {args['new_type']}") from None
        response = service.retype_volume(volume["id"], args["new_type"], policy)
        return migration_answer(response)

    def reset_status(volume: dict, args) -> flask.Response:
        authorize("volume_extension:volume_admin_actions:reset_status",
                  {"project_id": volume["project_id"]})
        args = action_args(args, "os-reset_status",
                           ("status", "attach_status", "migration_status"))
        service.reset_volume_status(volume["id"], **args)
        return empty()

    def attach(volume: dict, args) -> flask.Response:
        authorize("volume_extension:volume_actions:attach",
                  {"project_id": volume["project_id"]})
        args = action_args(args, "os-attach",
                           ("mountpoint", "instance_uuid", "host_name", "mode"),
                           ("mountpoint",))
        if (args.get("instance_uuid") is None) == (args.get("host_name") is None):
            raise faults.bad_request("Invalid input for os-attach: give instance_uuid or "
                                     "host_name")
        for key in ("mountpoint", "instance_uuid", "host_name"):
            if args.get(key) is not None and (not isinstance(args[key], str)
                                              or len(args[key]) > 255):
                raise faults.bad_request(f"Invalid input for os-attach: {key} must be a "
                                         f"string")
        service.attach_volume(volume["id"], instance_uuid=args.get("instance_uuid"),
                              host_name=args.get("host_name"),
                              mountpoint=args["mountpoint"], mode=args.get("mode") or "rw")
        return empty()

    def detach(volume: dict, args) -> flask.Response:
        authorize("volume_extension:volume_actions:detach",
                  {"project_id": volume["project_id"]})
        args = action_args(args, "os-detach", ("attachment_id",))
        service.detach_volume(volume["id"], args.get("attachment_id"))
        return empty()

    def force_detach(volume: dict, args) -> flask.Response:
        authorize("volume_extension:volume_admin_actions:force_detach",
                  {"project_id": volume["project_id"]})
        args = action_args(args, "os-force_detach", ("attachment_id", "connector"))
        service.force_detach_volume(volume["id"], args.get("attachment_id"))
        return empty()

    def force_delete(volume: dict, args) -> flask.Response:
        authorize("volume_extension:volume_admin_actions:force_delete",
                  {"project_id": volume["project_id"]})
        action_args(args, "os-force_delete", ())
        service.delete_volume(volume["id"], force=True)
        return empty()

    def get_progress(volume: dict, args) -> dict:
        action_args(args, "os-migration_get_progress", ())
        return migration_progress(volume)

    def cancel(volume: dict, args) -> flask.Response:
        authorize("volume_extension:migration_cancel", {"project_id": volume["project_id"]})
        action_args(args, "os-migration_cancel", ())
        service.cancel_migration(volume["id"])
        return empty()

    ACTIONS = {
        "os-migrate_volume": migrate, "os-retype": retype, "os-reset_status": reset_status,
        "os-attach": attach, "os-detach": detach, "os-force_detach": force_detach,
        "os-force_delete": force_delete, "os-migration_get_progress": get_progress,
        "os-migration_cancel": cancel,
    }

    # -- volume types ----------------------------------------------------------------
    def find_type(type_id: str) -> dict:
        try:
            return service.types.get(type_id)
        except NotFound:
            raise faults.not_found(f"Volume type {type_id} could not be found.") from None

    def type_view(vtype: dict, for_create: bool = False) -> dict:
        specs = allowed("volume_extension:types_extra_specs:index")
        return views.volume_type(vtype, specs, for_create=for_create)

    @route("/types", methods=["GET"])
    def types_index(project_id):
        authorize("volume_extension:type_get_all")
        public = flask.request.args.get("is_public", "true")
        types = service.types.list()
        if public.lower() != "none" and ctx().is_admin:
            types = [t for t in types if t["is_public"] == boolean(public, "is_public")]
        elif not ctx().is_admin:
            types = [t for t in types if t["is_public"]]
        return {"volume_types": [type_view(t) for t in types]}

    @route("/types/<type_id>", methods=["GET"])
    def types_show(project_id, type_id):
        authorize("volume_extension:type_get")
        vtype = find_type(type_id)
        if not vtype["is_public"] and not ctx().is_admin:
            raise faults.not_found(f"Volume type {type_id} could not be found.")
        return {"volume_type": type_view(vtype)}

    @route("/types", methods=["POST"])
    def types_create(project_id):
        authorize("volume_extension:type_create")
        spec = json_body("volume_type")["volume_type"]
        public = spec.get("os-volume-type-access:is_public", spec.get("is_public", True))
        vtype = service.types.create(spec.get("name"), spec.get("description"),
                                     boolean(public, "is_public"), spec.get("extra_specs"))
        return {"volume_type": type_view(vtype, for_create=True)}

    @route("/types/<type_id>", methods=["PUT"])
    def types_update(project_id, type_id):
        authorize("volume_extension:type_update")
        spec = json_body("volume_type")["volume_type"]
        public = spec.get("is_public")
        vtype = service.types.update(find_type(type_id)["id"], spec.get("name"),
                                     spec.get("description"),
                                     None if public is None else boolean(public, "is_public"))
        view = type_view(vtype, for_create=True)
        del view["os-volume-type-access:is_public"]  # not in Cinder's update answer
        return {"volume_type": view}

    @route("/types/<type_id>", methods=["DELETE"])
    def types_delete(project_id, type_id):
        authorize("volume_extension:type_delete")
        service.types.delete(find_type(type_id)["id"])
        return empty()

    @route("/types/<type_id>/extra_specs", methods=["GET"])
    def specs_index(project_id, type_id):
        authorize("volume_extension:types_extra_specs:index")
        return {"extra_specs": find_type(type_id)["extra_specs"]}

    @route("/types/<type_id>/extra_specs", methods=["POST"])
    def specs_create(project_id, type_id):
        authorize("volume_extension:types_extra_specs:create")
        specs = json_body("extra_specs")["extra_specs"]
        if not specs:
            raise faults.bad_request("extra_specs must not be empty")
        service.types.set_extra_specs(find_type(type_id)["id"], specs)
        return {"extra_specs": {k: str(v) for k, v in specs.items()}}

    @route("/types/<type_id>/extra_specs/<key>", methods=["GET"])
    def specs_show(project_id, type_id, key):
        authorize("volume_extension:types_extra_specs:index")
        specs = find_type(type_id)["extra_specs"]
        if key not in specs:
            raise faults.not_found(f"Volume Type {type_id} has no extra specs with key "
                                   f"{key}.")
        return {key: specs[key]}

    @route("/types/<type_id>/extra_specs/<key>", methods=["PUT"])
    def specs_update(project_id, type_id, key):
        authorize("volume_extension:types_extra_specs:create")
        body = json_body()
        if len(body) != 1 or key not in body:
            raise faults.bad_request("Request body and URI mismatch")
        service.types.set_extra_specs(find_type(type_id)["id"], body)
        return {key: str(body[key])}

    @route("/types/<type_id>/extra_specs/<key>", methods=["DELETE"])
    def specs_delete(project_id, type_id, key):
        authorize("volume_extension:types_extra_specs:delete")
        vtype = find_type(type_id)
        if key not in vtype["extra_specs"]:
            raise faults.not_found(f"Volume Type {type_id} has no extra specs with key "
                                   f"{key}.")
        service.types.delete_extra_spec(vtype["id"], key)
        return empty()

    @route("/types/<type_id>/encryption", methods=["GET"])
    def encryption_show(project_id, type_id):
        authorize("volume_extension:volume_type_encryption")
        encryption = find_type(type_id)["encryption"]
        if not encryption:
            return {}
        return dict(encryption, volume_type_id=find_type(type_id)["id"],
                    encryption_id=find_type(type_id)["id"], deleted=False)

    @route("/types/<type_id>/encryption/<key>", methods=["GET"])
    def encryption_item(project_id, type_id, key):
        authorize("volume_extension:volume_type_encryption")
        encryption = find_type(type_id)["encryption"] or {}
        if key not in encryption:
            raise faults.not_found(f"Volume type encryption for type {type_id} has no "
                                   f"{key}.")
        return {key: encryption[key]}

    @route("/types/<type_id>/encryption", methods=["POST"])
    def encryption_create(project_id, type_id):
        authorize("volume_extension:volume_type_encryption")
        spec = json_body("encryption")["encryption"]
        vtype = find_type(type_id)
        encryption = service.types.set_encryption(vtype["id"], spec, replace=True)
        return {"encryption": dict(encryption, encryption_id=vtype["id"])}

    @route("/types/<type_id>/encryption/<encryption_id>", methods=["PUT"])
    def encryption_update(project_id, type_id, encryption_id):
        authorize("volume_extension:volume_type_encryption")
        spec = json_body("encryption")["encryption"]
        vtype = find_type(type_id)
        encryption = service.types.set_encryption(vtype["id"], spec)
        return {"encryption": {k: v for k, v in encryption.items() if k in spec}}

    @route("/types/<type_id>/encryption/<encryption_id>", methods=["DELETE"])
    def encryption_delete(project_id, type_id, encryption_id):
        authorize("volume_extension:volume_type_encryption")
        service.types.delete_encryption(find_type(type_id)["id"])
        return empty()

    # -- pools, services, hosts ----------------------------------------------------------
    @route("/scheduler-stats/get_pools", methods=["GET"])
    def get_pools(project_id):
        authorize("scheduler_extension:scheduler_stats:get_pools")
        detailed = boolean(flask.request.args.get("detail", "false"), "detail")
        pools = []
        for pool in service.catalog.pools():
            item = {"name": pool["name"]}
            if detailed:
                item["capabilities"] = pool["capabilities"]
            pools.append(item)
        return {"pools": pools}

    def matching_services() -> list[dict]:
        args = flask.request.args
        services = service.catalog.services()
        if args.get("binary"):
            services = [s for s in services if s["binary"] == args["binary"]]
        if args.get("host"):
            host = args["host"]
            services = [s for s in services
                        if s["host"] == host or s["host"].startswith(host + "@")]
        return services

    @route("/os-services", methods=["GET"])
    def services_index(project_id):
        authorize("volume_extension:services:index")
        zone = conf.storage_availability_zone
        return {"services": [views.service(s, zone, version()) for s in matching_services()]}

    @route("/os-services/<action>", methods=["PUT"])
    def services_update(project_id, action):
        authorize("volume_extension:services:update")
        body = json_body()
        if action not in ("enable", "disable", "disable-log-reason", "freeze", "thaw",
                          "set-log", "get-log", "failover_host", "failover"):
            raise faults.not_found(f"Unknown action {action}")
        if action == "disable-log-reason" and not isinstance(body.get("disabled_reason"), str):
            raise faults.bad_request("Disabled reason contains invalid characters or is too "
                                     "long")
        host, binary = body.get("host"), body.get("binary")
        known = {(s["host"], s["binary"]) for s in service.catalog.services()}
        if action in ("freeze", "thaw", "failover_host", "failover"):
            if not any(h == host for h, _ in known):
                raise faults.bad_request(f"Host {host} is not a known volume service host")
        elif (host, binary or "cinder-volume") not in known:
            raise faults.not_found(f"Service {binary} on host {host} could not be found.")
        raise faults.bad_request(f"volmigrate's services are enabled and disabled by its "
                                 f"configuration (enabled_backends), not by os-services "
                                 f"{action}")

    @route("/os-hosts", methods=["GET"])
    def hosts_index(project_id):
        authorize("volume_extension:hosts")
        zone = conf.storage_availability_zone
        return {"hosts": [{"host_name": s["host"], "service": s["binary"], "zone": zone,
                           "service-status": "available" if s["up"] else "unavailable",
                           "service-state": "enabled", "last-update": None}
                          for s in service.catalog.services()]}

    return app
