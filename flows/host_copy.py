"""The host-copy migration: this host copies the data, from any backend to any backend.

mark starting -> create hidden destination -> connect both ->
copy || monitor progress -> disconnect both -> prove the destination ->
complete -> mark success
"""

from __future__ import annotations

from taskflow.patterns import graph_flow

from volmigrate.flows import constants as c
from volmigrate.flows.copy_tasks import CopyVolumeData, MonitorProgress, ProveDestination
from volmigrate.flows.lifecycle_tasks import MarkMigrationStarting, MarkMigrationSuccess
from volmigrate.flows.volume_tasks import (
    CompleteMigration,
    ConnectVolume,
    CreateDestinationVolume,
    DisconnectVolume,
)

HOST_COPY_CASES = (c.CASE_HOST_COPY_PATHS, c.CASE_HOST_COPY_FILE_IO)


def get_flow(case: str = c.CASE_HOST_COPY_PATHS) -> graph_flow.Flow:
    """Build the host-copy migration flow.

    Both host-copy cases build the same graph: the copy task picks its method
    from the connections it is given (the kernel copy, or dd with
    ``copy_method = dd``, between local paths; file I/O otherwise), so the
    case only names how the volumes were expected to be reached.
    """
    if case not in HOST_COPY_CASES:
        raise ValueError(f"not a host-copy migration case: {case}")
    start = MarkMigrationStarting(name="mark-starting")
    create = CreateDestinationVolume(name="create-destination")
    connect_src = ConnectVolume(False, name="connect-source", provides=c.SOURCE_CONNECTION)
    connect_dst = ConnectVolume(True, name="connect-destination", provides=c.DEST_CONNECTION,
                                rebind={"volume_id": c.DEST_VOLUME_ID})
    copy = CopyVolumeData(name="copy-data")
    monitor = MonitorProgress(name="monitor-progress")
    disconnect_src = DisconnectVolume(name="disconnect-source",
                                      rebind={"connection": c.SOURCE_CONNECTION})
    disconnect_dst = DisconnectVolume(name="disconnect-destination",
                                      rebind={"connection": c.DEST_CONNECTION,
                                              "volume_id": c.DEST_VOLUME_ID})
    prove = ProveDestination(name="prove-destination")
    complete = CompleteMigration(name="complete-migration")
    success = MarkMigrationSuccess(name="mark-success")

    flow = graph_flow.Flow(f"migrate-volume-{case}")
    flow.add(start, create, connect_src, connect_dst, copy, monitor,
             disconnect_src, disconnect_dst, prove, complete, success)
    # Order that no data dependency implies.
    flow.link(start, create)
    flow.link(start, connect_src)
    for connect in (connect_src, connect_dst):
        flow.link(connect, monitor)
    for ended in (copy, monitor):
        flow.link(ended, disconnect_src)
        flow.link(ended, disconnect_dst)
    flow.link(disconnect_src, prove)
    flow.link(disconnect_dst, prove)
    flow.link(prove, complete)
    flow.link(complete, success)
    return flow
