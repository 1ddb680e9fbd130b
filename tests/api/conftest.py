"""Fixtures of the API tests: a real `volmigrate serve` on loopback."""

import pytest

from apitest import ApiServer


@pytest.fixture
def api(tmp_path):
    server = ApiServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def make_api(tmp_path):
    servers = []

    def make(**options) -> ApiServer:
        server = ApiServer(tmp_path, **options)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
