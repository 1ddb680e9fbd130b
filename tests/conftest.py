"""Fixtures live in vmtest.py (importable by the tests as `vmtest`)."""

from vmtest import copy_gate, make_array, make_service, make_vg, service  # noqa: F401
