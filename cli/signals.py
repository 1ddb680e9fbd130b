"""SIGINT, SIGTERM and SIGHUP stop a command the same way, and never half way.

The engine is a library and installs no signal handler; the `volmigrate`
command does. The first of these signals raises `Interrupted` in the main
thread, where the command aborts what it started (a migration is rolled
back) and exits with 128 + the signal's number. Signals that come after it
are only logged: a second Ctrl-C, or a service manager repeating SIGTERM,
must not cut the rollback short and leave a volume `migrating` or
`maintenance`. Inside `held()` a signal waits for the block to end, for the
steps that must not be cut in two (a migration accepted but not launched, a
volume row created but not its data).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

from oslo_log import log as logging

LOG = logging.getLogger(__name__)

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_RAISE, _HOLD, _IGNORE = "raise", "hold", "ignore"


class Interrupted(BaseException):
    """A signal asked the command to stop.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception``
    on the way swallows it.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(self.name)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        """What a shell shows for a process that died of this signal."""
        return 128 + self.signum


class SignalGuard:
    """Turns the first stopping signal into `Interrupted`; notes the others."""

    def __init__(self) -> None:
        self._mode = _RAISE
        self._held: int | None = None
        self._previous: dict[int, object] = {}
        self._outer: SignalGuard | None = None

    def install(self) -> None:
        """Handle the signals (main thread only) and become `current()`."""
        global _current
        for signum in HANDLED:
            self._previous[signum] = signal.signal(signum, self._handle)
        self._outer, _current = _current, self

    def uninstall(self) -> None:
        global _current
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        _current = self._outer

    def _handle(self, signum: int, _frame) -> None:
        if self._mode == _RAISE:
            self._mode = _IGNORE
            raise Interrupted(signum)
        if self._mode == _HOLD:
            if self._held is None:
                self._held = signum
            return
        LOG.warning("%s received while the command is stopping: ignored, so that what "
                    "it is undoing ends cleanly", signal.Signals(signum).name)

    def stop_raising(self) -> None:
        """From now on a signal is only logged (the command is ending anyway)."""
        if self._mode == _RAISE:
            self._mode = _IGNORE

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """A signal received inside the block is raised when the block ends."""
        if self._mode != _RAISE:
            yield
            return
        self._mode = _HOLD
        try:
            yield
        finally:
            held, self._held = self._held, None
            if held is None:
                self._mode = _RAISE
            else:
                self._mode = _IGNORE
                raise Interrupted(held)


_current: SignalGuard | None = None


def current() -> SignalGuard:
    """The installed guard (the `volmigrate` command's), or one that handles nothing."""
    return _current if _current is not None else SignalGuard()
