"""The `volmigrate` command.

Commands that change volumes start the service in this process (embedded
mode), so `migrate` returns only when its migration has ended. Read-only
commands (list, show, progress) only open the database, so they can watch a
migration another process runs.
"""

from __future__ import annotations

import argparse
import importlib
import logging as std_logging
import os
import sys
import warnings

# TaskFlow's optional eventlet support imports eventlet, which warns on import.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

from oslo_config import cfg
from oslo_log import log as logging

from volmigrate.cli import faults, migrations, output, signals
from volmigrate.engine import MigrationService, backends, inspection, persistence
from volmigrate.engine.exceptions import VolmigrateError
from volmigrate.engine.recovery import LEFTOVER_KEPT
from volmigrate.engine.units import parse_volume_size
from volmigrate.flows.cases import CASES

LOG = logging.getLogger(__name__)

QUIET_LOGGERS = ["alembic=WARN", "oslo_service=WARN", "stevedore=WARN", "taskflow=WARN",
                 "oslo.messaging=WARN", "oslo.messaging.notification=INFO"]


def _add_format(parser) -> None:
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="output format")


def add_command_parsers(subparsers) -> None:
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


def _setup_logging(conf: cfg.ConfigOpts) -> None:
    """Log to <state_path>/volmigrate.log unless the configuration says where.

    That file is the "server log" the accepted message points to, away from
    the terminal. When it cannot be written (a read-only state directory,
    where only the commands that read work), the log goes to stderr with
    warnings and errors only: a command that reads stays quiet, and what would
    explain a failure is not lost. The file is opened here first so that
    oslo.log is never asked to open a file it cannot.
    """
    logging.set_defaults(default_log_levels=logging.get_default_log_levels() + QUIET_LOGGERS)
    unwritable = False
    if not (conf.log_file or conf.log_dir or conf.use_stderr or conf.use_journal):
        path = os.path.join(conf.state_path, "volmigrate.log")
        try:
            os.makedirs(conf.state_path, exist_ok=True)
            with open(path, "a"):
                pass
        except OSError:
            unwritable = True
            conf.set_override("use_stderr", True)
        else:
            conf.set_override("log_file", path)
    logging.setup(conf, "volmigrate")
    if unwritable:
        for handler in std_logging.getLogger().handlers:
            handler.setLevel(std_logging.WARNING)


def _cmd_create(svc, args) -> int:
    svc.start(recover=False)
    # A signal waits for the volume and its data to exist, and for it to be shown.
    with signals.current().held():
        volume = svc.create_volume(args.size, args.volume_host, name=args.volume_name)
        _show_volume(volume, args.format)
    return 0


def _show_volume(volume: dict, fmt: str) -> None:
    if fmt == "json":
        output.print_json(volume)
    else:
        output.print_record(volume, title=f"volume {volume['id']}")


def _cmd_delete(svc, args) -> int:
    svc.start(recover=False)
    with signals.current().held():  # never a volume left `deleting`
        svc.delete_volume(args.volume)
        output.say(f"Volume {args.volume} deleted.")
    return 0


def _cmd_list(svc, args) -> int:
    volumes = svc.list_volumes(migration_status=args.migration_status,
                               include_hidden=args.all)
    if args.format == "json":
        output.print_json(volumes)
    else:
        output.print_rows(volumes, output.VOLUME_COLUMNS)
    return 0


def _cmd_show(svc, args) -> int:
    _show_volume(svc.get_volume(args.volume, include_hidden=True), args.format)
    return 0


def _cmd_progress(svc, args) -> int:
    info = svc.get_migration_progress(args.volume)
    if args.format == "json":
        output.print_json(info)
    else:
        output.print_record(info, title=f"migration of volume {args.volume}")
    return 0


def _cmd_attach(svc, args) -> int:
    svc.start(recover=False)
    volume = svc.attach_volume(args.volume)
    output.say(f"Volume {args.volume} attached (status {volume['status']}).")
    return 0


def _cmd_detach(svc, args) -> int:
    svc.start(recover=False)
    volume = svc.detach_volume(args.volume)
    output.say(f"Volume {args.volume} detached (status {volume['status']}).")
    return 0


def _cmd_cleanup(svc, args) -> int:
    """Only the leftovers part of `recover`: one line per leftover, non-zero if some stay."""
    svc.start(recover=False)
    with signals.current().held():  # a claimed leftover is deleted, or given back
        results = svc.clean_up_leftovers()
    if not results:
        output.say("Nothing to clean up: no migration left data behind.")
        return 0
    for result in results:
        line = (f"Migration {result['migration_id']} of volume {result['volume_id']}: "
                f"{result['action']} ({result['detail']})")
        (output.error if result["action"] == LEFTOVER_KEPT else output.say)(line)
    return 1 if any(r["action"] == LEFTOVER_KEPT for r in results) else 0


