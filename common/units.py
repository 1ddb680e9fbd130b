"""Sizes as administrators write them (64M, 10G, 1.5GiB) and back."""

from __future__ import annotations

import re

_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4, "p": 1024 ** 5}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)

SECTOR = 512


def parse_size(text: str | int) -> int:
    """Bytes in `text`: an integer with an optional binary suffix K, M, G, T, P.

    Raises ValueError with a message fit for an administrator.
    """
    if isinstance(text, bool):
        raise ValueError(f"invalid size {text!r}")
    if isinstance(text, int):
        value = text
    else:
        match = _SIZE_RE.match(str(text))
        if not match:
            raise ValueError(f"invalid size {text!r}: expected a number with an optional "
                             f"unit K, M, G, T or P (binary), e.g. 64M or 10G")
        number, unit = match.groups()
        value = float(number) * _UNITS[unit.lower()]
        if value != int(value):
            raise ValueError(f"invalid size {text!r}: not a whole number of bytes")
        value = int(value)
    if value <= 0:
        raise ValueError(f"invalid size {text!r}: must be greater than zero")
    return value


def parse_volume_size(text: str | int) -> int:
    """A volume size: positive and a whole number of 512-byte sectors (block devices need it)."""
    value = parse_size(text)
    if value % SECTOR:
        raise ValueError(f"invalid size {text!r}: a volume size must be a multiple of "
                         f"{SECTOR} bytes ({value} is not)")
    return value
