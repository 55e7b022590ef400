"""Integration tests run against the lab: the `lab` fixture lives in tests/conftest.py."""
