"""Shared pytest set-up: the native module, output poisoning, CUDA skipping, and opt-in time
limits for runs on a lent GPU machine (bench/gpu_check.sh)."""
import faulthandler
import os
import signal
import sys
import time

import pytest
import torch

import dspark_ext
from dspark_ext import _C


def _env_seconds(name):
    try:
        return float(os.environ.get(name, "") or 0)
    except ValueError:
        return 0.0


# Off unless set (bench/gpu_check.sh sets them; pytest-timeout may be missing there):
# DSPARK_TEST_TIMEOUT_S  a test whose body runs longer fails (SIGALRM); one stuck in native
#                        code (a hung kernel, a synchronize) 15 s past it ends the process,
#                        after faulthandler wrote every thread's stack to
#                        DSPARK_TEST_TIMEOUT_LOG (default stderr);
# DSPARK_TEST_DEADLINE   Unix time after which tests are skipped instead of started, so a run
#                        cut short still prints its summary.
TEST_TIMEOUT_S = _env_seconds("DSPARK_TEST_TIMEOUT_S")
TEST_DEADLINE = _env_seconds("DSPARK_TEST_DEADLINE")
_HANG_LOG = None


@pytest.fixture(autouse=True)
def poison_outputs():
    """Every op output a kernel must write in full starts as a sentinel, so a forgotten element
    fails the exactness tests instead of passing by luck (design §9)."""
    _C.set_debug_poison_outputs(True)
    yield
    _C.set_debug_poison_outputs(False)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available() and dspark_ext.build_info()["cuda_enabled"]:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device and a CUDA build of dspark_ext")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def pytest_runtest_setup(item):
    if TEST_DEADLINE and time.time() > TEST_DEADLINE:
        pytest.skip("not started: past DSPARK_TEST_DEADLINE")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    global _HANG_LOG
    if not TEST_TIMEOUT_S:
        yield
        return
    if _HANG_LOG is None:
        path = os.environ.get("DSPARK_TEST_TIMEOUT_LOG")
        _HANG_LOG = open(path, "w") if path else sys.__stderr__
    faulthandler.dump_traceback_later(TEST_TIMEOUT_S + 15, exit=True, file=_HANG_LOG)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    if not TEST_TIMEOUT_S or not hasattr(signal, "SIGALRM"):
        yield
        return

    def on_alarm(signum, frame):
        pytest.fail(f"{item.nodeid}: timed out after {TEST_TIMEOUT_S:g} s "
                    "(DSPARK_TEST_TIMEOUT_S)", pytrace=True)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, TEST_TIMEOUT_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
