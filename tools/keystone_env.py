#!/usr/bin/env python3
"""A throwaway real Keystone on loopback, for tests of `volmigrate serve`.

Library and command line. In a scratch directory it

1. makes (or reuses) a venv with keystone==30.0.0 and gunicorn, pinned by
   tools/constraints/keystone.txt;
2. writes keystone.conf (SQLite, fernet tokens, bcrypt rounds 4, in-memory
   dogpile cache: test-only settings that make every call about 10 ms);
3. runs keystone-manage db_sync, fernet_setup, credential_setup and bootstrap
   (admin / secret, region RegionOne), once: a re-run with the same settings
   skips them;
4. starts gunicorn (1 worker, 1 thread: SQLite tolerates no more) on
   127.0.0.1:PORT through a wrapper that blanks sys.argv, and waits for
   GET /v3/ to answer 200;
5. creates the `service` project and a service user (role `service`, which
   keystone's identity:validate_token policy accepts) for keystonemiddleware's
   auth_token, and registers the block-storage and volumev3 services with a
   public endpoint http://127.0.0.1:API_PORT/v3/%(project_id)s in RegionOne.

Only the standard library is used, and every command is an argv list.

    python3 tools/keystone_env.py SCRATCH up [--port 5000] [--api-port 8776] [--venv DIR]
    python3 tools/keystone_env.py SCRATCH make-user PROJECT ROLE
    python3 tools/keystone_env.py SCRATCH down
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import grp
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
KEYSTONE_REQUIREMENTS = ["keystone==30.0.0", "gunicorn==27.0.1"]
KEYSTONE_CONSTRAINTS = TOOLS / "constraints" / "keystone.txt"

ADMIN_USER = "admin"
ADMIN_PASSWORD = "secret"
ADMIN_PROJECT = "admin"
REGION = "RegionOne"
SERVICE_PROJECT = "service"
SERVICE_USER = "volmigrate"
SERVICE_PASSWORD = "volmigrate-service-secret"
SERVICE_ROLE = "service"
# (service type, service name) registered with the volume API's endpoint.
VOLUME_SERVICES = [("block-storage", "cinderv3"), ("volumev3", "cinder-volumev3")]

# keystone's WSGI factory parses sys.argv with oslo.config: under gunicorn its
# flags make every worker exit with code 2, so the argv is blanked first.
WSGI_WRAPPER = """\
import sys
sys.argv = sys.argv[:1]
from keystone.server import wsgi
application = wsgi.initialize_public_application()
"""


class KeystoneEnvError(RuntimeError):
    """Keystone could not be set up or started."""


class VenvError(KeystoneEnvError):
    """A venv could not be made (no package index, wrong Python, ...)."""


def default_cache_dir() -> Path:
    """Where the reusable venvs live: $VOLMIGRATE_TOOLS_CACHE or ~/.cache/volmigrate-tools."""
    env = os.environ.get("VOLMIGRATE_TOOLS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "volmigrate-tools"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_python() -> str:
    """The interpreter new venvs are made from (keystone 30 needs >= 3.11)."""
    return getattr(sys, "_base_executable", None) or sys.executable


# --------------------------------------------------------------------------- venvs

@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_venv(venv: Path, requirements: list[str], constraints: Path,
                python: str | None = None, log=None) -> Path:
    """Make `venv` with `requirements` pinned by `constraints`, or reuse it.

    A venv is reused when its stamp matches the requirements, the constraints'
    content and the Python version; otherwise it is made anew. Concurrent
    callers wait on a lock file beside the venv. Raises VenvError.
    """
    venv = Path(venv)
    python = python or base_python()
    try:
        version = subprocess.run(
            [python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
            check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise VenvError(f"cannot run {python}: {exc}") from exc
    stamp_text = json.dumps({"requirements": requirements, "python": version,
                             "constraints": hashlib.sha256(constraints.read_bytes()).hexdigest()},
                            sort_keys=True)
    stamp = venv / ".volmigrate-tools-stamp"
    with _locked(venv.parent / (venv.name + ".lock")):
        if stamp.exists() and stamp.read_text() == stamp_text:
            return venv
        if venv.exists():
            shutil.rmtree(venv)
        log = log or (lambda msg: None)
        log(f"making venv {venv} ({' '.join(requirements)})")
        started = time.monotonic()
        pip_log = venv.parent / (venv.name + ".pip.log")
        try:
            subprocess.run([python, "-m", "venv", str(venv)], check=True,
                           capture_output=True, text=True, timeout=300)
            with open(pip_log, "w") as out:
                subprocess.run([str(venv / "bin" / "pip"), "install", "--disable-pip-version-check",
                                "-q", "-c", str(constraints), *requirements],
                               check=True, stdout=out, stderr=subprocess.STDOUT, timeout=1800)
        except (OSError, subprocess.SubprocessError) as exc:
            tail = pip_log.read_text()[-3000:] if pip_log.exists() else ""
            shutil.rmtree(venv, ignore_errors=True)
            raise VenvError(f"cannot make venv {venv}: {exc}\n{tail}") from exc
        stamp.write_text(stamp_text)
        log(f"venv {venv} made in {time.monotonic() - started:.1f} s")
        return venv


# --------------------------------------------------------------------------- HTTP

def http(method: str, url: str, body=None, token: str | None = None,
         timeout: float = 30.0) -> tuple[int, dict, object]:
    """One JSON request; returns (status, headers, decoded body or None). Never raises on HTTP status."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, headers, raw = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        status, headers, raw = exc.code, dict(exc.headers), exc.read()
    try:
        decoded = json.loads(raw) if raw else None
    except ValueError:
        decoded = raw.decode(errors="replace")
    return status, headers, decoded


