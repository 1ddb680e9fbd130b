"""Options of the API service, named as Cinder names them."""

from __future__ import annotations

import copy

from oslo_config import cfg

api_opts = [
    cfg.HostAddressOpt("osapi_volume_listen", default="127.0.0.1",
                       help="IP address the Block Storage API listens on (Cinder's option; "
                            "Cinder's default is 0.0.0.0, ours loopback)."),
    cfg.PortOpt("osapi_volume_listen_port", default=8776,
                help="Port the Block Storage API listens on."),
    cfg.IntOpt("osapi_volume_threads", default=32, min=2, max=1024,
               help="Threads serving API requests at once (the server is cheroot)."),
    cfg.StrOpt("auth_strategy", default="noauth", choices=[
        ("noauth", "no authentication: the token `user:project` names the caller, "
                   "who is an administrator (Cinder's noauth; tests and labs only)"),
        ("keystone", "Keystone tokens, checked by keystonemiddleware's auth_token "
                     "([keystone_authtoken])")],
               help="How API callers are authenticated."),
    cfg.StrOpt("public_endpoint",
               help="Base URL of this API in links it returns (e.g. when it runs behind a "
                    "proxy); default: the URL of the request."),
    cfg.IntOpt("graceful_shutdown_timeout", default=8, min=1, max=60,
               help="Seconds a SIGTERM waits for running requests and for running copies "
                    "to stop at a durable checkpoint before the process exits; the next "
                    "start resumes the migrations."),
]


def register(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(api_opts)


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [("DEFAULT", copy.deepcopy(api_opts))]
