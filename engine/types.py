"""Volume types and their extra specs: what placement and retype read.

A type's ``volume_backend_name`` extra spec (or Cinder's scoped form
``capabilities:volume_backend_name``) names the backend its volumes live on;
a type without it fits every backend. Types are rows of the service database,
so every process of one deployment sees the same ones.
"""

from __future__ import annotations

import json
import uuid

from oslo_log import log as logging

from volmigrate.engine.context import ServiceContext
from volmigrate.engine.exceptions import (InvalidInput, InvalidVolumeState, NotFound)

LOG = logging.getLogger(__name__)

BACKEND_NAME_KEYS = ("volume_backend_name", "capabilities:volume_backend_name")
MAX_FIELD = 255
# Cinder's encryption type fields (cinder/api/contrib/volume_type_encryption.py).
ENCRYPTION_FIELDS = ("provider", "cipher", "key_size", "control_location")
CONTROL_LOCATIONS = ("front-end", "back-end")


def backend_name_of(volume_type: dict | None) -> str | None:
    """The backend a type asks for, or None when any backend will do."""
    if volume_type is None:
        return None
    for key in BACKEND_NAME_KEYS:
        value = volume_type["extra_specs"].get(key)
        if value:
            return value
    return None


def _text(value, what: str, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_FIELD:
        raise InvalidInput(f"{what} must be a non-empty string of at most {MAX_FIELD} "
                           f"characters")
    return value


def check_specs(specs) -> dict[str, str]:
    """Extra specs as Cinder takes them: a flat object of string keys and string values."""
    if not isinstance(specs, dict):
        raise InvalidInput("extra_specs must be an object of string keys and values")
    checked = {}
    for key, value in specs.items():
        _text(key, "an extra spec key", required=True)
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise InvalidInput(f"the value of extra spec {key!r} must be a string")
        value = str(value)
        if len(value) > MAX_FIELD:
            raise InvalidInput(f"the value of extra spec {key!r} is longer than "
                               f"{MAX_FIELD} characters")
        checked[key] = value
    return checked


def _decode(row: dict | None) -> dict | None:
    if row is None:
        return None
    row = dict(row)
    row["extra_specs"] = json.loads(row["extra_specs"] or "{}")
    row["encryption"] = json.loads(row["encryption"]) if row["encryption"] else None
    return row


class VolumeTypes:
    """Create, read, change and delete volume types (admin operations in the API)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def create(self, name, description=None, is_public: bool = True,
               extra_specs=None) -> dict:
        name = _text(name, "a volume type's name", required=True)
        description = _text(description, "a volume type's description") if description \
            else description
        if not isinstance(is_public, bool):
            raise InvalidInput("is_public must be true or false")
        specs = check_specs(extra_specs or {})
        row = self.ctx.connect().create_volume_type({
            "id": str(uuid.uuid4()), "name": name, "description": description,
            "is_public": is_public, "extra_specs": json.dumps(specs, sort_keys=True)})
        if row is None:
            raise Conflict(f"volume type with name {name} already exists")
        LOG.info("Created volume type %s (%s)", row["id"], name)
        return _decode(row)

    def get(self, ref: str) -> dict:
        """A type by id, else by name (the clients send either)."""
        db = self.ctx.connect()
        row = db.get_volume_type(str(ref)) or db.get_volume_type_by_name(str(ref))
        if row is None:
            raise NotFound(f"volume type {ref} could not be found")
        return _decode(row)

    def find(self, ref: str | None) -> dict | None:
        return None if ref is None else self.get(ref)

    def list(self) -> list[dict]:
        return [_decode(r) for r in self.ctx.connect().list_volume_types()]

    def update(self, ref: str, name=None, description=None, is_public=None) -> dict:
        current = self.get(ref)
        values = {}
        if name is not None:
            values["name"] = _text(name, "a volume type's name", required=True)
        if description is not None:
            values["description"] = _text(description, "a volume type's description")
        if is_public is not None:
            if not isinstance(is_public, bool):
                raise InvalidInput("is_public must be true or false")
            values["is_public"] = is_public
        if not values:
            raise InvalidInput("give a name, a description or is_public to change")
        self._write(current, values)
        return self.get(current["id"])

    def set_extra_specs(self, ref: str, specs) -> dict:
        current = self.get(ref)
        merged = dict(current["extra_specs"], **check_specs(specs))
        self._write(current, {"extra_specs": json.dumps(merged, sort_keys=True)})
        return merged

    def delete_extra_spec(self, ref: str, key: str) -> None:
        current = self.get(ref)
        specs = dict(current["extra_specs"])
        if specs.pop(key, None) is None:
            raise NotFound(f"volume type {current['id']} has no extra spec {key}")
        self._write(current, {"extra_specs": json.dumps(specs, sort_keys=True)})

    def set_encryption(self, ref: str, encryption, replace: bool = False) -> dict:
        """Keep the type's encryption spec (Cinder's shape). volmigrate encrypts
        nothing: it refuses to create volumes of such a type (see VolumeOperations)."""
        current = self.get(ref)
        if not isinstance(encryption, dict) or set(encryption) - set(ENCRYPTION_FIELDS):
            raise InvalidInput(f"an encryption type takes only {', '.join(ENCRYPTION_FIELDS)}")
        base = {} if replace else dict(current["encryption"] or {})
        if not replace and current["encryption"] is None:
            raise NotFound(f"volume type {current['id']} has no encryption type")
        if replace and current["encryption"] is not None:
            raise Conflict(f"volume type {current['id']} already has an encryption type")
        merged = dict(base, **encryption)
        if not merged.get("provider"):
            raise InvalidInput("an encryption type needs a provider")
        if merged.get("control_location", "front-end") not in CONTROL_LOCATIONS:
            raise InvalidInput(f"control_location must be one of {', '.join(CONTROL_LOCATIONS)}")
        merged.setdefault("control_location", "front-end")
        merged.setdefault("cipher", None)
        merged.setdefault("key_size", None)
        if merged["key_size"] is not None and (isinstance(merged["key_size"], bool) or
                                               not isinstance(merged["key_size"], int)):
            raise InvalidInput("key_size must be an integer")
        self._write(current, {"encryption": json.dumps(merged, sort_keys=True)})
        return dict(merged, volume_type_id=current["id"])

    def delete_encryption(self, ref: str) -> None:
        current = self.get(ref)
        if current["encryption"] is None:
            raise NotFound(f"volume type {current['id']} has no encryption type")
        self._write(current, {"encryption": None})

    def delete(self, ref: str) -> None:
        current = self.get(ref)
        result = self.ctx.connect().delete_volume_type(current["id"])
        if result is None:
            raise InvalidVolumeState(f"volume type {current['id']} is in use by volumes "
                                     f"(or a retype to it is running)")
        if not result:
            raise NotFound(f"volume type {ref} could not be found")
        LOG.info("Deleted volume type %s (%s)", current["id"], current["name"])

    def _write(self, current: dict, values: dict) -> None:
        done = self.ctx.connect().update_volume_type(current["id"], values)
        if done is None:
            raise Conflict(f"volume type with name {values.get('name')} already exists")
        if not done:
            raise NotFound(f"volume type {current['id']} could not be found")


class Conflict(InvalidVolumeState):
    """The request conflicts with what exists (a duplicate name)."""
