"""Policy defaults in code, with Cinder's rule names and defaults.

`oslopolicy-sample-generator --namespace volmigrate` writes them out
(etc/volmigrate/policy.yaml.sample); a `policy.yaml` ([oslo_policy]
policy_file) overrides any of them.
"""

from __future__ import annotations

from oslo_config import cfg
from oslo_policy import policy

ADMIN_API = "rule:admin_api"
MEMBER = "rule:system_admin_or_project_member"
READER = "rule:system_admin_or_project_reader"

_base = [
    policy.RuleDefault("context_is_admin", "role:admin",
                       description="Who is an administrator."),
    policy.RuleDefault("admin_api", "is_admin:True or role:admin",
                       description="Administrators only (noauth callers are)."),
    policy.RuleDefault("system_admin_or_project_member",
                       "is_admin:True or role:admin or (role:member and "
                       "project_id:%(project_id)s)",
                       description="An administrator, or a member of the owning project."),
    policy.RuleDefault("system_admin_or_project_reader",
                       "is_admin:True or role:admin or ((role:reader or role:member) and "
                       "project_id:%(project_id)s)",
                       description="An administrator, or a reader of the owning project."),
]


def _rule(name: str, check: str, description: str, method: str, path: str):
    return policy.DocumentedRuleDefault(
        name=name, check_str=check, description=description,
        operations=[{"method": method, "path": path}])


ACTION = "/volumes/{volume_id}/action"

_rules = [
    _rule("volume:create", MEMBER, "Create a volume.", "POST", "/volumes"),
    _rule("volume:get", READER, "Show a volume.", "GET", "/volumes/{volume_id}"),
    _rule("volume:get_all", READER, "List volumes.", "GET", "/volumes/detail"),
    _rule("volume:delete", MEMBER, "Delete a volume.", "DELETE", "/volumes/{volume_id}"),
    _rule("volume:force_delete", ADMIN_API, "Force-delete a volume.", "POST",
          ACTION + " (os-force_delete)"),
    _rule("volume:retype", MEMBER, "Retype a volume (migrating it when needed).", "POST",
          ACTION + " (os-retype)"),
    _rule("volume_extension:volume_admin_actions:migrate_volume", ADMIN_API,
          "Migrate a volume to another host.", "POST", ACTION + " (os-migrate_volume)"),
    _rule("volume_extension:volume_admin_actions:reset_status", ADMIN_API,
          "Reset a volume's status, attach status and migration status.", "POST",
          ACTION + " (os-reset_status)"),
    _rule("volume_extension:volume_admin_actions:force_detach", ADMIN_API,
          "Force-detach a volume.", "POST", ACTION + " (os-force_detach)"),
    _rule("volume_extension:volume_admin_actions:force_delete", ADMIN_API,
          "Force-delete a volume.", "POST", ACTION + " (os-force_delete)"),
    _rule("volume_extension:volume_actions:attach", MEMBER, "Attach a volume.", "POST",
          ACTION + " (os-attach)"),
    _rule("volume_extension:volume_actions:detach", MEMBER, "Detach a volume.", "POST",
          ACTION + " (os-detach)"),
    _rule("volume_extension:volume_mig_status_attribute", ADMIN_API,
          "Show a volume's migration status (os-vol-mig-status-attr:*).", "GET",
          "/volumes/{volume_id}"),
    _rule("volume_extension:volume_host_attribute", ADMIN_API,
          "Show a volume's host (os-vol-host-attr:host).", "GET", "/volumes/{volume_id}"),
    _rule("volume_extension:volume_tenant_attribute", READER,
          "Show a volume's project (os-vol-tenant-attr:tenant_id).", "GET",
          "/volumes/{volume_id}"),
    _rule("volume_extension:migration_progress", ADMIN_API,
          "Read a volume's migration progress (volmigrate's extension, Manila's shape).",
          "POST", ACTION + " (os-migration_get_progress)"),
    _rule("volume_extension:migration_cancel", ADMIN_API,
          "Cancel a volume's running migration (volmigrate's extension).", "POST",
          ACTION + " (os-migration_cancel)"),
    _rule("scheduler_extension:scheduler_stats:get_pools", ADMIN_API,
          "List the pools (migration targets).", "GET", "/scheduler-stats/get_pools"),
    _rule("volume_extension:services:index", ADMIN_API, "List the services.", "GET",
          "/os-services"),
    _rule("volume_extension:services:update", ADMIN_API, "Enable or disable a service.",
          "PUT", "/os-services/{action}"),
    _rule("volume_extension:hosts", ADMIN_API, "List the hosts.", "GET", "/os-hosts"),
    _rule("volume_extension:type_create", ADMIN_API, "Create a volume type.", "POST",
          "/types"),
    _rule("volume_extension:type_update", ADMIN_API, "Update a volume type.", "PUT",
          "/types/{type_id}"),
    _rule("volume_extension:type_delete", ADMIN_API, "Delete a volume type.", "DELETE",
          "/types/{type_id}"),
    _rule("volume_extension:type_get", READER, "Show a volume type.", "GET",
          "/types/{type_id}"),
    _rule("volume_extension:type_get_all", READER, "List volume types.", "GET", "/types"),
    _rule("volume_extension:types_extra_specs:index", READER,
          "List a volume type's extra specs.", "GET", "/types/{type_id}/extra_specs"),
    _rule("volume_extension:types_extra_specs:create", ADMIN_API,
          "Set a volume type's extra specs.", "POST", "/types/{type_id}/extra_specs"),
    _rule("volume_extension:types_extra_specs:delete", ADMIN_API,
          "Delete a volume type's extra spec.", "DELETE",
          "/types/{type_id}/extra_specs/{key}"),
    _rule("volume_extension:volume_type_encryption", ADMIN_API,
          "Manage a volume type's encryption type.", "POST", "/types/{type_id}/encryption"),
]


def list_rules() -> list[policy.RuleDefault]:
    """The entry point of oslo.policy's tools (namespace `volmigrate`)."""
    return _base + _rules


def make_enforcer(conf: cfg.ConfigOpts) -> policy.Enforcer:
    enforcer = policy.Enforcer(conf)
    enforcer.register_defaults(list_rules())
    enforcer.load_rules()
    return enforcer
