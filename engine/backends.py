"""Loading the driver of each backend named in ``enabled_backends``."""

from __future__ import annotations

import importlib

from oslo_config import cfg
from stevedore import ExtensionManager
from stevedore import driver as stevedore_driver
from stevedore.exception import NoMatches

from volmigrate.drivers.base import VolumeDriver
from volmigrate.drivers.exceptions import DriverError
from volmigrate.engine.exceptions import ConfigError
from volmigrate.engine.opts import DRIVER_NAMESPACE, backend_opts, read_option


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


def known_drivers() -> list[str]:
    return sorted(ExtensionManager(DRIVER_NAMESPACE, invoke_on_load=False).names())


def load_drivers(conf: cfg.ConfigOpts) -> dict[str, VolumeDriver]:
    """Build and set up one driver per enabled backend, or raise ConfigError."""
    sections = set(conf.list_all_sections())
    for backend in conf.enabled_backends:
        if backend not in sections:
            raise ConfigError(f"backend {backend!r} is in enabled_backends but the config "
                              f"has no [{backend}] section")
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
            read_option(conf, opt.dest, backend)
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
