"""`OpenStack-API-Version: volume 3.N` negotiation, as Cinder does it."""

from __future__ import annotations

import re

HEADER = "OpenStack-API-Version"
SERVICE = "volume"
MIN_VERSION = (3, 0)
MAX_VERSION = (3, 71)

# Versions at which the volume representation changes (cinder/api/microversions.py).
VOLUME_MIGRATE_CLUSTER = (3, 16)
SERVICES_CLUSTER = (3, 7)
VOLUME_CLUSTER_NAME = (3, 61)
VOLUME_TYPE_ID_IN_VOLUME_DETAIL = (3, 63)
ENCRYPTION_KEY_ID_IN_DETAILS = (3, 64)
USE_QUOTA = (3, 65)
GROUP_VOLUME = (3, 13)
VOLUME_DETAIL_PROVIDER_ID = (3, 21)
SHARED_TARGETS_AND_SERVICE_FIELDS = (3, 48)

_VERSION = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")


class VersionError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def text(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def negotiate(header: str | None) -> tuple[int, int]:
    """The version a request asks for; 3.0 without the header.

    A malformed version is a 400, one outside what we serve a 406 (Cinder's
    InvalidGlobalAPIVersion). The header may list several services; the first
    item naming `volume` counts.
    """
    if not header:
        return MIN_VERSION
    for item in header.split(","):
        parts = item.strip().split()
        if len(parts) == 2 and parts[0].lower() == SERVICE:
            wanted = parts[1].lower()
            break
    else:
        return MIN_VERSION
    if wanted == "latest":
        return MAX_VERSION
    match = _VERSION.match(wanted)
    if not match:
        raise VersionError(400, f"API Version String {wanted} is of invalid format. Must "
                                f"be of format MajorNum.MinorNum.")
    version = (int(match.group(1)), int(match.group(2)))
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise VersionError(406, f"Version {wanted} is not supported by the API. Minimum is "
                                f"{text(MIN_VERSION)} and maximum is {text(MAX_VERSION)}.")
    return version
