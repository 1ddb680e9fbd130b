"""The `volmigrate` command's arguments: one sub-command per action.

Built on every run, before anything else: it imports nothing but oslo.config
and the names of the migration cases (flows/constants.py, not the flow
factories, which bring TaskFlow).
"""

from __future__ import annotations

import argparse

from oslo_config import cfg

from volmigrate.flows import constants as flow_c

# The cases `flow graph` draws without a service; flows/cases.py maps each to
# its factory (a test holds the two lists equal).
CASES = (flow_c.CASE_HOST_COPY_PATHS, flow_c.CASE_HOST_COPY_FILE_IO,
         flow_c.CASE_DRIVER_ASSISTED)

# Simulators of hardware we cannot have, each a module with main(argv) -> int.
SIMULATORS = {"storwize": "volmigrate.drivers.simulators.storwize"}


def _add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="output format")


def add_command_parsers(subparsers) -> None:
    """oslo.config's SubCommandOpt handler: one parser per command."""
    p = subparsers.add_parser("create", help="create an empty volume")
    p.add_argument("--size", required=True, help="size, e.g. 64M or 10G")
    # dests differ from the option names oslo.config keeps in the same namespace
    # ("host" is [DEFAULT] host, "name" is the sub-command's name).
    p.add_argument("--host", dest="volume_host", required=True, help="node@backend[#pool]")
    p.add_argument("--name", dest="volume_name")
    _add_format(p)

    p = subparsers.add_parser("delete", help="delete a volume and its data")
    p.add_argument("volume")

    p = subparsers.add_parser("list", help="list volumes")
    p.add_argument("--migration-status", help="only volumes with this migration status "
                                              "(starting, migrating, completing, success, "
                                              "error, none)")
    p.add_argument("--all", action="store_true",
                   help="include the hidden destination volumes of running migrations")
    _add_format(p)

    p = subparsers.add_parser("show", help="show a volume")
    p.add_argument("volume")
    _add_format(p)

    p = subparsers.add_parser("migrate", help="migrate a volume to another host")
    p.add_argument("volume")
    p.add_argument("dest_host", metavar="HOST", help="destination node@backend[#pool]")
    p.add_argument("--force", "--lock-volume", dest="lock_volume", action="store_true",
                   help="lock the volume (status maintenance) during the migration")
    p.add_argument("--force-host-copy", action="store_true",
                   help="copy through this host even if the backend could move it itself")
    p.add_argument("--wait", action="store_true", help="show a live progress bar")

    p = subparsers.add_parser("progress", help="progress of a volume's latest migration")
    p.add_argument("volume")
    _add_format(p)

    for name, text in (("attach", "mark a volume attached (in-use)"),
                       ("detach", "mark a volume detached (available)")):
        p = subparsers.add_parser(name, help=text)
        p.add_argument("volume")

    p = subparsers.add_parser("simulator", help="serve a simulator of a storage array for "
                                                "tests and demos (not a real array)")
    p.add_argument("kind", choices=sorted(SIMULATORS))
    p.add_argument("simulator_args", nargs=argparse.REMAINDER,
                   help="the simulator's own options (see: volmigrate simulator KIND --help)")

    p = subparsers.add_parser("flow", help="inspect migration flows (for developers)")
    actions = p.add_subparsers(dest="flow_action", required=True)
    sub = actions.add_parser("list", help="every migration's flow and its state")
    _add_format(sub)
    sub = actions.add_parser("show", help="every atom of a migration's flow")
    sub.add_argument("migration", help="a migration id, or a volume id (its latest)")
    _add_format(sub)
    sub = actions.add_parser("graph", help="the execution graph of a case or a migration")
    sub.add_argument("target", help=f"a case ({', '.join(CASES)}) or a migration")
    sub.add_argument("--format", choices=("text", "dot"), default="text")

    p = subparsers.add_parser("cancel", help="cancel a volume's running migration: the copy "
                              "stops and everything is rolled back")
    p.add_argument("volume")

    subparsers.add_parser("serve", help="run the Block Storage (Cinder v3) API service with "
                          "the engine, until SIGTERM")

    subparsers.add_parser("recover", help="resume (or roll back) the migrations a crashed "
                                          "process left, and wait until they end")

    subparsers.add_parser("cleanup", help="remove the data that finished (rolled back) "
                                          "migrations could not delete, once its backend "
                                          "is enabled; exit 1 if some remains")

    p = subparsers.add_parser("demo", help="run real migrations (local backends, then the "
                                           "Storwize simulator) in a temporary directory "
                                           "and show them")
    p.add_argument("--size", default="256M", help="volume size (default 256M)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")


command_opt = cfg.SubCommandOpt("command", title="Commands", handler=add_command_parsers,
                                help="run `volmigrate COMMAND --help` for details")
