"""What drivers receive about a volume, and how a backend object's identity is stored."""

from __future__ import annotations

import json
from typing import Any

REF_KEYS = ("id", "name_id", "size", "host", "provider_location")


def volume_ref(row: dict) -> dict:
    """The plain reference drivers receive (see volmigrate.drivers.base).

    Drivers never see database rows: only these keys, so that what they may
    depend on is written down in one place.
    """
    return {key: row[key] for key in REF_KEYS}


def identity_text(driver: Any, volume: dict) -> str:
    """The backend object's identity as stored in ``provider_id`` (JSON, keys sorted).

    Stored as text so that the object proven before the source is deleted can
    be compared with the one created, across restarts.
    """
    return json.dumps(driver.volume_identity(volume_ref(volume)), sort_keys=True)
