"""Integration fixtures: a real Keystone (tools/keystone_env.py) on loopback.

Tests here are marked `integration` (each module sets pytestmark; select them
with `-m integration`, or leave them out with `-m "not integration"`). The first run makes the keystone
and tempest venvs in $VOLMIGRATE_TOOLS_CACHE (default ~/.cache/volmigrate-tools)
from the package index; without it they skip and say why.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"
sys.path.insert(0, str(TOOLS))

import keystone_env  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "integration: needs venvs from the package index and real "
                   "Keystone / tempest processes on loopback (tests/integration)")


class Keystone:
    """What the `keystone` fixture yields."""

    def __init__(self, env: keystone_env.KeystoneEnv):
        self.env = env
        self.url = env.url                      # http://127.0.0.1:PORT/v3/
        self.admin_username = env.admin_user
        self.admin_password = env.admin_password
        self.admin_project_name = env.admin_project
        self.admin_domain_name = "Default"
        self.region = env.region
        self.authtoken_options = env.authtoken_options()   # for [keystone_authtoken]
        self._users: list[str] = []

    def admin_token(self) -> str:
        return self.env.admin_token()

    def make_user(self, project_name: str, role: str) -> tuple[str, str, str]:
        """A new user with `role` on `project_name` (made if missing): (user_id, project_id, token)."""
        user_id, project_id, token = self.env.make_user(project_name, role)
        self._users.append(user_id)
        return user_id, project_id, token

    def issue_token(self, username: str, password: str, project_name: str) -> str:
        return self.env.issue_token(username, password, project_name)[0]

    def cleanup(self) -> None:
        for user_id in self._users:
            self.env.delete_user(user_id)


@pytest.fixture(scope="session")
def keystone(tmp_path_factory):
    """A real Keystone on a free loopback port, for the whole session."""
    cache = keystone_env.default_cache_dir()
    env = keystone_env.KeystoneEnv(tmp_path_factory.mktemp("keystone"),
                                   port=keystone_env.free_port(),
                                   api_port=keystone_env.free_port(),
                                   venv=cache / "keystone-venv",
                                   template=cache / "keystone-template")
    try:
        env.ensure_venv()
    except keystone_env.VenvError as exc:
        pytest.skip(f"no keystone venv (package index unreachable?): {str(exc)[:500]}")
    try:
        env.setup()
        ks = Keystone(env)
        yield ks
        ks.cleanup()
    finally:
        env.stop()


def pytest_collection_finish(session):
    """Tempest runs beside the rest of the suite (see test_tempest.start_early)."""
    from test_tempest import start_early
    start_early(session)


def pytest_sessionfinish(session):
    from test_tempest import stop_early
    stop_early(session)
