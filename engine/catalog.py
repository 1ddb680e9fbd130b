"""What this node offers: its pools (migration targets), its services, and placement.

Pools and services are read from the drivers each time they are asked for:
capacity changes as volumes come and go, and a backend that cannot report
(an array that does not answer) shows as down rather than with stale numbers.
"""

from __future__ import annotations

import math

from oslo_log import log as logging

from volmigrate.common.hosts import Host
from volmigrate.drivers.exceptions import DriverError
from volmigrate.engine.context import ServiceContext
from volmigrate.engine.exceptions import InvalidInput
from volmigrate.engine.opts import read_option
from volmigrate.engine.types import backend_name_of

LOG = logging.getLogger(__name__)

GiB = 1024 ** 3


class NoValidBackend(InvalidInput):
    """No enabled backend can hold the volume (Cinder's NoValidBackend)."""


class Catalog:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def backend_name(self, backend: str) -> str:
        """The backend's `volume_backend_name` (its section's name unless set)."""
        return read_option(self.ctx.conf, "volume_backend_name", backend) or backend

    def backend_stats(self) -> dict[str, dict | None]:
        """Each enabled backend's stats, or None when its driver cannot report now."""
        stats: dict[str, dict | None] = {}
        for backend, driver in self.ctx.drivers.items():
            try:
                stats[backend] = driver.get_volume_stats()
            except DriverError as exc:
                LOG.warning("Backend %s cannot report its pools: %s", backend, exc)
                stats[backend] = None
        return stats

    def pools(self) -> list[dict]:
        """Every pool as `{"name": "node@backend#pool", "capabilities": {...}}`."""
        node = self.ctx.conf.host
        found = []
        for backend, stats in self.backend_stats().items():
            if stats is None:
                continue
            driver = self.ctx.drivers[backend]
            for pool in stats["pools"]:
                found.append({
                    "name": str(Host(node, backend, pool["pool_name"])),
                    "backend": backend,
                    "capabilities": {
                        "pool_name": pool["pool_name"],
                        "volume_backend_name": self.backend_name(backend),
                        "total_capacity_gb": pool["total_capacity_gb"],
                        "free_capacity_gb": pool["free_capacity_gb"],
                        "reserved_percentage": 0,
                        "vendor_name": driver.vendor_name,
                        "driver_version": driver.driver_version,
                        "storage_protocol": driver.storage_protocol,
                        "QoS_support": False,
                        "thin_provisioning_support": bool(
                            stats.get("thin_provisioning_support")),
                        "migration_progress_report": bool(
                            stats.get("migration_progress_report")),
                        "timestamp": None,
                        # Cinder's: where a driver-assisted move could take a volume.
                        **({"location_info": stats["location_info"]}
                           if stats.get("location_info") else {}),
                    },
                })
        return found

    def services(self) -> list[dict]:
        """The scheduler (placement, in this process) and one volume service per backend."""
        node = self.ctx.conf.host
        stats = self.backend_stats()
        services = [{"binary": "cinder-scheduler", "host": node, "up": True}]
        for backend in self.ctx.drivers:
            services.append({"binary": "cinder-volume", "host": f"{node}@{backend}",
                             "up": stats[backend] is not None})
        return services

    def place(self, size_bytes: int, volume_type: dict | None,
              exclude_backend: str | None = None) -> Host:
        """The pool a new volume (or a retype's destination) goes to.

        As Cinder's filter scheduler with its default filters and weigher: the
        backends whose `volume_backend_name` the type asks for (all when it
        asks for none), the pools with room for the volume, then the most free
        capacity.
        """
        wanted = backend_name_of(volume_type)
        size_gb = math.ceil(size_bytes / GiB)
        candidates = [p for p in self.pools()
                      if (wanted is None or p["capabilities"]["volume_backend_name"] == wanted)
                      and p["backend"] != exclude_backend]
        if not candidates:
            named = f"volume_backend_name {wanted!r}" if wanted else "a pool"
            raise NoValidBackend(f"No valid backend was found: no enabled backend has "
                                 f"{named} (enabled: "
                                 f"{', '.join(self.backend_name(b) for b in self.ctx.drivers)})")
        roomy = [p for p in candidates if p["capabilities"]["free_capacity_gb"] >= size_gb]
        if not roomy:
            raise NoValidBackend(f"No valid backend was found: no pool has {size_gb} GiB "
                                 f"free (most free: {max(p['capabilities']['free_capacity_gb'] for p in candidates)} GiB)")
        best = max(roomy, key=lambda p: p["capabilities"]["free_capacity_gb"])
        backend, _, pool = best["name"].partition("@")[2].partition("#")
        return Host(self.ctx.conf.host, backend, pool)
