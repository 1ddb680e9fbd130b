"""The real tempest volume admin tests against `volmigrate serve` (tools/run_tempest.py)."""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RUN_TEMPEST = REPO / "tools" / "run_tempest.py"
EXIT_NO_VENV = 3
TEST_NAME = "test_tempest.py::test_tempest_volume_admin_tests_pass"
RUN_KEY = pytest.StashKey()
TIMEOUT = 900   # a first run builds two venvs: 334 s on a loaded 2-core machine

ADMIN = "tempest.api.volume.admin."
# Tests that must PASS, not merely not fail: a skip here means the set-up lost them.
MUST_PASS = [
    ADMIN + "test_volume_retype.VolumeRetypeWithMigrationTest.test_available_volume_retype_with_migration",
    ADMIN + "test_volume_retype.VolumeRetypeWithoutMigrationTest.test_available_volume_retype",
    ADMIN + "test_volume_pools.VolumePoolsAdminTestsJSON.test_get_pools_with_details",
    ADMIN + "test_volume_pools.VolumePoolsAdminTestsJSON.test_get_pools_without_details",
    ADMIN + "test_volume_services.VolumesServicesTestJSON.test_list_services",
    ADMIN + "test_volume_services_negative.VolumeServicesNegativeTest.test_enable_service_with_invalid_host",
    ADMIN + "test_volume_types.VolumeTypesTest.test_volume_crud_with_volume_type_and_extra_specs",
    ADMIN + "test_volumes_actions.VolumesActionsTest.test_volume_reset_status",
    ADMIN + "test_volumes_actions.VolumesActionsTest.test_volume_force_delete_when_volume_is_error",
]
# Skipped on purpose by the configuration (no snapshots, no multiattach, no compute).
MAY_SKIP = [
    ADMIN + "test_volume_retype.VolumeRetypeWithMigrationTest.test_volume_from_snapshot_retype_with_migration",
    ADMIN + "test_volume_retype.VolumeRetypeMultiattachTest.setUpClass",   # needs 3.50
    ADMIN + "test_volumes_actions.VolumesActionsTest.test_force_detach_volume",
]


def parse(stdout: str) -> tuple[dict[str, str], str]:
    verdicts, closing = {}, ""
    for line in stdout.splitlines():
        word, _, rest = line.partition(" ")
        if word in ("PASS", "FAIL", "SKIP") and rest:
            verdicts[rest.split(" ", 1)[0]] = word
        elif line.endswith(" skipped") and " passed, " in line:
            closing = line
    return verdicts, closing


class TempestRun:
    """tools/run_tempest.py as a child process whose output goes to files (a pipe
    nobody reads would block it once full)."""

    def __init__(self) -> None:
        self.out = tempfile.TemporaryFile("w+")
        self.err = tempfile.TemporaryFile("w+")
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, str(RUN_TEMPEST)], cwd=str(REPO),
                                     env=dict(os.environ), stdin=subprocess.DEVNULL,
                                     stdout=self.out, stderr=self.err, text=True)

    def finish(self, timeout: float) -> tuple[str, str, bool]:
        """Its stdout and stderr, and whether it ended in time (else it was stopped)."""
        left = max(1.0, timeout - (time.monotonic() - self.started))
        ended = True
        try:
            self.proc.wait(left)
        except subprocess.TimeoutExpired:
            ended = False
            self.stop()
        self.out.seek(0)
        self.err.seek(0)
        return self.out.read(), self.err.read(), ended

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()   # SIGTERM: run_tempest stops what it started
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_early(session) -> None:
    """Start tempest when the session's tests are known, if this test is among them.

    The run is mostly waiting (tempest polls every second), so it goes on beside
    the rest of the suite instead of adding its minutes at the end; the test
    collects its result.
    """
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # each worker collects every test: the one that runs it starts tempest
    if any(item.nodeid.endswith(TEST_NAME) for item in session.items):
        session.config.stash[RUN_KEY] = TempestRun()


def stop_early(session) -> None:
    run = session.config.stash.get(RUN_KEY, None)
    if run is not None:
        run.stop()


def test_tempest_volume_admin_tests_pass(request):
    run = request.config.stash.get(RUN_KEY, None) or TempestRun()
    stdout, stderr, ended = run.finish(TIMEOUT)
    if not ended:
        pytest.fail(f"run_tempest.py took over {TIMEOUT} s:\n{stdout}\n{stderr}")
    proc = run.proc
    print(stdout)
    print(stderr, file=sys.stderr)
    if proc.returncode == EXIT_NO_VENV:
        pytest.skip("tools/run_tempest.py could not make its venvs (package index "
                    "unreachable?): " + stderr[-500:])
    verdicts, closing = parse(stdout)
    assert closing, f"no closing line (exit code {proc.returncode}):\n{stderr[-3000:]}"
    failed = sorted(name for name, v in verdicts.items() if v == "FAIL")
    assert not failed, f"{closing}; failed: {failed}"
    missing = [name for name in MUST_PASS if verdicts.get(name) != "PASS"]
    assert not missing, f"these did not pass: {[(m, verdicts.get(m, 'not run')) for m in missing]}"
    unexpected_skips = sorted(name for name, v in verdicts.items()
                              if v == "SKIP" and name not in MAY_SKIP)
    assert not unexpected_skips, f"skipped: {unexpected_skips}"
    assert proc.returncode == 0, closing
