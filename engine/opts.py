"""Every option volmigrate reads, and their validation.

``list_opts()`` feeds oslo-config-generator (entry point ``oslo.config.opts``,
namespace ``volmigrate``). Backend options are listed under a ``[backend]``
group: they belong in each section named by ``enabled_backends``.
"""

from __future__ import annotations

import copy
import glob
import os
import socket

from oslo_config import cfg, types
from sqlalchemy.engine import url as sa_url
from stevedore import ExtensionManager

from volmigrate.common.hosts import parse_host
from volmigrate.common.units import parse_size
from volmigrate.drivers.opt_types import FiniteFloatOpt, PathOpt
from volmigrate.engine.exceptions import ConfigError

DRIVER_NAMESPACE = "volmigrate.drivers"
DEFAULT_STATE_PATH = "/var/lib/volmigrate"
# 1 TiB/s: beyond any device, and far from where a rate computation could overflow.
MAX_BPS_LIMIT = 1024 ** 4
MAX_BLOCKSIZE = 64 * 1024 ** 2
# Each checkpoint syncs the destination: below 1M the syncs would dominate the
# copy; 64G is already more than a crash should ever make a copy redo.
CHECKPOINT_SIZE_RANGE = (1024 ** 2, 64 * 1024 ** 3)

default_opts = [
    PathOpt("state_path", default=DEFAULT_STATE_PATH,
            help="Directory for the service's state: the SQLite database and, by "
                 "default, the local backends' volume files."),
    cfg.StrOpt("host", default=socket.gethostname(), sample_default="localhost",
               help="Name of this node: the `node` of the node@backend#pool host "
                    "strings this service serves."),
    cfg.ListOpt("enabled_backends", default=[],
                help="Config sections, one per backend this service manages."),
    FiniteFloatOpt("migration_progress_report_interval", default=30.0, min=0.01,
                   max=86400.0,
                   help="Seconds between two progress reports of a running migration "
                        "(log line, notification and the migration row)."),
    cfg.IntOpt("volume_copy_bps_limit", default=0, min=0, max=MAX_BPS_LIMIT,
               help="Highest rate of a migration copy, in bytes per second; 0 means "
                    "unlimited."),
    cfg.StrOpt("volume_dd_blocksize", default="1M",
               help="Block size of the copy (dd's bs=, the file-I/O read size, the unit of "
                    "checkpoints), from 512 to 64M, e.g. 1M or 4M."),
    cfg.StrOpt("copy_method", default="auto", choices=[
        ("auto", "kernel where both ends are local paths, else file I/O"),
        ("dd", "dd, as the spec describes (progress from /proc/<pid>/fdinfo/1)"),
        ("kernel", "an in-kernel copy (sendfile) that skips the holes of file-backed "
                   "sources where the destination reads zeros")],
               help="How a copy between two local paths is done; a side that gives only "
                    "a file-like object is always copied with file I/O."),
    cfg.StrOpt("migration_verify", default="none", choices=[
        ("none", "trust the copy (it is made durable before the source is deleted)"),
        ("checksum", "read both sides back and compare XXH3-128 digests before the "
                     "source is deleted; a mismatch fails the migration and keeps the "
                     "source")],
               help="Whether a host copy is checked before the source is deleted."),
    cfg.StrOpt("internal_project_id", default="volmigrate-internal",
               help="Project owning the hidden destination volumes of running "
                    "migrations; its volumes are left out of listings unless asked for."),
    cfg.IntOpt("migration_workers", default=4, min=1, max=256,
               help="Migrations that copy at the same time; more requests queue."),
    cfg.StrOpt("migration_checkpoint_size", default="256M",
               help="The copy makes the destination durable and records a checkpoint "
                    "every this many bytes (from 1M to 64G, e.g. 256M); a copy "
                    "interrupted by a crash resumes from its last checkpoint, re-copying "
                    "at most this much."),
    cfg.StrOpt("default_volume_type",
               help="Volume type (name) of a volume created without one; its "
                    "`volume_backend_name` places the volume. Unset: such volumes have "
                    "no type and go to the pool with the most free capacity."),
    cfg.StrOpt("storage_availability_zone", default="nova",
               help="Availability zone of this node's volumes and services (Cinder's "
                    "option)."),
    FiniteFloatOpt("migration_heartbeat_interval", default=10.0, min=0.1, max=3600.0,
                   help="Seconds between two heartbeats of a service on the migrations "
                        "it runs. A migration whose owner is on another host and silent "
                        "for 6 heartbeats is taken over on recovery."),
]


