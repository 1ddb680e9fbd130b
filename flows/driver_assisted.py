"""The driver-assisted migration: a backend moves a volume between its own pools.

mark starting -> start the backend's move -> wait for it || monitor progress
-> update the volume's host -> mark success
"""

from __future__ import annotations

from taskflow.patterns import graph_flow

from volmigrate.flows import constants as c
from volmigrate.flows.copy_tasks import MonitorProgress
from volmigrate.flows.driver_tasks import StartDriverMove, UpdateVolumeHost, WaitForDriverMove
from volmigrate.flows.lifecycle_tasks import MarkMigrationStarting, MarkMigrationSuccess


def get_flow(case: str = c.CASE_DRIVER_ASSISTED) -> graph_flow.Flow:
    """Build the driver-assisted flow (`case` is accepted for a uniform factory call)."""
    if case != c.CASE_DRIVER_ASSISTED:
        raise ValueError(f"not the driver-assisted case: {case}")
    start = MarkMigrationStarting(name="mark-starting")
    move = StartDriverMove(name="start-driver-move")
    wait = WaitForDriverMove(name="wait-for-driver-move")
    monitor = MonitorProgress(name="monitor-progress")
    update = UpdateVolumeHost(name="update-volume-host")
    success = MarkMigrationSuccess(name="mark-success")

    flow = graph_flow.Flow(f"migrate-volume-{case}")
    flow.add(start, move, wait, monitor, update, success)
    flow.link(start, move)
    flow.link(move, wait)
    flow.link(move, monitor)
    flow.link(wait, update)
    flow.link(monitor, update)
    flow.link(update, success)
    return flow
