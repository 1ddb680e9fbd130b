"""The driver-assisted wait polls the backend's move (flows/driver_tasks.py)."""

import pytest

from volmigrate.drivers.base import VolumeDriver
from volmigrate.flows import driver_tasks
from volmigrate.flows.exceptions import MigrationFailed


class _Backend:
    """Answers get_migration_progress from a script: a tuple, None (done) or an error."""

    move_poll_seconds = VolumeDriver.move_poll_seconds

    def __init__(self, *answers) -> None:
        self.answers, self.polls = list(answers), 0

    def get_migration_progress(self, ref: dict):
        self.polls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch):
    monkeypatch.setattr(driver_tasks, "POLL_FIRST_SECONDS", 0.001)
    monkeypatch.setattr(driver_tasks, "POLL_MAX_SECONDS", 0.002)


def test_polls_until_the_move_has_ended():
    backend = _Backend((0, 8), (4, 8), (8, 8), None)
    driver_tasks.wait_until_moved(backend, {}, "m")
    assert backend.polls == 4


def test_errors_in_a_row_are_tolerated_up_to_the_limit(caplog):
    limit = driver_tasks.MAX_POLL_ERRORS
    # An answer between errors starts the count again.
    backend = _Backend(*[OSError("down")] * (limit - 1), (1, 8),
                       *[OSError("down")] * (limit - 1), None)
    driver_tasks.wait_until_moved(backend, {}, "m")
    assert backend.polls == 2 * limit
    assert caplog.text.count("asking again") == 2 * (limit - 1)

    backend = _Backend(*[OSError("array gone")] * limit, None)
    with pytest.raises(MigrationFailed, match="lost track of the backend's move: array gone"):
        driver_tasks.wait_until_moved(backend, {}, "m")
    assert backend.polls == limit


def test_backs_off_to_the_maximum(monkeypatch):
    monkeypatch.setattr(driver_tasks, "POLL_FIRST_SECONDS", 0.05)
    monkeypatch.setattr(driver_tasks, "POLL_MAX_SECONDS", 1.0)
    waits = []
    monkeypatch.setattr(driver_tasks.tenacity.nap.time, "sleep", waits.append)
    driver_tasks.wait_until_moved(_Backend(*[(0, 8)] * 7, None), {}, "m")
    assert waits == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
