"""The real tempest volume admin tests against `volmigrate serve` (tools/run_tempest.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RUN_TEMPEST = REPO / "tools" / "run_tempest.py"
EXIT_NO_VENV = 3
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


def test_tempest_volume_admin_tests_pass():
    proc = subprocess.Popen([sys.executable, str(RUN_TEMPEST)], cwd=str(REPO),
                            env=dict(os.environ), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.terminate()   # SIGTERM: run_tempest stops what it started
        try:
            stdout, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        pytest.fail(f"run_tempest.py took over {TIMEOUT} s:\n{stdout}\n{stderr}")
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
