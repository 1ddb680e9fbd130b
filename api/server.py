"""`volmigrate serve`: the WSGI pipeline, the cheroot server, and stopping for a restart.

The engine's threads (flows, copies, the abort watcher) live in this one
process beside cheroot's request threads. SIGTERM or SIGINT stop it the way
a service manager expects: no new requests, running requests get
`graceful_shutdown_timeout` to end, running copies stop at a durable
checkpoint (nothing is rolled back), and the process exits; the next start
resumes the migrations from their checkpoints.
"""

from __future__ import annotations

import ipaddress
import logging as std_logging
import os
import signal
import threading
import time

from cheroot import wsgi
from oslo_log import log as logging
from oslo_middleware import http_proxy_to_wsgi, request_id, sizelimit

from volmigrate.api import opts as api_opts
from volmigrate.api.app import create_app
from volmigrate.api.context import NoAuthMiddleware
from volmigrate.engine import MigrationService
from volmigrate.engine.exceptions import ConfigError
from volmigrate.engine.opts import read_option

LOG = logging.getLogger(__name__)

# Paths answered without a caller: version discovery (clients ask before they
# have a token, and keystoneauth sends none there).
PUBLIC_PATHS = ("", "/v3")
# Connections the kernel queues while every request thread is busy.
REQUEST_QUEUE_SIZE = 1024


def build_pipeline(service: MigrationService):
    """The WSGI app: oslo.middleware, then authentication, then the Flask app."""
    conf = service.conf
    app = create_app(service)
    if conf.auth_strategy == "keystone":
        from keystonemiddleware import auth_token
        authed = auth_token.AuthProtocol(app, {"oslo_config_config": conf})
    else:
        authed = NoAuthMiddleware(app)

    def dispatch(environ, start_response):
        if environ.get("PATH_INFO", "").rstrip("/") in PUBLIC_PATHS:
            return app(environ, start_response)
        return authed(environ, start_response)

    pipeline = request_id.RequestId(dispatch, conf)
    pipeline = sizelimit.RequestBodySizeLimiter(pipeline, conf)
    return http_proxy_to_wsgi.HTTPProxyToWSGI(pipeline, conf)


def make_server(service: MigrationService) -> wsgi.Server:
    conf = service.conf
    server = wsgi.Server((conf.osapi_volume_listen, conf.osapi_volume_listen_port),
                         build_pipeline(service), numthreads=conf.osapi_volume_threads,
                         server_name="volmigrate")
    server.shutdown_timeout = max(1, conf.graceful_shutdown_timeout // 2)
    # cheroot's defaults (a listen backlog of 5, 10 kept-alive connections) made
    # 32 clients reconnect for a third of their calls, overflow the backlog and
    # wait out SYN retries of 1-2 s (benchmarks/bench_api.py).
    server.request_queue_size = REQUEST_QUEUE_SIZE
    server.keep_alive_conn_limit = max(conf.osapi_volume_threads, 10)
    return server


def endpoint(service: MigrationService, server: wsgi.Server) -> str:
    host, port = server.bind_addr[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def serve(service: MigrationService, say) -> None:
    """Start the engine (recovering what crashed), serve until a stopping signal, exit.

    `say(line)` tells the operator the address once the port is bound, and
    what each running migration did when the service stopped. Never returns
    after a signal: the process ends with os._exit, since parked copy threads
    must not be joined (see MigrationService.stop_for_restart).
    """
    conf = service.conf
    api_opts.register(conf)
    for opt in api_opts.api_opts:  # a bad value is one clear line, before anything starts
        read_option(conf, opt.dest)
    server = make_server(service)
    try:
        server.prepare()  # binds: a busy port fails here, before anything is served
    except OSError as exc:
        errno_text = os.strerror(exc.errno) if exc.errno else ""
        reason = errno_text or str(exc).rpartition("] ")[2].rstrip(")") or str(exc)
        raise ConfigError(f"cannot listen on {conf.osapi_volume_listen}:"
                          f"{conf.osapi_volume_listen_port}: {reason}") from exc
    # Bound before the engine starts: a second service on a taken port must not
    # resume anything (recovery) and then fail.
    service.start(recover=True)
    thread = threading.Thread(target=server.serve, name="api-server", daemon=True)
    thread.start()
    url = endpoint(service, server)
    LOG.info("Serving the Block Storage API on %s (auth_strategy %s)", url,
             conf.auth_strategy)
    say(f"volmigrate: serving the Block Storage API on {url}/v3 (auth_strategy "
        f"{conf.auth_strategy})")
    if conf.auth_strategy == "noauth" and not _loopback(conf.osapi_volume_listen):
        warning = (f"auth_strategy noauth on {conf.osapi_volume_listen}: anyone who can "
                   f"reach this address is an administrator; use auth_strategy keystone")
        LOG.warning("%s", warning)
        say(f"volmigrate: warning: {warning}")
    try:
        while thread.is_alive():
            signal.pause()
    except BaseException as exc:  # the command's signal guard raises Interrupted
        LOG.warning("Stopping (%s): no new requests; running copies stop at a durable "
                    "checkpoint and resume at the next start", exc)
    stop(service, server, say)


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def stop(service: MigrationService, server: wsgi.Server, say) -> None:
    deadline = time.monotonic() + service.conf.graceful_shutdown_timeout
    try:
        server.stop()
    except Exception:  # noqa: BLE001 - stopping goes on whatever cheroot says
        LOG.exception("Stopping the API server failed")
    try:
        stopped = service.stop_for_restart(max(0.5, deadline - time.monotonic()))
    except Exception:  # noqa: BLE001
        LOG.exception("Stopping the migrations failed; they resume at the next start")
        stopped = {}
    for migration_id, what in stopped.items():
        say(f"volmigrate: migration {migration_id} {what}; it resumes at the next start")
    say("volmigrate: stopped")
    LOG.info("Stopped")
    std_logging.shutdown()
    os._exit(0)