class DatabaseUrl(types.String):
    """A SQLAlchemy URL; a SQLite file in it must be named by an absolute path.

    ``sqlite:///state.sqlite`` is relative to the directory a command runs in:
    each directory would get a database of its own, without the volumes.
    """

    def __init__(self) -> None:
        super().__init__(type_name="SQLAlchemy URL")

    def __call__(self, value) -> str:
        url = super().__call__(value)
        if not url:
            return url
        try:
            parsed = sa_url.make_url(url)
        except Exception:  # noqa: BLE001 - any parse error; never echo a password
            raise ValueError("not a SQLAlchemy URL (e.g. sqlite:////var/lib/volmigrate/"
                             "volmigrate.sqlite or postgresql://user:pw@host/db)") from None
        if parsed.get_backend_name() == "sqlite":
            path = (parsed.database or "").removeprefix("file:").partition("?")[0]
            if path and path != ":memory:" and not os.path.isabs(path):
                raise ValueError(f"the SQLite file {path!r} is a relative path: give an "
                                 "absolute one, e.g. sqlite:////var/lib/volmigrate/"
                                 "volmigrate.sqlite (four slashes)")
        return url


database_opts = [
    cfg.Opt("connection", type=DatabaseUrl(), secret=True,
            help="SQLAlchemy URL of the service database. Default: SQLite at "
                 "<state_path>/volmigrate.sqlite."),
]

taskflow_opts = [
    cfg.Opt("persistence_connection", type=DatabaseUrl(), secret=True,
            help="SQLAlchemy URL of TaskFlow's flow persistence. Default: the service "
                 "database ([database] connection)."),
]

backend_opts = [
    cfg.StrOpt("volume_driver",
               help="Driver of this backend: an entry point name of the "
                    "volmigrate.drivers namespace (e.g. local) or module:Class."),
    cfg.StrOpt("volume_backend_name",
               help="The name volume types use for this backend in their "
                    "`volume_backend_name` extra spec (Cinder's option). Default: the "
                    "section's name."),
]


def _driver_options() -> list[cfg.Opt]:
    opts: list[cfg.Opt] = []
    manager = ExtensionManager(DRIVER_NAMESPACE, invoke_on_load=False)
    for ext in sorted(manager, key=lambda e: e.name):
        for opt in getattr(ext.plugin, "options", []):
            if all(o.dest != opt.dest for o in opts):
                opts.append(opt)
    return opts


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    return [
        ("DEFAULT", copy.deepcopy(default_opts)),
        ("database", copy.deepcopy(database_opts)),
        ("taskflow", copy.deepcopy(taskflow_opts)),
        ("backend", copy.deepcopy(backend_opts + _driver_options())),
    ]


