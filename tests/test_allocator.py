"""``minissd.allocator.keep_freed_memory``: glibc takes the setting (and it can be turned off).
Run in a fresh interpreter each: the setting is process-wide."""

import subprocess
import sys

import pytest

CODE = "from minissd.allocator import keep_freed_memory; print(keep_freed_memory())"


def _run(env_value=None):
    import os

    env = dict(os.environ)
    env.pop("MINISSD_KEEP_FREED_MEMORY", None)
    if env_value is not None:
        env["MINISSD_KEEP_FREED_MEMORY"] = env_value
    return subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                          check=True, env=env).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_glibc_takes_the_setting():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert _run() == "True"


def test_environment_turns_it_off():
    assert _run("0") == "False"


KEPT = """
import numpy as np
from minissd.allocator import keep_freed_memory

def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) << 10

print(keep_freed_memory())
before = rss()
a = np.ones(16 << 20, dtype=np.float32)  # 64 MiB: above glibc's largest mmap threshold
del a
print(rss() - before)
"""


@pytest.mark.parametrize("setting", ["1", "0"])
def test_freed_big_blocks_stay_in_the_process(setting):
    """A freed 64 MiB array: with the setting its pages stay resident for the next one (no page
    faults when it is reused); with it off, glibc unmaps them at once (the control)."""
    import os
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    env = dict(os.environ, MINISSD_KEEP_FREED_MEMORY=setting)
    took, kept = subprocess.run([sys.executable, "-c", KEPT], capture_output=True, text=True,
                                check=True, env=env).stdout.split()
    if setting == "1":
        assert took == "True" and int(kept) > 60 << 20
    else:
        assert took == "False" and int(kept) < 8 << 20
