#!/usr/bin/env python3
"""Run the real tempest volume admin tests against `volmigrate serve`, all on loopback.

    python3 tools/run_tempest.py [--regex R] [--keep] [--api-port P] [--keystone-port P]

Steps: a tempest venv (tempest==47.0.0, pinned by tools/constraints/tempest.txt)
and a keystone venv (tools/keystone_env.py) in the cache dir
($VOLMIGRATE_TOOLS_CACHE, default ~/.cache/volmigrate-tools), made once and
reused; Keystone on SQLite under gunicorn; a fake `network` endpoint (a stdlib
thread answering tempest's one neutron call, so that VolumesActionsTest, which
asks for neutron, runs); `volmigrate --config-file F serve` with two local
backends lvm1 and lvm2 and auth_strategy = keystone, on fresh state; then
`tempest run --concurrency 1`. Everything but the venvs lives in a temp dir,
removed at the end unless --keep. Every process started here is stopped at the
end, also on Ctrl-C, SIGTERM or an error.

Output (stdout): the failure texts, then one line per test
`PASS|FAIL|SKIP name [reason]`, then `N passed, N failed, N skipped`.
Progress, timings and peak memory go to stderr. Exit 0 only if tests ran and
none failed; 2 on a set-up error, 3 if a venv could not be made, 130 when
interrupted.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

import keystone_env  # noqa: E402
from keystone_env import KeystoneEnv, default_cache_dir, ensure_venv, free_port, http  # noqa: E402

REPO = TOOLS.parent
TEMPEST_REQUIREMENTS = ["tempest==47.0.0"]
TEMPEST_CONSTRAINTS = TOOLS / "constraints" / "tempest.txt"
BACKENDS = ("lvm1", "lvm2")
NODE = "node1"
VENDOR_NAME = "Open Source"
DEFAULT_REGEX = (r"^tempest\.api\.volume\.admin\.(test_volume_retype|test_volume_types"
                 r"|test_volume_pools|test_volume_services|test_volumes_actions)")
# (a prefix: test_volume_types also selects _extra_specs, _negative and
# _extra_specs_negative; test_volume_services also _negative)
START = time.monotonic()
EXIT_NO_VENV = 3         # a venv could not be made (no package index?): callers may skip
REQUEST_LOG_LINES = 15   # tempest logs 5 lines a request: the last 3 requests of a failed test


def log(msg: str) -> None:
    print(f"run_tempest [{time.monotonic() - START:6.1f} s] {msg}", file=sys.stderr, flush=True)


class Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP: unwind so that everything started gets stopped."""


# --------------------------------------------------------------------------- fake neutron

class FakeNeutron:
    """Answers tempest's only network call with our settings (listing a project's
    default security groups at credential cleanup) with an empty list; 404 otherwise."""

    def __init__(self):
        calls = self.calls = []

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                calls.append(f"{self.command} {self.path}")
                path = self.path.split("?", 1)[0].rstrip("/")
                if self.command == "GET" and path.endswith("/security-groups"):
                    status, body = 200, {"security_groups": []}
                else:
                    status, body = 404, {"NeutronError": {"type": "HTTPNotFound",
                                                          "message": "fake neutron", "detail": ""}}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-neutron",
                                       daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- processes

def _vm_hwm(pid: int) -> int:
    return keystone_env._vm_hwm(pid)


