"""`volmigrate serve`: the Block Storage API service (see api/server.py)."""

from __future__ import annotations

import argparse

from volmigrate.cli import output
from volmigrate.engine import MigrationService


def cmd_serve(svc: MigrationService, args: argparse.Namespace) -> int:
    from volmigrate.api import server

    server.serve(svc, output.say)
    return 0
