"""Which flow factory builds each migration case."""

from __future__ import annotations

from collections.abc import Callable

from taskflow.patterns import graph_flow

from volmigrate.flows import constants as c
from volmigrate.flows import driver_assisted, host_copy

FACTORIES: dict[str, Callable[[str], graph_flow.Flow]] = {
    c.CASE_HOST_COPY_PATHS: host_copy.get_flow,
    c.CASE_HOST_COPY_FILE_IO: host_copy.get_flow,
    c.CASE_DRIVER_ASSISTED: driver_assisted.get_flow,
}
CASES = tuple(FACTORIES)


def get_flow(case: str) -> graph_flow.Flow:
    """The flow of a case; TaskFlow calls this again to rebuild a persisted flow."""
    case = c.OLD_CASE_NAMES.get(case, case)  # a flow persisted before the rename
    try:
        return FACTORIES[case](case)
    except KeyError:
        raise ValueError(f"unknown migration case {case!r} "
                         f"(one of: {', '.join(CASES)})") from None
