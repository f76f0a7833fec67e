"""offline_util.py: what the offline tests (test_offline*.py) share."""
import os
import time


def xattr(path, name):
    try:
        return os.getxattr(path, name).decode()
    except OSError as e:
        return "errno %d" % e.errno


def cat(path):
    with open(path, "rb") as f:
        return f.read()


def wait_for(what, fn, timeout=20.0, step=0.02):
    end = time.time() + timeout
    while time.time() < end:
        if fn():
            return
        time.sleep(step)
    raise AssertionError("timed out waiting for " + what)
