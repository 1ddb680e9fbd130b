"""Who is calling: the request context, from Keystone's headers or Cinder's noauth token."""

from __future__ import annotations

import dataclasses

from volmigrate.api import faults


@dataclasses.dataclass(frozen=True)
class RequestContext:
    user_id: str | None
    project_id: str | None
    roles: tuple[str, ...]
    is_admin: bool
    request_id: str | None = None

    def credentials(self) -> dict:
        """What oslo.policy checks against."""
        return {"user_id": self.user_id, "project_id": self.project_id,
                "roles": list(self.roles), "is_admin": self.is_admin}


def from_environ(environ: dict, admin_check) -> RequestContext:
    """The caller as keystonemiddleware (or the noauth middleware) described it.

    keystonemiddleware sets X-Identity-Status; a request it let through
    without a valid token (it never does here: delay_auth_decision is off)
    would be refused.
    """
    if environ.get("HTTP_X_IDENTITY_STATUS", "Confirmed") != "Confirmed":
        raise faults.Fault(401, "Authentication required")
    roles = tuple(r.strip().lower() for r in environ.get("HTTP_X_ROLES", "").split(",")
                  if r.strip())
    user = environ.get("HTTP_X_USER_ID")
    project = environ.get("HTTP_X_PROJECT_ID") or environ.get("HTTP_X_TENANT_ID")
    forced = environ.get("volmigrate.noauth_admin", False)
    partial = RequestContext(user, project, roles, bool(forced),
                             environ.get("openstack.request_id"))
    is_admin = forced or admin_check(partial)
    return dataclasses.replace(partial, is_admin=is_admin)


class NoAuthMiddleware:
    """Cinder's `noauth`: the token `user:project` names the caller, an administrator.

    No token is taken as `admin:admin` (Cinder would answer the legacy 204
    handshake instead; openstacksdk's http_basic sends none). For tests and
    labs only: anyone who can reach the port is an administrator.
    """

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ, start_response):
        token = environ.get("HTTP_X_AUTH_TOKEN", "")
        if token:
            user, _, project = token.partition(":")
            project = project or user
        else:
            user = environ.get("HTTP_X_AUTH_USER", "admin")
            project = environ.get("HTTP_X_AUTH_PROJECT_ID", "admin")
        environ["HTTP_X_USER_ID"] = user
        environ["HTTP_X_PROJECT_ID"] = project
        environ["HTTP_X_ROLES"] = "admin"
        environ["HTTP_X_IDENTITY_STATUS"] = "Confirmed"
        environ["volmigrate.noauth_admin"] = True
        return self.app(environ, start_response)