def _expect(result, *statuses, what: str):
    status, _headers, body = result
    if status not in statuses:
        raise KeystoneEnvError(f"{what}: HTTP {status}: {body}")
    return body


# --------------------------------------------------------------------------- Keystone

class KeystoneEnv:
    """One Keystone in `scratch`/keystone, served on 127.0.0.1:`port`."""

    def __init__(self, scratch, port: int = 5000, api_port: int = 8776,
                 venv=None, python: str | None = None, log=None, template=None):
        """`template`: a dir where a freshly bootstrapped database and its keys are
        kept and copied from next time (saves the ~6-20 s of keystone-manage)."""
        self.scratch = Path(scratch).resolve()
        self.template = Path(template).resolve() if template else None
        self.port = int(port)
        self.api_port = int(api_port)
        self.venv = Path(venv).resolve() if venv else self.scratch / "ksvenv"
        self.python = python
        self.dir = self.scratch / "keystone"
        self.conf = self.dir / "keystone.conf"
        self.pid_file = self.dir / "gunicorn.pid"
        self.error_log = self.dir / "gunicorn.err"
        self.admin_user, self.admin_password = ADMIN_USER, ADMIN_PASSWORD
        self.admin_project, self.region = ADMIN_PROJECT, REGION
        self.service_user, self.service_password = SERVICE_USER, SERVICE_PASSWORD
        self.service_project = SERVICE_PROJECT
        self._admin_token: tuple[str, float] | None = None
        self._proc: subprocess.Popen | None = None
        self.log = log or (lambda msg: None)

    # ---- addresses
    @property
    def url(self) -> str:
        """Keystone's identity v3 URL, e.g. http://127.0.0.1:5000/v3/."""
        return f"http://127.0.0.1:{self.port}/v3/"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def volume_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/v3/%(project_id)s"

    # ---- whole setup
    def setup(self, daemon: bool = False) -> "KeystoneEnv":
        """venv, config, database, server, service user and catalog; idempotent."""
        self.ensure_venv()
        self.write_config()
        self.bootstrap()
        self.start(daemon=daemon)
        self.register()
        return self

    def ensure_venv(self) -> Path:
        return ensure_venv(self.venv, KEYSTONE_REQUIREMENTS, KEYSTONE_CONSTRAINTS,
                           self.python, self.log)

    def write_config(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        d = self.dir
        text = f"""\
[DEFAULT]
log_file = {d / 'keystone.log'}
debug = false
[database]
connection = sqlite:///{d / 'keystone.db'}
[token]
provider = fernet
[fernet_tokens]
key_repository = {d / 'fernet-keys'}
[fernet_receipts]
key_repository = {d / 'fernet-receipts'}
[credential]
key_repository = {d / 'credential-keys'}
[identity]
# bcrypt rounds: test-only, makes every password check cheap
password_hash_rounds = 4
[cache]
# in-process cache: safe only with one gunicorn worker
enabled = true
backend = dogpile.cache.memory
"""
        if not self.conf.exists() or self.conf.read_text() != text:
            self.conf.write_text(text)
        wrapper = d / "ks_wsgi.py"
        if not wrapper.exists() or wrapper.read_text() != WSGI_WRAPPER:
            wrapper.write_text(WSGI_WRAPPER)

    def _manage(self, *args: str) -> None:
        argv = [str(self.venv / "bin" / "keystone-manage"), "--config-file", str(self.conf), *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        if proc.returncode:
            raise KeystoneEnvError(f"{' '.join(argv)} exited {proc.returncode}:\n"
                                   f"{proc.stdout[-2000:]}{proc.stderr[-3000:]}")

    BOOTSTRAPPED = ("keystone.db", "fernet-keys", "fernet-receipts", "credential-keys",
                    "bootstrap.json")

    def bootstrap(self) -> None:
        """db_sync, key repositories and bootstrap; skipped when done already, copied
        from the template when there is one. (Endpoint URLs follow the port in register().)"""
        stamp = self.dir / "bootstrap.json"
        wanted = json.dumps({"keystone": KEYSTONE_REQUIREMENTS, "admin": self.admin_user,
                             "admin_password": self.admin_password,
                             "admin_project": self.admin_project, "region": self.region})
        if stamp.exists() and stamp.read_text() == wanted and (self.dir / "keystone.db").exists():
            return
        if self.template and (self.template / "bootstrap.json").exists() \
                and (self.template / "bootstrap.json").read_text() == wanted:
            for name in self.BOOTSTRAPPED:
                source, target = self.template / name, self.dir / name
                if target.is_dir():
                    shutil.rmtree(target)
                if source.is_dir():
                    shutil.copytree(source, target)
                else:
                    shutil.copy2(source, target)
            self.log(f"keystone database copied from {self.template}")
            return
        started = time.monotonic()
        user = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        self._manage("db_sync")
        for command, repo in (("fernet_setup", "fernet-keys"),
                              ("credential_setup", "credential-keys")):
            if not (self.dir / repo / "0").exists():
                self._manage(command, "--keystone-user", user, "--keystone-group", group)
        self._manage("bootstrap", "--bootstrap-password", self.admin_password,
                     "--bootstrap-username", self.admin_user,
                     "--bootstrap-project-name", self.admin_project,
                     "--bootstrap-admin-url", self.url,
                     "--bootstrap-public-url", self.url,
                     "--bootstrap-internal-url", self.url,
                     "--bootstrap-region-id", self.region)
        stamp.write_text(wanted)
        self.log(f"keystone database bootstrapped in {time.monotonic() - started:.1f} s")
        if self.template:
            self._save_template()

    def _save_template(self) -> None:
        staging = self.template.with_name(self.template.name + f".{os.getpid()}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name in self.BOOTSTRAPPED:
            source = self.dir / name
            if source.is_dir():
                shutil.copytree(source, staging / name)
            else:
                shutil.copy2(source, staging / name)
        shutil.rmtree(self.template, ignore_errors=True)
        try:
            staging.rename(self.template)
        except OSError:   # another run saved one meanwhile
            shutil.rmtree(staging, ignore_errors=True)

    # ---- the server
    def pid(self) -> int | None:
        """The pid of the gunicorn master this environment started, if it still runs."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        # Ours: a gunicorn whose argv names our pid file (a reused pid would not).
        if any(b"gunicorn" in a for a in cmdline) and str(self.pid_file).encode() in cmdline:
            return pid
        return None

    def ready(self) -> bool:
        try:
            return http("GET", self.url, timeout=5)[0] == 200
        except OSError:
            return False

    def start(self, timeout: float = 60.0, daemon: bool = False) -> None:
        """Start gunicorn unless ours already serves; wait until GET /v3/ answers 200.

        daemon=False: gunicorn is our child (in its own session, so a Ctrl-C meant
        for us does not reach it) and stop() reaps it; daemon=True: it outlives
        this process (the command line's `up`), found again by its pid file.
        """
        if self.pid() and self.ready():
            return
        self.stop()
        started = time.monotonic()
        env = dict(os.environ, OS_KEYSTONE_CONFIG_FILES=str(self.conf))
        argv = [str(self.venv / "bin" / "gunicorn"), "--chdir", str(self.dir),
                "--bind", f"127.0.0.1:{self.port}", "--workers", "1", "--threads", "1",
                "--timeout", "120", "--no-control-socket", "--pid", str(self.pid_file),
                "--error-logfile", str(self.error_log), "ks_wsgi:application"]
        if daemon:
            proc = subprocess.run(argv[:-1] + ["--daemon", argv[-1]], env=env,
                                  capture_output=True, text=True, timeout=60)
            if proc.returncode:
                raise KeystoneEnvError(f"gunicorn exited {proc.returncode}: {proc.stderr[-3000:]}")
        else:
            with open(self.dir / "gunicorn.out", "ab") as out:
                self._proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                              stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                self.log(f"keystone answers on {self.url} after {time.monotonic() - started:.1f} s")
                return
            if self._proc is not None and self._proc.poll() is not None:
                break
            if daemon and time.monotonic() - started > 10 and not self.pid():
                break
            time.sleep(0.2)
        tail = self.error_log.read_text()[-3000:] if self.error_log.exists() else ""
        self.stop()
        raise KeystoneEnvError(f"keystone did not answer on {self.url}:\n{tail}")

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the gunicorn this environment started (found by its pid file), nothing else."""
        pid = self.pid()
        if pid is None and self._proc is not None and self._proc.poll() is None:
            pid = self._proc.pid   # our child, before it wrote its pid file
        if pid:
            os.kill(pid, signal.SIGINT)   # gunicorn's quick shutdown (SIGTERM waits for workers)
            deadline = time.monotonic() + timeout
            while self._alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if self._alive(pid):
                if self._proc is not None and self._proc.pid == pid:
                    os.killpg(pid, signal.SIGKILL)   # the session we made: master and workers
                else:
                    os.kill(pid, signal.SIGKILL)
                while self._alive(pid) and time.monotonic() < deadline + 5:
                    time.sleep(0.1)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
            self._proc = None
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
        self._admin_token = None

    def _alive(self, pid: int) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            return self._proc.poll() is None
        return self.pid() == pid

    def memory(self) -> dict[str, int]:
        """Peak RSS (VmHWM, KiB) of the gunicorn master and its workers."""
        pid = self.pid()
        if not pid:
            return {}
        found = {"master": _vm_hwm(pid)}
        for i, child in enumerate(_children(pid)):
            found[f"worker{i}"] = _vm_hwm(child)
        return found

    # ---- REST helpers
    def issue_token(self, username: str, password: str, project_name: str | None = None,
                    domain: str = "Default", project_id: str | None = None) -> tuple[str, dict]:
        """A token (project-scoped when a project is named); returns (token, token body)."""
        auth = {"identity": {"methods": ["password"], "password": {"user": {
            "name": username, "password": password, "domain": {"name": domain}}}}}
        if project_id:
            auth["scope"] = {"project": {"id": project_id}}
        elif project_name:
            auth["scope"] = {"project": {"name": project_name, "domain": {"name": domain}}}
        status, headers, body = http("POST", self.url + "auth/tokens", {"auth": auth})
        if status != 201:
            raise KeystoneEnvError(f"token for {username}: HTTP {status}: {body}")
        token = next(v for k, v in headers.items() if k.lower() == "x-subject-token")
        return token, body["token"]

    def admin_token(self) -> str:
        if not self._admin_token or self._admin_token[1] < time.monotonic():
            token, _ = self.issue_token(self.admin_user, self.admin_password, self.admin_project)
            self._admin_token = (token, time.monotonic() + 1800)
        return self._admin_token[0]

    def api(self, method: str, path: str, body=None, *statuses: int):
        """An admin call to Keystone; `path` is relative to /v3/."""
        result = http(method, self.url + path.lstrip("/"), body, token=self.admin_token())
        return _expect(result, *(statuses or (200,)), what=f"{method} {path}")

    def _find(self, collection: str, **query) -> list[dict]:
        qs = "&".join(f"{k}={urllib.request.quote(str(v))}" for k, v in query.items())
        return self.api("GET", f"{collection}?{qs}")[collection]

    def ensure_project(self, name: str) -> str:
        found = self._find("projects", name=name, domain_id="default")
        if found:
            return found[0]["id"]
        return self.api("POST", "projects", {"project": {
            "name": name, "domain_id": "default", "description": "volmigrate tests"}},
            201)["project"]["id"]

    def ensure_user(self, name: str, password: str, project_id: str | None = None) -> str:
        found = self._find("users", name=name, domain_id="default")
        if found:
            user_id = found[0]["id"]
            try:
                self.issue_token(name, password)
            except KeystoneEnvError:
                # (a password change revokes the user's tokens: only when needed)
                self.api("PATCH", f"users/{user_id}", {"user": {"password": password}}, 200)
            return user_id
        user = {"name": name, "password": password, "domain_id": "default"}
        if project_id:
            user["default_project_id"] = project_id
        return self.api("POST", "users", {"user": user}, 201)["user"]["id"]

    def role_id(self, name: str) -> str:
        found = self._find("roles", name=name)
        if not found:
            raise KeystoneEnvError(f"no role {name!r} in keystone")
        return found[0]["id"]

    def grant(self, project_id: str, user_id: str, role: str) -> None:
        self.api("PUT", f"projects/{project_id}/users/{user_id}/roles/{self.role_id(role)}",
                 None, 204)

    def ensure_service(self, service_type: str, name: str, url: str,
                       interface: str = "public") -> str:
        """A catalog service of that type and name with one `interface` endpoint at `url`."""
        services = [s for s in self._find("services", type=service_type) if s["name"] == name]
        if services:
            service_id = services[0]["id"]
        else:
            service_id = self.api("POST", "services", {"service": {
                "type": service_type, "name": name, "enabled": True}}, 201)["service"]["id"]
        endpoints = self._find("endpoints", service_id=service_id, interface=interface,
                               region_id=self.region)
        if not endpoints:
            self.api("POST", "endpoints", {"endpoint": {
                "service_id": service_id, "interface": interface, "url": url,
                "region_id": self.region, "enabled": True}}, 201)
        else:
            for extra in endpoints[1:]:
                self.api("DELETE", f"endpoints/{extra['id']}", None, 204)
            if endpoints[0]["url"] != url:
                self.api("PATCH", f"endpoints/{endpoints[0]['id']}", {"endpoint": {"url": url}}, 200)
        return service_id

    def register(self) -> None:
        """Identity endpoints on our port; the service project and user; the volume API in the catalog."""
        for interface in ("public", "internal", "admin"):
            self.ensure_service("identity", "keystone", self.url, interface)
        project_id = self.ensure_project(self.service_project)
        user_id = self.ensure_user(self.service_user, self.service_password, project_id)
        self.grant(project_id, user_id, SERVICE_ROLE)
        for service_type, name in VOLUME_SERVICES:
            self.ensure_service(service_type, name, self.volume_endpoint)

    def make_user(self, project_name: str, role: str, username: str | None = None,
                  password: str | None = None) -> tuple[str, str, str]:
        """A user with `role` on `project_name` (both made if missing); returns (user_id, project_id, token)."""
        username = username or f"user-{secrets.token_hex(4)}"
        password = password or secrets.token_hex(8)
        project_id = self.ensure_project(project_name)
        user_id = self.ensure_user(username, password, project_id)
        self.grant(project_id, user_id, role)
        token, _ = self.issue_token(username, password, project_id=project_id)
        return user_id, project_id, token

    def delete_user(self, user_id: str) -> None:
        self.api("DELETE", f"users/{user_id}", None, 204, 404)

    def authtoken_options(self) -> dict[str, str]:
        """keystonemiddleware auth_token options for the volume API's [keystone_authtoken]."""
        return {
            "www_authenticate_uri": self.url,
            "auth_url": self.url,
            "auth_type": "password",
            "username": self.service_user,
            "password": self.service_password,
            "project_name": self.service_project,
            "user_domain_name": "Default",
            "project_domain_name": "Default",
            "region_name": self.region,
        }

    def describe(self) -> dict:
        return {"url": self.url, "port": self.port, "api_port": self.api_port,
                "venv": str(self.venv), "conf": str(self.conf), "pid": self.pid(),
                "admin": {"username": self.admin_user, "password": self.admin_password,
                          "project_name": self.admin_project, "domain": "Default"},
                "keystone_authtoken": self.authtoken_options()}


def _vm_hwm(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, ValueError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scratch", help="scratch directory (keystone/ and, by default, ksvenv/ go there)")
    parser.add_argument("--port", type=int, default=5000, help="Keystone's port (default 5000)")
    parser.add_argument("--api-port", type=int, default=8776,
                        help="port of the volume API registered in the catalog (default 8776)")
    parser.add_argument("--venv", help="keystone venv (default SCRATCH/ksvenv)")
    parser.add_argument("--template", help="dir keeping a bootstrapped database to copy from "
                                           "(made on first use)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="set up and start; prints the environment as JSON")
    sub.add_parser("down", help="stop the gunicorn started in SCRATCH")
    token = sub.add_parser("token", help="print a project-scoped token")
    token.add_argument("username")
    token.add_argument("password")
    token.add_argument("project")
    user = sub.add_parser("make-user", help="make a user with a role on a project; prints JSON")
    user.add_argument("project")
    user.add_argument("role")
    args = parser.parse_args(argv)

    env = KeystoneEnv(args.scratch, port=args.port, api_port=args.api_port, venv=args.venv,
                      template=args.template, log=lambda msg: print(msg, file=sys.stderr))
    try:
        if args.command == "up":
            env.setup(daemon=True)
            print(json.dumps(env.describe(), indent=2))
        elif args.command == "down":
            env.stop()
        elif args.command == "token":
            print(env.issue_token(args.username, args.password, args.project)[0])
        elif args.command == "make-user":
            user_id, project_id, tok = env.make_user(args.project, args.role)
            print(json.dumps({"user_id": user_id, "project_id": project_id, "token": tok}))
    except KeystoneEnvError as exc:
        print(f"keystone_env: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