def _cmd_flow(svc, args) -> int:
    backend = persistence.open_backend(svc.db.engine)
    try:
        if args.flow_action == "list":
            flows = inspection.list_flows(svc.db, backend)
            if args.format == "json":
                output.print_json(flows)
            else:
                output.print_rows(flows, ("migration_id", "volume_id", "case", "flow_state",
                                          "migration_state", "started_at", "finished_at"))
        elif args.flow_action == "show":
            shown = inspection.show_flow(svc.db, backend, args.migration)
            if args.format == "json":
                output.print_json(shown)
            else:
                output.print_record(shown["migration"], title="migration")
                output.say(f"flow {shown['flow_uuid']}: {shown['flow_state']}")
                output.print_rows(shown["atoms"], ("name", "state", "intention", "progress",
                                                   "result"))
                for atom in shown["atoms"]:
                    if atom["failure"]:
                        output.say(f"\n{atom['name']} failed: {atom['failure']['type']}: "
                                   f"{atom['failure']['message']}\n"
                                   f"{atom['failure']['traceback']}", keep="\n")
        else:
            _print_graph(inspection.flow_graph(args.target, svc.db, backend), args.format)
    except LookupError as exc:
        output.error(f"volmigrate: {exc}")
        return 1
    return 0


def _print_graph(graph, fmt: str) -> None:
    text = inspection.graph_to_dot(graph) if fmt == "dot" else inspection.graph_to_text(graph)
    sys.stdout.write(output.safe(text, keep="\n"))


# Simulators of hardware we cannot have, each a module with main(argv) -> int.
SIMULATORS = {"storwize": "volmigrate.drivers.simulators.storwize"}

COMMANDS = {
    "create": _cmd_create, "delete": _cmd_delete, "list": _cmd_list, "show": _cmd_show,
    "migrate": migrations.cmd_migrate, "progress": _cmd_progress, "attach": _cmd_attach,
    "detach": _cmd_detach, "recover": migrations.cmd_recover, "flow": _cmd_flow,
    "cleanup": _cmd_cleanup,
}


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit status: 0 done, 1 failed (one line on stderr says
    why; a bad option value too), 2 bad usage (arguments, an unparsable config
    file), 128 + N stopped by signal N."""
    conf = cfg.ConfigOpts()
    logging.register_options(conf)
    conf.register_cli_opt(command_opt)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulator"] and argv[1:2] and argv[1] in SIMULATORS:
        # A simulator parses its own options and needs no volmigrate config.
        module = importlib.import_module(SIMULATORS[argv[1]])
        return module.main(argv[2:])
    # A log that cannot be written (a full state filesystem) must not print
    # logging's own tracebacks on the terminal; the command's line says what failed.
    std_logging.raiseExceptions = False
    guard = signals.SignalGuard()
    with output.protected_std_streams():
        guard.install()
        try:
            return _main(conf, argv)
        except signals.Interrupted as exc:
            output.error(f"volmigrate: stopped by {exc.name}")
            return exc.exit_status
        finally:
            guard.uninstall()


def _main(conf: cfg.ConfigOpts, argv: list[str]) -> int:
    try:
        with output.escaping_stderr():  # argparse repeats what was typed
            conf(argv, project="volmigrate")
    except (cfg.Error, ValueError) as exc:
        output.error(f"volmigrate: {exc}")
        return 2
    if conf.command.name == "demo":
        from volmigrate.cli import demo
        try:
            parse_volume_size(conf.command.size)
            return demo.run(conf.command.size, keep=conf.command.keep)
        except ValueError as exc:
            output.error(f"volmigrate: {exc}")
            return 2
    command = conf.command
    if command.name == "flow" and command.flow_action == "graph" \
            and command.target in CASES:  # a case's graph needs no service
        _print_graph(inspection.case_graph(command.target), command.format)
        return 0
    svc = MigrationService(conf)
    logging_ready = False
    try:
        try:
            svc.connect()
            _setup_logging(conf)
            logging_ready = True
            for warning in backends.unknown_options(conf):  # ignored by oslo.config
                output.error(f"volmigrate: warning: {warning}")
            return COMMANDS[conf.command.name](svc, conf.command)
        finally:
            signals.current().stop_raising()  # svc.stop() below must run to its end
            svc.stop()
    except Exception as exc:
        return faults.report(exc, conf, svc, logging_ready, _setup_logging)


if __name__ == "__main__":
    sys.exit(main())
