"""The `volmigrate` command.

Commands that change volumes start the service in this process (embedded
mode), so `migrate` returns only when its migration has ended. Read-only
commands (list, show, progress) only open the database, so they can watch a
migration another process runs.

Start-up is most of what a read-only command costs, and it is imports: each
command's module is imported when that command runs (COMMANDS below), so
that `list` loads neither TaskFlow, nor oslo.messaging, nor the drivers' SSH
library; tests/unit/test_startup_imports.py holds that.
"""

from __future__ import annotations

import argparse
import importlib
import logging as std_logging
import os
import sys
import warnings
from collections.abc import Callable

# TaskFlow's optional eventlet support imports eventlet, which warns on import.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

from oslo_config import cfg  # noqa: E402
from oslo_log import log as logging  # noqa: E402

from volmigrate.cli import output, signals  # noqa: E402
from volmigrate.cli.parser import CASES, SIMULATORS, command_opt  # noqa: E402

LOG = logging.getLogger(__name__)

QUIET_LOGGERS = ["alembic=WARN", "oslo_service=WARN", "stevedore=WARN", "taskflow=WARN",
                 "oslo.messaging=WARN", "oslo.messaging.notification=INFO"]

# Each command: (module of volmigrate.cli, function(service, args) -> exit status).
COMMANDS = {
    "create": ("volumes", "create"), "delete": ("volumes", "delete"),
    "list": ("volumes", "list_"), "show": ("volumes", "show"),
    "progress": ("volumes", "progress"), "attach": ("volumes", "attach"),
    "detach": ("volumes", "detach"), "migrate": ("migrations", "cmd_migrate"),
    "recover": ("migrations", "cmd_recover"), "cleanup": ("migrations", "cmd_cleanup"),
    "flow": ("flow", "flow"), "cancel": ("migrations", "cmd_cancel"),
    "serve": ("serve", "cmd_serve"),
}


def command_function(name: str) -> Callable[[object, argparse.Namespace], int]:
    """The function that runs command `name`, its module imported now."""
    module, function = COMMANDS[name]
    return getattr(importlib.import_module(f"volmigrate.cli.{module}"), function)


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
    command = conf.command
    if command.name == "demo":
        return _demo(command)
    if command.name == "flow" and command.flow_action == "graph" \
            and command.target in CASES:  # a case's graph needs no service
        from volmigrate.cli import flow
        return flow.case_graph(command.target, command.format)
    from volmigrate.engine import MigrationService
    svc = MigrationService(conf)
    logging_ready = False
    try:
        try:
            svc.connect()
            _setup_logging(conf)
            logging_ready = True
            from volmigrate.engine import backends
            for warning in backends.unknown_options(conf):  # ignored by oslo.config
                output.error(f"volmigrate: warning: {warning}")
            return command_function(command.name)(svc, command)
        finally:
            signals.current().stop_raising()  # svc.stop() below must run to its end
            svc.stop()
    except Exception as exc:
        from volmigrate.cli import faults  # only a failed command needs it
        return faults.report(exc, conf, svc, logging_ready, _setup_logging)


def _demo(command) -> int:
    from volmigrate.cli import demo
    try:  # a bad --size is bad usage
        return demo.run(command.size, keep=command.keep)
    except ValueError as exc:
        output.error(f"volmigrate: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
