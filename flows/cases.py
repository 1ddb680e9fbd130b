"""Which flow factory builds each migration case."""

from __future__ import annotations

from collections.abc import Callable

from taskflow.patterns import graph_flow

from volmigrate.flows import constants as c
from volmigrate.flows import driver_assisted, generic

FACTORIES: dict[str, Callable[[str], graph_flow.Flow]] = {
    c.CASE_GENERIC_DD: generic.get_flow,
    c.CASE_GENERIC_FILE_IO: generic.get_flow,
    c.CASE_DRIVER_ASSISTED: driver_assisted.get_flow,
}
CASES = tuple(FACTORIES)


def get_flow(case: str) -> graph_flow.Flow:
    try:
        return FACTORIES[case](case)
    except KeyError:
        raise ValueError(f"unknown migration case {case!r} "
                         f"(one of: {', '.join(CASES)})") from None
