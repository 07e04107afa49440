"""The tests marked ``other_backends`` pass on the torch backend (see tests/other_backends.py)."""

from __future__ import annotations

from other_backends import check_marked_tests_on


def test_marked_tests_pass_on_torch(tmp_path):
    check_marked_tests_on("torch", tmp_path)
