"""Cinder's host strings: ``node@backend#pool``."""

from __future__ import annotations

import dataclasses
import re

_PART = r"[A-Za-z0-9][A-Za-z0-9._:-]*"
_HOST_RE = re.compile(rf"^(?P<node>{_PART})@(?P<backend>{_PART})(?:#(?P<pool>{_PART}))?$")


@dataclasses.dataclass(frozen=True)
class Host:
    node: str
    backend: str
    pool: str | None = None

    @property
    def backend_host(self) -> str:
        return f"{self.node}@{self.backend}"

    def with_pool(self, pool: str) -> "Host":
        return dataclasses.replace(self, pool=pool)

    def __str__(self) -> str:
        return self.backend_host + (f"#{self.pool}" if self.pool else "")


def parse_host(text: str) -> Host:
    """Parse ``node@backend[#pool]``; ValueError with the expected form otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"host {text!r} is malformed: expected node@backend[#pool]")
    match = _HOST_RE.match(text)
    if not match:
        raise ValueError(f"host {text!r} is malformed: expected node@backend[#pool]")
    return Host(match["node"], match["backend"], match["pool"])
