"""The LVM backend: each volume is a logical volume of one volume group (lvm2).

Volumes are made and removed with the real lvm2 commands (lvcreate, lvremove,
lvs, vgs), run through ``root_helper``. How a migration reaches an LV's data
depends on ``lvm_activation``:

- ``dm``: the LV is activated by device-mapper and copied as ``/dev/VG/LV``,
  as on any normal Linux host;
- ``loop``: for hosts without device-mapper (containers, some CI machines),
  lvm2 manages only the metadata (``--driverloaded n``) and the LV's extents
  are exposed as a loop device over the physical volume, at the offset lvm2
  reports (``pe_start`` plus the first extent times the extent size). New LVs
  are made contiguous so that one loop device covers each. This reaches the
  very blocks dm would map; it is a test-mode activation, not a replacement
  for device-mapper on production hosts.
- ``auto``: dm where ``/dev/mapper/control`` answers, else loop.

Thin LVs (``lvm_type = thin``) need device-mapper to activate their pool.
doc/lvm-driver.md says more.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import subprocess
from typing import Any

from oslo_config import cfg
from oslo_log import log as logging

from volmigrate.drivers import base, loopdev
from volmigrate.drivers.exceptions import DriverConfigError, DriverError
from volmigrate.drivers.opt_types import PathOpt

LOG = logging.getLogger(__name__)

DM_CONTROL = "/dev/mapper/control"
ACTIVATION_DM = "dm"
ACTIVATION_LOOP = "loop"
LVM_CONF_NAME = "lvm.conf"

lvm_opts = [
    cfg.StrOpt("volume_group", default="cinder-volumes",
               help="The volume group holding this backend's volumes."),
    cfg.StrOpt("lvm_type", default="default", choices=["default", "thin"],
               help="default: linear LVs; thin: thin LVs in the thin pool "
                    "lvm_thin_pool_name (needs device-mapper)."),
    cfg.StrOpt("lvm_thin_pool_name",
               help="Thin pool for lvm_type = thin. Default: <volume_group>-pool."),
    cfg.StrOpt("lvm_activation", default="auto", choices=[
        ("auto", "dm where /dev/mapper/control answers, else loop"),
        (ACTIVATION_DM, "activate LVs with device-mapper and copy /dev/VG/LV"),
        (ACTIVATION_LOOP, "no device-mapper: expose an LV's extents as a loop device "
                          "over its physical volume (test mode)")],
               help="How a migration reaches an LV's data."),
    PathOpt("lvm_conf_file",
            help="An lvm.conf for this backend's lvm2 commands: its directory "
                 "becomes LVM_SYSTEM_DIR, so the file must be named lvm.conf. "
                 "E.g. to restrict the devices lvm2 scans. Default: the system's."),
    cfg.StrOpt("root_helper", default="",
               help="Command prefix to run lvm2 and losetup as root, e.g. 'sudo'."),
]

# lvm2 warnings that say only what loop activation means; never the cause of an error.
_EXPECTED_WARNINGS = ("Activation disabled", "not zeroed", "NOT backed up")


def device_mapper_works() -> bool:
    """Whether the kernel's device-mapper answers (the control node may exist without it).

    Opening the node fails with ENODEV (or it is missing) where the kernel has
    no device-mapper; a permission error means it is there but root-only, as
    for a driver that reaches it through ``root_helper``.
    """
    try:
        os.close(os.open(DM_CONTROL, os.O_RDWR))
    except OSError as exc:
        return exc.errno in (errno.EACCES, errno.EPERM)
    return True


class LVMDriver(base.VolumeDriver):
    """Volumes as logical volumes of ``volume_group``, reached by dm or loop activation."""

    options = lvm_opts

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._pe_starts: dict[str, int] = {}

    # -- commands -------------------------------------------------------------
    def _lvm_env(self) -> dict[str, str]:
        env = {"LVM_SUPPRESS_FD_WARNINGS": "1", "LC_ALL": "C"}
        if self.configuration.lvm_conf_file:
            env["LVM_SYSTEM_DIR"] = os.path.dirname(
                os.path.abspath(self.configuration.lvm_conf_file))
        return env

    @property
    def _helper(self) -> list[str]:
        """``root_helper`` as the argument list put before every command."""
        return shlex.split(self.configuration.root_helper or "")

    def _run(self, *args: str, check: bool = True,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run a command as root (through root_helper), as an argument list.

        ``env`` goes through ``env VAR=value`` after the helper, because sudo
        and rootwrap drop the caller's environment (LVM_SYSTEM_DIR with it).
        """
        helper = self._helper
        command = list(args)
        if env and helper:
            command = ["env", *(f"{k}={v}" for k, v in env.items()), *command]
        try:
            proc = subprocess.run(helper + command, capture_output=True, text=True,
                                  check=False, env=dict(os.environ, **(env or {})))
        except OSError as exc:
            raise DriverError(f"cannot run {(helper + command)[0]}: {exc}") from exc
        if check and proc.returncode != 0:
            raise DriverError(f"{args[0]} failed: {self._error_text(proc.stderr)}")
        return proc

    @staticmethod
    def _error_text(stderr: str) -> str:
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        errors = [line for line in lines if not line.startswith("WARNING:")]
        warnings = [line for line in lines if line.startswith("WARNING:")
                    and not any(w in line for w in _EXPECTED_WARNINGS)]
        return "; ".join(errors or warnings) or "no message"

    def _lvm(self, command: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """An lvm2 command; without device-mapper, told not to look for it."""
        extra = ["--driverloaded", "n"] if self.activation == ACTIVATION_LOOP else []
        return self._run(command, *extra, *args, check=check, env=self._lvm_env())

    def _report(self, command: str, kind: str, fields: str, *args: str) -> list[dict]:
        proc = self._lvm(command, "--reportformat", "json", "--units", "b", "--nosuffix",
                         "-o", fields, *args)
        try:
            return json.loads(proc.stdout)["report"][0][kind]
        except (ValueError, KeyError, IndexError) as exc:
            raise DriverError(f"cannot parse the output of {command}: {exc}") from exc

    # -- setup and stats ------------------------------------------------------
    @property
    def vg(self) -> str:
        return self.configuration.volume_group

    @property
    def thin(self) -> bool:
        return self.configuration.lvm_type == "thin"

    @property
    def thin_pool(self) -> str:
        return self.configuration.lvm_thin_pool_name or f"{self.vg}-pool"

    @property
    def activation(self) -> str:
        """``dm`` or ``loop``: what ``lvm_activation`` means on this host."""
        chosen = self.configuration.lvm_activation
        if chosen == "auto":
            return ACTIVATION_DM if device_mapper_works() else ACTIVATION_LOOP
        return chosen

    def do_setup(self) -> None:
        """Refuse, with the reason, a configuration that cannot work on this host."""
        conf_file = self.configuration.lvm_conf_file
        if conf_file:
            if not os.path.isfile(conf_file):
                raise DriverConfigError(f"lvm_conf_file {conf_file} does not exist")
            if os.path.basename(conf_file) != LVM_CONF_NAME:
                raise DriverConfigError(
                    f"lvm_conf_file {conf_file} must be named {LVM_CONF_NAME}: lvm2 reads "
                    f"{LVM_CONF_NAME} from its directory (LVM_SYSTEM_DIR)")
        if self.configuration.lvm_activation == ACTIVATION_DM and not device_mapper_works():
            raise DriverConfigError(f"lvm_activation = dm, but this host has no working "
                                    f"device-mapper ({DM_CONTROL} cannot be opened); "
                                    f"lvm_activation = loop works without it (test mode)")
        if self.thin and self.activation == ACTIVATION_LOOP:
            raise DriverConfigError("lvm_type = thin needs device-mapper (thin pools cannot "
                                    "be activated here); use lvm_type = default")
        proc = self._lvm("vgs", "--noheadings", "-o", "vg_name", self.vg, check=False)
        if proc.returncode != 0:
            raise DriverConfigError(f"volume group {self.vg} not found: "
                                    f"{self._error_text(proc.stderr)}")
        if self.thin:
            proc = self._lvm("lvs", "--noheadings", "-o", "lv_name",
                             f"{self.vg}/{self.thin_pool}", check=False)
            if proc.returncode != 0:
                raise DriverConfigError(f"thin pool {self.vg}/{self.thin_pool} not found")
        LOG.info("LVM backend %s: volume group %s, %s LVs, %s activation", self.backend_name,
                 self.vg, self.configuration.lvm_type, self.activation)

    def _vg_info(self) -> dict[str, Any]:
        rows = self._report("vgs", "vg", "vg_size,vg_free,vg_extent_size", self.vg)
        if not rows:
            raise DriverError(f"volume group {self.vg} not found")
        return {k: int(v) for k, v in rows[0].items()}

    def get_volume_stats(self) -> dict:
        info = self._vg_info()
        gib = 1024 ** 3
        return {
            "volume_backend_name": self.backend_name,
            "migration_progress_report": False,
            "pools": [{
                "pool_name": self.pools()[0],
                "total_capacity_gb": round(info["vg_size"] / gib, 2),
                "free_capacity_gb": round(info["vg_free"] / gib, 2),
            }],
        }

    def pools(self) -> list[str]:
        return [self.thin_pool if self.thin else self.vg]

    # -- volumes --------------------------------------------------------------
    @staticmethod
    def lv_name(volume: dict) -> str:
        return f"volume-{base.object_id(volume)}"

    def _lv(self, volume: dict) -> dict | None:
        """The LV's report row (its first segment's), or None if it does not exist.

        A selection, not ``vg/lv``, so that a missing LV is an empty answer
        rather than an error we would have to tell from real failures.
        """
        rows = self._report("lvs", "lv",
                            "lv_name,lv_uuid,lv_size,seg_pe_ranges,seg_count,"
                            "vg_extent_size",
                            "-S", f"lv_name={self.lv_name(volume)}", self.vg)
        return rows[0] if rows else None

    def _pe_start(self, device: str) -> int:
        """Where a PV's first extent starts. Fixed from pvcreate on, so asked once
        per device: every lvm2 command costs about 50 ms here."""
        if device not in self._pe_starts:
            pvs = self._report("pvs", "pv", "pv_name,pe_start", device)
            if not pvs:
                raise DriverError(f"physical volume {device} not found")
            self._pe_starts[device] = int(pvs[0]["pe_start"])
        return self._pe_starts[device]

    def create_volume(self, volume: dict) -> dict:
        name = self.lv_name(volume)
        existing = self._lv(volume)
        location = {"provider_location": f"{self.vg}/{name}"}
        if existing is not None:
            if int(existing["lv_size"]) >= volume["size"]:
                return location  # made before a crash interrupted the caller
            raise DriverError(f"logical volume {self.vg}/{name} already exists and is "
                              f"smaller than {volume['size']} bytes")
        # Whole extents, counted here: lvm2 takes a size in bytes only when it
        # is a multiple of 512, and a volume's size need not be.
        extent = self._vg_info()["vg_extent_size"]
        extents = max(1, -(-volume["size"] // extent))
        if self.thin:
            self._lvm("lvcreate", "-n", name, "-V", f"{extents * extent}b",
                      "-T", f"{self.vg}/{self.thin_pool}")
        elif self.activation == ACTIVATION_LOOP:
            # Not activated, not zeroed: there is no device-mapper to do either.
            # Contiguous, so that one loop device reaches the whole LV.
            self._lvm("lvcreate", "-n", name, "-l", str(extents), "--contiguous", "y",
                      "--activate", "n", "--zero", "n", self.vg)
        else:
            # Activated by connect_volume, when a migration needs it.
            self._lvm("lvcreate", "-n", name, "-l", str(extents),
                      "--activate", "n", "--zero", "n", self.vg)
        LOG.info("Created logical volume %s/%s (%d extents)", self.vg, name, extents)
        return location

    def volume_identity(self, volume: dict) -> dict:
        """The LV's uuid (an LV removed and made again under its name differs) and size."""
        lv = self._lv(volume)
        if lv is None:
            raise DriverError(f"logical volume {self.vg}/{self.lv_name(volume)} does not exist")
        return {"lv_uuid": lv["lv_uuid"], "size": int(lv["lv_size"])}

    def new_volumes_read_zeros(self) -> bool:
        # A new linear LV holds whatever its extents held before; a thin one reads zeros.
        return self.thin

    def delete_volume(self, volume: dict) -> None:
        lv = self._lv(volume)
        if lv is None:
            return
        if self.activation == ACTIVATION_LOOP:
            try:
                for device in self._loops_over(self._extent_range(lv)):
                    loopdev.detach(device, prefix=self._helper)
            except DriverError as exc:
                LOG.warning("Could not detach the loop devices of %s: %s",
                            self.lv_name(volume), exc)
        self._lvm("lvremove", "-f", f"{self.vg}/{self.lv_name(volume)}")
        LOG.info("Removed logical volume %s/%s", self.vg, self.lv_name(volume))

    # -- connections ----------------------------------------------------------
    def access_kind(self) -> str:
        return base.ACCESS_BLOCK

    def _extent_range(self, lv: dict) -> tuple[str, int, int]:
        """(PV device, byte offset, byte length) of a single-segment LV.

        Where loop activation maps the LV: the PV's data area starts at
        ``pe_start``, and extent N of the PV is N extent sizes further.
        """
        ranges = lv["seg_pe_ranges"].split()
        if int(lv.get("seg_count") or 1) != 1 or len(ranges) != 1:
            raise DriverError(f"logical volume {self.vg}/{lv['lv_name']} has several "
                              f"segments; lvm_activation = loop reaches only LVs made of "
                              f"one contiguous range of extents")
        device, _, extents = ranges[0].rpartition(":")
        first = int(extents.split("-")[0])
        extent = int(lv["vg_extent_size"])
        return device, self._pe_start(device) + first * extent, int(lv["lv_size"])

    def _loops_over(self, extent_range: tuple[str, int, int],
                    read_only: bool | None = None) -> list[str]:
        """Loop devices mapping exactly that range (of that mode, if given)."""
        device, offset, size = extent_range
        return [loop.name for loop in loopdev.find(device, prefix=self._helper)
                if (loop.offset, loop.sizelimit) == (offset, size)
                and (read_only is None or loop.read_only == read_only)]

    def connect_volume(self, volume: dict, writable: bool) -> dict:
        lv = self._lv(volume)
        if lv is None:
            raise DriverError(f"logical volume {self.vg}/{self.lv_name(volume)} does not exist")
        if self.activation == ACTIVATION_DM:
            self._lvm("lvchange", "-ay", f"{self.vg}/{self.lv_name(volume)}")
            # The device node itself: copies do not follow links (/dev/VG/LV is one).
            return {"access": base.ACCESS_BLOCK, "path": os.path.realpath(
                f"/dev/{self.vg}/{self.lv_name(volume)}")}
        device, offset, size = self._extent_range(lv)
        reuse = self._loops_over((device, offset, size), read_only=not writable)
        if reuse:  # left by a run a crash interrupted
            path = reuse[0]
            LOG.debug("Reusing %s for %s/%s", path, self.vg, lv["lv_name"])
        else:
            # Direct I/O: the PV below has its own page cache; a second one in this
            # loop made a 256 MiB dd with fdatasync 7x slower (1.49 s against 0.20 s).
            path = loopdev.attach(device, read_only=not writable, direct_io=True,
                                  offset=offset, sizelimit=size, prefix=self._helper)
            LOG.debug("Exposed %s/%s as %s (%s, %d bytes at %d)", self.vg, lv["lv_name"],
                      path, device, size, offset)
        return {"access": base.ACCESS_BLOCK, "path": path, "pv": device,
                "offset": offset, "sizelimit": size, "read_only": not writable}

    @staticmethod
    def _loop_maps(connection: dict) -> bool:
        """Whether the connection's loop device still maps its PV range, in its mode.

        The device may have been detached (a reboot) and its number reused,
        maybe for the same range in the other mode.
        """
        loop = loopdev.info(connection["path"])
        return (loop is not None and not loop.deleted
                and loop.maps(connection["pv"], connection["offset"], connection["sizelimit"])
                and loop.read_only == connection.get("read_only", loop.read_only))

    def connection_valid(self, volume: dict, connection: dict) -> bool:
        """The loop still maps that range, and the range is still this LV's.

        The second half matters after a crash: the LV may have been removed
        and its extents given to another one since the connection was made.
        """
        if "pv" not in connection:
            return os.path.exists(connection["path"])
        if not self._loop_maps(connection):
            return False
        lv = self._lv(volume)
        try:
            return lv is not None and self._extent_range(lv) == (
                connection["pv"], connection["offset"], connection["sizelimit"])
        except DriverError:
            return False

    def disconnect_volume(self, volume: dict, connection: dict) -> None:
        if "pv" not in connection:
            if os.path.exists(connection["path"]):
                self._lvm("lvchange", "-an", f"{self.vg}/{self.lv_name(volume)}")
            return
        if self._loop_maps(connection):
            loopdev.detach(connection["path"], prefix=self._helper)
            LOG.debug("Detached %s (%s/%s)", connection["path"], self.vg,
                      self.lv_name(volume))