def stop_process_group(proc: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    """SIGTERM the process group we made for `proc` (start_new_session), then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"{what} ignored SIGTERM for {timeout:.0f} s: SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    # anything left in the group (a worker of it) goes too
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def find_volmigrate(explicit: str | None) -> str:
    candidates = [explicit] if explicit else [
        str(Path(sys.executable).parent / "volmigrate"),
        str(REPO / ".venv" / "bin" / "volmigrate"),
        shutil.which("volmigrate")]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    raise SystemExit("run_tempest: no volmigrate executable (looked at "
                     f"{[c for c in candidates if c]}); pass --volmigrate")


def write_volmigrate_conf(tmp: Path, api_port: int, ks: KeystoneEnv) -> Path:
    state = tmp / "volmigrate-state"
    lines = ["[DEFAULT]",
             "osapi_volume_listen = 127.0.0.1",
             f"osapi_volume_listen_port = {api_port}",
             "auth_strategy = keystone",
             f"state_path = {state}",
             f"host = {NODE}",
             f"enabled_backends = {','.join(BACKENDS)}"]
    for backend in BACKENDS:
        volumes = tmp / "backends" / backend
        volumes.mkdir(parents=True, exist_ok=True)
        lines += ["", f"[{backend}]", "volume_driver = local",
                  f"local_volume_dir = {volumes}", f"volume_backend_name = {backend}"]
    lines += ["", "[keystone_authtoken]"]
    lines += [f"{k} = {v}" for k, v in ks.authtoken_options().items()]
    state.mkdir(parents=True, exist_ok=True)
    path = tmp / "volmigrate.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


def start_serve(volmigrate: str, conf: Path, api_port: int, log_path: Path,
                timeout: float = 90.0) -> subprocess.Popen:
    argv = [volmigrate, "--config-file", str(conf), "serve"]
    log(f"starting {' '.join(argv)}")
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=str(conf.parent))
    url = f"http://127.0.0.1:{api_port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            status = http("GET", url, timeout=5)[0]
        except OSError:
            time.sleep(0.2)
            continue
        if status != 300:
            log(f"GET {url} answered {status} (Cinder answers 300); going on")
        log(f"volmigrate serve answers on {url}")
        return proc
    stop_process_group(proc, "volmigrate serve")
    tail = log_path.read_text(errors="replace")[-4000:]
    raise RuntimeError(f"volmigrate serve did not answer on {url} (exit code {proc.returncode}):\n{tail}")


def write_tempest_conf(ws: Path, ks: KeystoneEnv, neutron: bool,
                       min_microversion: str | None = None,
                       max_microversion: str | None = None) -> Path:
    etc = ws / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    text = f"""\
[DEFAULT]
log_file = {ws / 'tempest.log'}
debug = true

[oslo_concurrency]
lock_path = {ws / 'locks'}

[auth]
use_dynamic_credentials = true
admin_username = {ks.admin_user}
admin_password = {ks.admin_password}
admin_project_name = {ks.admin_project}
admin_domain_name = Default
create_isolated_networks = false

[identity]
uri_v3 = {ks.url}
region = {ks.region}

[service_available]
cinder = true
nova = false
glance = false
neutron = {'true' if neutron else 'false'}
swift = false
horizon = false
placement = false

[volume]
catalog_type = block-storage
endpoint_type = publicURL
region = {ks.region}
backend_names = {','.join(BACKENDS)}
build_interval = 1
build_timeout = 60
storage_protocol = iSCSI
vendor_name = {VENDOR_NAME}
{f"min_microversion = {min_microversion}" if min_microversion else "; min_microversion unset: no OpenStack-API-Version header"}
{f"max_microversion = {max_microversion}" if max_microversion else ""}

[volume-feature-enabled]
multi_backend = true
snapshot = false
backup = false
clone = false
manage_volume = false
manage_snapshot = false
extend_attached_volume = false

[compute-feature-enabled]
volume_multiattach = false
attach_encrypted_volume = false

[validation]
run_validation = false
"""
    path = etc / "tempest.conf"
    path.write_text(text)
    return path


def run_tempest(tvenv: Path, ws: Path, conf: Path, regex: str) -> tuple[int, int]:
    """`tempest run` in the workspace; returns (exit code, its tree's peak RSS in KiB)."""
    home = ws / "home"   # so that nothing lands in the real ~/.tempest
    home.mkdir(exist_ok=True)
    env = dict(os.environ, HOME=str(home))
    argv = [str(tvenv / "bin" / "tempest"), "run", "--config-file", str(conf),
            "--concurrency", "1", "--regex", regex]
    log(f"running {' '.join(argv)}")
    with open(ws / "tempest-run.out", "wb") as out:
        proc = subprocess.Popen(argv, cwd=str(ws), env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _pid, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            stop_process_group(proc, "tempest")
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)   # a stray stestr worker, if any
    return proc.returncode, usage.ru_maxrss


def read_results(tvenv: Path, ws: Path) -> list[dict]:
    repo = ws / ".stestr"
    runs = sorted((p for p in repo.glob("*") if p.name.isdigit()), key=lambda p: int(p.name))
    if not runs:
        return []
    proc = subprocess.run([str(tvenv / "bin" / "python"), str(TOOLS / "subunit_results.py"),
                           str(runs[-1])], capture_output=True, text=True, timeout=120)
    if proc.returncode:
        raise RuntimeError(f"cannot read the subunit stream {runs[-1]}: {proc.stderr[-2000:]}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def short_name(test_id: str) -> str:
    """The test id without tempest's [id-...] attributes; a class fixture's
    `setUpClass (pkg.mod.Class)` becomes `pkg.mod.Class.setUpClass` (no spaces)."""
    name = test_id.split("[", 1)[0]
    fixture, _, owner = name.partition(" (")
    if owner.endswith(")") and " " not in fixture:
        name = f"{owner[:-1]}.{fixture}"
    return name


def exception_text(traceback: str, limit: int = 400) -> str:
    """The exception line(s) that end a Python traceback, on one line."""
    lines = traceback.rstrip().splitlines()
    start = max((i for i, ln in enumerate(lines) if ln.startswith("Traceback")), default=-1)
    tail = next((lines[i:] for i in range(start + 1, len(lines))
                 if lines[i] and not lines[i][0].isspace()), lines[-1:])
    text = " ".join(" ".join(tail).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def report(results: list[dict]) -> tuple[int, int, int]:
    verdicts = []
    for r in results:
        status = r["status"]
        if status in ("success", "xfail"):
            verdicts.append(("PASS", r, ""))
        elif status == "skip":
            verdicts.append(("SKIP", r, r["reason"].strip()))
        else:
            why = exception_text(r["traceback"]) or f"test status {status}"
            verdicts.append(("FAIL", r, why))
    failures = [(r, why) for v, r, why in verdicts if v == "FAIL"]
    for r, why in failures:
        print(f"==== FAIL {short_name(r['id'])}")
        print((r["traceback"] or why).rstrip())
        trace = r.get("log", "").rstrip().splitlines()
        if trace:
            print(f"---- its last requests (of {len(trace)} log lines)")
            for line in trace[-REQUEST_LOG_LINES:]:
                print(line if len(line) <= 1500 else line[:1500] + " ...")
        print()
    for verdict, r, why in sorted(verdicts, key=lambda v: short_name(v[1]["id"])):
        line = f"{verdict} {short_name(r['id'])}"
        if why:
            line += " " + " ".join(why.split())
        print(line)
    counts = tuple(sum(1 for v in verdicts if v[0] == k) for k in ("PASS", "FAIL", "SKIP"))
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regex", default=DEFAULT_REGEX,
                        help="tempest test selection regex (default: retype, types, pools, "
                             "services and admin volume actions)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, configs)")
    parser.add_argument("--api-port", type=int, default=0, help="volume API port (default: a free one)")
    parser.add_argument("--keystone-port", type=int, default=0, help="Keystone port (default: a free one)")
    parser.add_argument("--volmigrate", help="volmigrate executable (default: the project venv's)")
    parser.add_argument("--min-microversion", help="tempest.conf [volume] min_microversion "
                        "(e.g. 3.71: every volume call then sends and expects that version)")
    parser.add_argument("--max-microversion", help="tempest.conf [volume] max_microversion "
                        "(e.g. latest)")
    parser.add_argument("--no-fake-neutron", action="store_true",
                        help="no fake network endpoint: VolumesActionsTest then skips")
    args = parser.parse_args(argv)

    def on_signal(_signum, _frame):
        raise Interrupted()
    # Also SIGINT: a shell's background job starts with it ignored.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, on_signal)

    volmigrate = find_volmigrate(args.volmigrate)
    cache = default_cache_dir()
    tmp = Path(tempfile.mkdtemp(prefix="volmigrate-tempest-"))
    log(f"temp dir {tmp}; cache {cache}")
    timings: dict[str, float] = {}
    memory: dict[str, int] = {}
    stack = contextlib.ExitStack()
    code = 1
    try:
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            kfut = pool.submit(ensure_venv, cache / "keystone-venv", keystone_env.KEYSTONE_REQUIREMENTS,
                               keystone_env.KEYSTONE_CONSTRAINTS, None, log)
            tfut = pool.submit(ensure_venv, cache / "tempest-venv", TEMPEST_REQUIREMENTS,
                               TEMPEST_CONSTRAINTS, None, log)
            kvenv, tvenv = kfut.result(), tfut.result()
        timings["venvs"] = time.monotonic() - t0

        t0 = time.monotonic()
        api_port = args.api_port or free_port()
        ks_port = args.keystone_port or free_port()
        while ks_port == api_port:
            ks_port = free_port()
        ks = KeystoneEnv(tmp, port=ks_port, api_port=api_port, venv=kvenv, log=log,
                         template=cache / "keystone-template")
        stack.callback(ks.stop)
        ks.setup()
        neutron = not args.no_fake_neutron
        if neutron:
            fake = FakeNeutron()
            stack.callback(fake.stop)
            ks.ensure_service("network", "neutron", fake.url)
        timings["keystone"] = time.monotonic() - t0

        t0 = time.monotonic()
        conf = write_volmigrate_conf(tmp, api_port, ks)
        serve = start_serve(volmigrate, conf, api_port, tmp / "volmigrate-serve.log")
        stack.callback(stop_process_group, serve, "volmigrate serve")
        timings["serve start"] = time.monotonic() - t0

        t0 = time.monotonic()
        ws = tmp / "tempest"
        tconf = write_tempest_conf(ws, ks, neutron, args.min_microversion, args.max_microversion)
        rc, tempest_peak = run_tempest(tvenv, ws, tconf, args.regex)
        timings["tempest run"] = time.monotonic() - t0
        memory["tempest (peak of its process tree)"] = tempest_peak
        memory["volmigrate serve"] = _vm_hwm(serve.pid)
        for name, kib in ks.memory().items():
            memory[f"keystone gunicorn {name}"] = kib
        if serve.poll() is not None:
            log(f"volmigrate serve exited during the run with code {serve.returncode}")

        results = read_results(tvenv, ws)
        passed, failed, skipped = report(results)
        if not results:
            tail = (ws / "tempest-run.out").read_text(errors="replace")[-4000:]
            print(f"tempest ran no test (exit code {rc}):\n{tail}")
        elif rc and not failed:
            print(f"tempest exited {rc} although no test failed; see {ws / 'tempest-run.out'}")
        print(f"{passed} passed, {failed} failed, {skipped} skipped", flush=True)
        code = 0 if results and not failed and rc == 0 else 1
    except (KeyboardInterrupt, Interrupted):   # (Ctrl-C during the venvs' threads)
        log("interrupted: stopping everything")
        code = 130
    except keystone_env.VenvError as exc:
        log(f"error: {exc}")
        code = EXIT_NO_VENV
    except (RuntimeError, keystone_env.KeystoneEnvError) as exc:
        log(f"error: {exc}")
        code = 2
    finally:
        t0 = time.monotonic()
        try:
            stack.close()
        finally:
            for signum in (signal.SIGTERM, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            timings["teardown"] = time.monotonic() - t0
            log("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
                + f"; total {time.monotonic() - START:.1f} s")
            if memory:
                log("peak RSS: " + ", ".join(f"{k} {v / 1024:.0f} MiB" for k, v in memory.items()))
            if args.keep:
                log(f"kept {tmp} (volmigrate-serve.log, tempest/tempest.log, keystone/)")
            else:
                shutil.rmtree(tmp, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
