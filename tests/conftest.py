import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import write_idx

# Quiet TF's C++ logging before anything imports it; tests read our own output, not TF's.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_POPEN = subprocess.Popen


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --runslow to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def _is_our_program(args) -> bool:
    """A Python interpreter or a program of this venv (console scripts, saved_model_cli): what an
    end-to-end test starts. Other programs (joblib's `lscpu` to count cores) are a library's business."""
    argv0 = str(args if isinstance(args, (str, bytes, os.PathLike)) else args[0])
    return os.path.basename(argv0).startswith("python") or os.path.dirname(argv0) == os.path.dirname(sys.executable)


@contextlib.contextmanager
def _subprocesses_only_if_e2e(item):
    """In a test not marked e2e, starting a Python or one of our programs fails the test: `-m "not e2e"` is the fast
    tier only while every test that starts one is marked, and this keeps the marking from drifting.
    subprocess.run, check_output and call all go through Popen; a subclass keeps isinstance working."""
    if item.get_closest_marker("e2e") is not None:
        yield
        return

    class Refused(_POPEN):
        def __init__(self, args, *rest, **kw):
            if not _is_our_program(args):
                super().__init__(args, *rest, **kw)
                return
            pytest.fail(
                f"{item.nodeid} starts a subprocess ({str(args)[:200]}) but is not marked e2e: "
                "add @pytest.mark.e2e (or the module's pytestmark) so that `-m 'not e2e'` stays fast",
                pytrace=False,
            )

    subprocess.Popen = Refused
    try:
        yield
    finally:
        subprocess.Popen = _POPEN


# Setup too: a module-scoped fixture that runs train.py is set up in its first test's setup.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    with _subprocesses_only_if_e2e(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    with _subprocesses_only_if_e2e(item):
        return (yield)


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    """A tiny MNIST-format dataset of random images: 32 train, 16 test."""
    d = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    write_idx(d / "train-images-idx3-ubyte", rng.integers(0, 256, (32, 28, 28), dtype=np.uint8))
    write_idx(d / "t10k-images-idx3-ubyte", rng.integers(0, 256, (16, 28, 28), dtype=np.uint8))
    return str(d)
