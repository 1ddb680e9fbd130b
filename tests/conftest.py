"""Fixtures live in vmtest.py (importable by the tests as `vmtest`)."""

from vmtest import make_service, service  # noqa: F401