def register(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(default_opts)
    conf.register_opts(database_opts, group="database")
    conf.register_opts(taskflow_opts, group="taskflow")


def database_url(conf: cfg.ConfigOpts) -> str:
    return conf.database.connection or f"sqlite:///{conf.state_path}/volmigrate.sqlite"


def read_option(conf: cfg.ConfigOpts, name: str, group: str | None = None,
                secret: bool = False):
    """An option's value; a bad value becomes a ConfigError naming section and option
    (and the value as written, unless the option is `secret`)."""
    try:
        return getattr(conf[group], name) if group else getattr(conf, name)
    except (cfg.ConfigFileValueError, ValueError) as exc:
        where = f"[{group or 'DEFAULT'}] {name}"
        raise ConfigError(f"invalid value for {where}: "
                          f"{_why_invalid(conf, name, group, secret, exc)}") from exc
    except cfg.NoSuchOptError as exc:
        raise ConfigError(str(exc)) from exc


def _why_invalid(conf: cfg.ConfigOpts, name: str, group: str | None, secret: bool,
                 exc: Exception) -> str:
    """The value as written and the type's own words, without oslo's "Value for
    option X from LocationInfo(...) is not valid:" around them."""
    text = str(exc)
    _, marker, reason = text.partition(" is not valid: ")
    reason = reason if marker else text
    reason = reason[:1].lower() + reason[1:]
    written = config_file_sections(conf).get(group or "DEFAULT", {}).get(name)
    if written and not secret:
        return f"{written[-1]!r}: {reason}"
    return reason


def config_files(conf: cfg.ConfigOpts) -> list[str]:
    """The files oslo.config read, in its order: --config-file ones, then --config-dir's."""
    files = list(conf.config_file or [])
    for folder in ([conf.config_dir] if conf.config_dir else []):
        files += sorted(glob.glob(os.path.join(folder, "*.conf")))
    return files


def config_file_sections(conf: cfg.ConfigOpts) -> dict[str, dict[str, list[str]]]:
    """Every key written in each section of the config files: {section: {key: [values]}}.

    oslo.config has no public way to ask which options a file sets (it only
    answers for registered options), so the files are parsed again with its
    own parser. A later file's value comes after an earlier one's.
    """
    sections: dict[str, dict[str, list[str]]] = {}
    for path in config_files(conf):
        if not os.path.isfile(path):
            continue  # a pipe (--config-file <(...)) was read once, by oslo.config
        parsed: dict[str, dict[str, list[str]]] = {}
        try:
            cfg.ConfigParser(path, parsed).parse()
        except (OSError, cfg.ParseError):
            continue  # oslo.config itself reported an unreadable file already
        for section, keys in parsed.items():
            into = sections.setdefault(section, {})
            for key, values in keys.items():
                into.setdefault(key.replace("-", "_"), []).extend(values)
    return sections


def validate(conf: cfg.ConfigOpts) -> None:
    """Read every option once so a bad value stops the start with a clear message."""
    for group, options in ((None, default_opts), ("database", database_opts),
                           ("taskflow", taskflow_opts)):
        for opt in options:
            read_option(conf, opt.dest, group, secret=opt.secret)
    for name in ("volume_dd_blocksize", "migration_checkpoint_size"):
        try:
            parse_size(getattr(conf, name))
        except ValueError as exc:
            raise ConfigError(f"invalid value for [DEFAULT] {name}: {exc}") from None
    try:
        parse_host(f"{conf.host}@x")
    except ValueError:
        raise ConfigError(f"invalid value for [DEFAULT] host: {conf.host!r} (letters, "
                          f"digits and . _ : - only)") from None
    low, high = CHECKPOINT_SIZE_RANGE
    if not low <= parse_size(conf.migration_checkpoint_size) <= high:
        raise ConfigError("invalid value for [DEFAULT] migration_checkpoint_size: "
                          f"{conf.migration_checkpoint_size!r} must be between 1M and 64G")
    blocksize = parse_size(conf.volume_dd_blocksize)
    if blocksize % 512 or blocksize > MAX_BLOCKSIZE:
        raise ConfigError("invalid value for [DEFAULT] volume_dd_blocksize: "
                          f"{conf.volume_dd_blocksize!r} must be a multiple of 512 "
                          f"between 512 and 64M")
    backends = conf.enabled_backends
    if not backends:
        raise ConfigError("no backend configured: set [DEFAULT] enabled_backends to the "
                          "config sections of your backends")
    if len(set(backends)) != len(backends):
        raise ConfigError(f"[DEFAULT] enabled_backends names a backend twice: {backends}")
    for name in backends:
        try:
            parse_host(f"node@{name}")
        except ValueError:
            raise ConfigError(f"backend name {name!r} in enabled_backends is invalid "
                              f"(letters, digits and . _ : - only)") from None
