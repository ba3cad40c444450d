"""The fast tier (`pytest -m "not e2e and not slow_inproc"`) stays fast only while every test that starts one of our
programs is marked e2e; conftest enforces it. Here: that the enforcement bites."""

import subprocess
import sys

import pytest

from tests import conftest


class _Item:
    nodeid = "tests/test_probe.py::test_probe"

    def __init__(self, marked):
        self.marked = marked

    def get_closest_marker(self, name):
        return object() if self.marked and name == "e2e" else None


def test_a_test_not_marked_e2e_cannot_start_python():
    with conftest._subprocesses_only_if_e2e(_Item(marked=False)):
        with pytest.raises(pytest.fail.Exception, match="test_probe starts a subprocess .* not marked e2e"):
            subprocess.run([sys.executable, "-c", "pass"])
        # A library's own helper program (joblib runs lscpu to count cores) is not an end-to-end test.
        assert subprocess.run(["true"]).returncode == 0
    assert subprocess.Popen is conftest._POPEN


@pytest.mark.e2e
def test_a_test_marked_e2e_may_start_python():
    with conftest._subprocesses_only_if_e2e(_Item(marked=True)):
        assert subprocess.run([sys.executable, "-c", "pass"]).returncode == 0
