"""A real `volmigrate serve` process on loopback, and the HTTP calls the tests make to it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import requests

from vmtest import MiB, PATIENCE, write_config

BIN = os.path.dirname(sys.executable)
PROJECT = "0123abcd"
GiB = 1024 * MiB


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PortTaken(Exception):
    pass


class ApiServer:
    """`volmigrate --config-file ... serve` as a child process, two local backends lvm1, lvm2."""

    def __init__(self, tmp_path, sections: dict[str, dict] | None = None, **options) -> None:
        self.tmp_path = tmp_path
        self.sections = sections or {}
        self.port = free_port()
        options.setdefault("osapi_volume_listen_port", self.port)
        self.options = options
        self.write_config(**options)
        self.process: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def write_config(self, **options) -> None:
        self.options = options
        backends = {name: {"local_volume_dir": str(self.tmp_path / name)}
                    for name in ("lvm1", "lvm2")}
        for name in backends:
            (self.tmp_path / name).mkdir(exist_ok=True)
        self.config = write_config(self.tmp_path, backends, **options)
        with open(self.config, "a") as f:
            for name, values in self.sections.items():
                f.write(f"\n[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))

    def start(self, attempts: int = 3) -> "ApiServer":
        """Start it; a port taken since it was chosen (another test process) gets another."""
        for _ in range(attempts - 1):
            try:
                return self._start()
            except PortTaken:
                self.port = free_port()
                self.url = f"http://127.0.0.1:{self.port}"
                self.write_config(**dict(self.options, osapi_volume_listen_port=self.port))
        return self._start()

    def _start(self) -> "ApiServer":
        log = open(self.tmp_path / "serve.out", "ab")
        self.process = subprocess.Popen(
            [os.path.join(BIN, "volmigrate"), "--config-file", self.config, "serve"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if "Address already in use" in self.output().splitlines()[-1]:
                    raise PortTaken(self.output())
                raise AssertionError(f"volmigrate serve exited {self.process.returncode}: "
                                     f"{self.output()}")
            try:
                if requests.get(self.url + "/", timeout=5).status_code == 300:
                    return self
            except requests.ConnectionError:
                time.sleep(0.05)
        raise AssertionError(f"volmigrate serve did not answer in 60 s: {self.output()}")

    def output(self) -> str:
        return (self.tmp_path / "serve.out").read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()

    # -- HTTP ---------------------------------------------------------------
    def headers(self, token: str = f"admin:{PROJECT}", version: str | None = None) -> dict:
        headers = {"X-Auth-Token": token, "Content-Type": "application/json",
                   "Accept": "application/json"}
        if version:
            headers["OpenStack-API-Version"] = f"volume {version}"
        return headers

    def call(self, method: str, path: str, body=None, *, token: str = f"admin:{PROJECT}",
             version: str | None = None, raw: bytes | None = None,
             project: str | None = PROJECT) -> requests.Response:
        prefix = f"/v3/{project}" if project else "/v3"
        data = raw if raw is not None else (None if body is None else json.dumps(body))
        return requests.request(method, self.url + prefix + path, data=data,
                                headers=self.headers(token, version), timeout=PATIENCE)

    def volume(self, volume_id: str) -> dict:
        response = self.call("GET", f"/volumes/{volume_id}", version="3.71")
        assert response.status_code == 200, response.text
        return response.json()["volume"]

    def create_type(self, name: str, backend: str | None = None) -> dict:
        spec = {"name": name}
        if backend:
            spec["extra_specs"] = {"volume_backend_name": backend}
        response = self.call("POST", "/types", {"volume_type": spec})
        assert response.status_code == 200, response.text
        return response.json()["volume_type"]

    def create_volume(self, name: str, volume_type: str | None = None, size: int = 1) -> dict:
        spec = {"name": name, "size": size}
        if volume_type:
            spec["volume_type"] = volume_type
        response = self.call("POST", "/volumes", {"volume": spec})
        assert response.status_code == 202, response.text
        return response.json()["volume"]

    def host_of(self, volume_id: str) -> str:
        return self.volume(volume_id)["os-vol-host-attr:host"]

    def other_host(self, volume_id: str) -> str:
        """The pool of the backend the volume is not on (placement picks by free space)."""
        here = self.host_of(volume_id)
        return "node1@lvm2#lvm2" if "@lvm1#" in here else "node1@lvm1#lvm1"

    def action(self, volume_id: str, body: dict, **kwargs) -> requests.Response:
        return self.call("POST", f"/volumes/{volume_id}/action", body, **kwargs)

    def wait_migration(self, volume_id: str, timeout: float = PATIENCE) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            volume = self.volume(volume_id)
            if volume["migration_status"] in ("success", "error"):
                return volume
            time.sleep(0.05)
        raise AssertionError(f"migration of {volume_id} did not end in {timeout:g} s")

    def data_file(self, volume: dict) -> str:
        """The local file holding the volume's data now (after a migration: name_id's)."""
        host = volume["os-vol-host-attr:host"]
        backend = host.partition("@")[2].partition("#")[0]
        name = volume["os-vol-mig-status-attr:name_id"] or volume["id"]
        return str(self.tmp_path / backend / f"volume-{name}")
