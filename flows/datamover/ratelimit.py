"""Pacing a copy to ``volume_copy_bps_limit`` without ever waiting past an abort.

The limit counts logical bytes (holes included) from where this run began,
the same for every copy method, so a resumed or sparse copy is paced as a
dense one would be.
"""

from __future__ import annotations

import threading
import time

# How long one throttled run (a dd process, a sendfile call, a synced batch)
# lasts; the shorter, the closer the achieved rate is to the limit, and the
# more runs (dd processes) are started.
THROTTLE_SLICE_SECONDS = 0.1
# Longest a wait goes without looking at the abort event.
ABORT_POLL_SECONDS = 0.05


class RateSchedule:
    """Paces a copy so that `done` bytes are not passed before done/limit seconds."""

    def __init__(self, bps_limit: int, abort_event: threading.Event) -> None:
        self.bps_limit = bps_limit
        self.abort_event = abort_event
        self.start = time.monotonic()

    def wait_until(self, done: int) -> None:
        """Return once `done` bytes are due, or at once when unlimited or aborted.

        An abort only cuts the wait short: the caller checks the event and
        raises, so the reason is given in one place.
        """
        if self.bps_limit <= 0:
            return
        due = self.start + done / self.bps_limit
        while True:
            delay = due - time.monotonic()
            if delay <= 0 or self.abort_event.wait(min(delay, ABORT_POLL_SECONDS)):
                return
