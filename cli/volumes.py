"""The commands on volumes: create, delete, list, show, progress, attach, detach.

list, show and progress only read the database (``MigrationService.connect()``),
so they can watch a migration another process runs; they are the commands
an administrator types most, and they import nothing that runs migrations.
The others start the service in this process (embedded mode).
"""

from __future__ import annotations

import argparse

from volmigrate.cli import output, signals


def create(svc, args: argparse.Namespace) -> int:
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


def delete(svc, args: argparse.Namespace) -> int:
    svc.start(recover=False)
    with signals.current().held():  # never a volume left `deleting`
        svc.delete_volume(args.volume)
        output.say(f"Volume {args.volume} deleted.")
    return 0


def list_(svc, args: argparse.Namespace) -> int:
    volumes = svc.list_volumes(migration_status=args.migration_status,
                               include_hidden=args.all)
    if args.format == "json":
        output.print_json(volumes)
    else:
        output.print_rows(volumes, output.VOLUME_COLUMNS)
    return 0


def show(svc, args: argparse.Namespace) -> int:
    _show_volume(svc.get_volume(args.volume, include_hidden=True), args.format)
    return 0


def progress(svc, args: argparse.Namespace) -> int:
    info = svc.get_migration_progress(args.volume)
    if args.format == "json":
        output.print_json(info)
    else:
        output.print_record(info, title=f"migration of volume {args.volume}")
    return 0


def attach(svc, args: argparse.Namespace) -> int:
    svc.start(recover=False)
    volume = svc.attach_volume(args.volume)
    output.say(f"Volume {args.volume} attached (status {volume['status']}).")
    return 0


def detach(svc, args: argparse.Namespace) -> int:
    svc.start(recover=False)
    volume = svc.detach_volume(args.volume)
    output.say(f"Volume {args.volume} detached (status {volume['status']}).")
    return 0
