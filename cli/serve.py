"""`volmigrate serve`: the Block Storage API service (see api/server.py)."""

from __future__ import annotations

import argparse

from volmigrate.cli import output
from volmigrate.engine import MigrationService


def cmd_serve(svc: MigrationService, args: argparse.Namespace) -> int:
    from volmigrate.api import server

    def ready(url: str) -> None:
        output.say(f"volmigrate: serving the Block Storage API on {url}/v3 "
                   f"(auth_strategy {svc.conf.auth_strategy})")

    server.serve(svc, ready)
    return 0
