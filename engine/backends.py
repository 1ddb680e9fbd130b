"""Loading the driver of each backend named in ``enabled_backends``."""

from __future__ import annotations

import difflib
import importlib

from oslo_config import cfg
from oslo_log import log as logging
from stevedore import ExtensionManager
from stevedore import driver as stevedore_driver
from stevedore.exception import NoMatches

from volmigrate.db import session as db_session
from volmigrate.drivers.base import VolumeDriver
from volmigrate.drivers.exceptions import DriverError
from volmigrate.engine.exceptions import ConfigError
from volmigrate.engine.opts import (DRIVER_NAMESPACE, backend_opts, config_file_sections,
                                    database_url, read_option)

LOG = logging.getLogger(__name__)


def _driver_class(name: str, backend: str) -> type[VolumeDriver]:
    if ":" in name:
        module_name, _, class_name = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"[{backend}] volume_driver = {name}: cannot load it: {exc}")
    else:
        try:
            cls = stevedore_driver.DriverManager(
                DRIVER_NAMESPACE, name, invoke_on_load=False).driver
        except (NoMatches, RuntimeError):
            raise ConfigError(f"[{backend}] volume_driver = {name}: no such driver "
                              f"(known: {', '.join(known_drivers())})") from None
    if not (isinstance(cls, type) and issubclass(cls, VolumeDriver)):
        raise ConfigError(f"[{backend}] volume_driver = {name} is not a volume driver")
    return cls


def driver_class_of(conf: cfg.ConfigOpts, backend: str) -> type[VolumeDriver] | None:
    """The driver class configured for `backend`, without starting it; None if unknown."""
    if backend not in conf.enabled_backends:
        return None
    conf.register_opts(backend_opts, group=backend)
    try:
        return _driver_class(read_option(conf, "volume_driver", backend) or "", backend)
    except ConfigError:
        return None


def known_drivers() -> list[str]:
    return sorted(ExtensionManager(DRIVER_NAMESPACE, invoke_on_load=False).names())


def unknown_options(conf: cfg.ConfigOpts) -> list[str]:
    """One sentence per option written in a backend's section that its driver does
    not have, e.g. ``[fast] local_volume_dri is not an option of the local driver
    (did you mean local_volume_dir?)``.

    oslo.config ignores such keys, so a misspelt option silently fell back to
    its default (volumes in the default directory). Never raises: a backend
    whose driver cannot be loaded is reported when the service starts.
    """
    try:
        backends = list(conf.enabled_backends)
    except (cfg.Error, ValueError):
        return []
    written = config_file_sections(conf)
    found = []
    for backend in backends:
        keys = written.get(backend)
        if not keys:
            continue
        name = (keys.get("volume_driver") or [""])[-1]
        try:
            cls = _driver_class(name, backend)
        except Exception:  # noqa: BLE001 - no driver, a wrong or broken one: start() says so
            continue
        known = _option_names(backend_opts + cls.options)
        for key in keys:
            if key in known:
                continue
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = (f"did you mean {close[0]}?" if close
                    else f"its options: {', '.join(sorted(known))}")
            found.append(f"[{backend}] {key} is not an option of the {name} driver "
                         f"({hint})")
    return found


def _option_names(options: list[cfg.Opt]) -> set[str]:
    names = set()
    for opt in options:
        names.add(opt.dest)
        names.update(d.name for d in opt.deprecated_opts if d.name)
    return names


def check_state_writable(conf: cfg.ConfigOpts) -> None:
    """Raise ConfigError when the state database (or TaskFlow's, if separate) cannot
    be written: a read-only state directory, an immutable file.

    Such a database is opened read-only (the commands that only read work
    there); a service that would run migrations on it must not start, or its
    first write would fail half way through a request.
    """
    for what, url in (("state database", database_url(conf)),
                      ("flow database ([taskflow] persistence_connection)",
                       conf.taskflow.persistence_connection)):
        reason = db_session.why_not_writable(url) if url else None
        if reason:
            raise ConfigError(f"cannot write the {what} {db_session.sqlite_path(url)}: "
                              f"{reason}; only list, show, progress and flow list/show "
                              f"work on it")


def load_drivers(conf: cfg.ConfigOpts) -> dict[str, VolumeDriver]:
    """Build and set up one driver per enabled backend, or raise ConfigError.

    Only a service that runs migrations loads drivers: its state database is
    checked writable first, before any driver touches its storage.
    """
    check_state_writable(conf)
    sections = set(conf.list_all_sections())
    for backend in conf.enabled_backends:
        if backend not in sections:
            raise ConfigError(f"backend {backend!r} is in enabled_backends but the config "
                              f"has no [{backend}] section")
    for warning in unknown_options(conf):
        LOG.warning("%s", warning)
    # Check every backend's options before any driver touches its storage.
    classes: dict[str, type[VolumeDriver]] = {}
    for backend in conf.enabled_backends:
        conf.register_opts(backend_opts, group=backend)
        name = read_option(conf, "volume_driver", backend)
        if not name:
            raise ConfigError(f"[{backend}] volume_driver is not set")
        cls = _driver_class(name, backend)
        conf.register_opts(cls.options, group=backend)
        for opt in cls.options:
            read_option(conf, opt.dest, backend, secret=opt.secret)
        classes[backend] = cls
    drivers: dict[str, VolumeDriver] = {}
    for backend, cls in classes.items():
        driver = cls(conf[backend], backend, conf.state_path)
        try:
            driver.do_setup()
        except DriverError as exc:
            raise ConfigError(f"backend {backend}: {exc}") from exc
        drivers[backend] = driver
    return drivers
