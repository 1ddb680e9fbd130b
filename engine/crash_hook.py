"""Test-only: kill this process with SIGKILL at a chosen point of a flow.

Set ``VOLMIGRATE_TEST_KILL_AT=ATOM:STATE`` (e.g. ``copy-data:RUNNING``, the
moment before the copy executes, or ``create-destination:SUCCESS``, right
after it finished and was saved, or ``connect-source:REVERTING``). The
service attaches this listener only when the variable is set, so it does not
exist in normal runs. The crash tests use it to prove that recovery works
from every point of every flow.
"""

from __future__ import annotations

import os
import signal

from taskflow import states
from taskflow.listeners import base

ENV_VAR = "VOLMIGRATE_TEST_KILL_AT"


class KillAt(base.Listener):
    def __init__(self, engine, atom: str, state: str) -> None:
        super().__init__(engine, task_listen_for=[state], flow_listen_for=[],
                         retry_listen_for=[])
        self.atom = atom

    def _task_receiver(self, state, details) -> None:
        if details.get("task_name") == self.atom:
            os.kill(os.getpid(), signal.SIGKILL)


def listeners_for(engine) -> list[base.Listener]:
    spec = os.environ.get(ENV_VAR)
    if not spec:
        return []
    atom, _, state = spec.partition(":")
    if not state.isupper() or not hasattr(states, state):
        raise ValueError(f"{ENV_VAR}: unknown state {state!r}")
    return [KillAt(engine, atom, state)]
