"""Cinder's error bodies: ``{"<faultName>": {"code": N, "message": "..."}}``.

Every error a client can get is one of these, with a message written for an
administrator; a traceback never leaves the server (it goes to the log).
"""

from __future__ import annotations

import json

NAMES = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
         405: "badMethod", 406: "notAcceptable", 409: "conflictingRequest",
         413: "overLimit", 415: "badMediaType", 501: "notImplemented",
         503: "serviceUnavailable"}


class Fault(Exception):
    """Raised anywhere in a request to answer with this error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def body(code: int, message: str) -> bytes:
    name = NAMES.get(code, "computeFault")
    return json.dumps({name: {"code": code, "message": message}}).encode()


def bad_request(message: str) -> Fault:
    return Fault(400, message)


def not_found(message: str = "The resource could not be found.") -> Fault:
    return Fault(404, message)
