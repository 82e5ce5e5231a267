"""Debian packages the test set-up installs itself (a fresh machine has none of them).

One installer at a time on the machine: test processes run in parallel (pytest-xdist),
and two ``apt-get`` at once fail on dpkg's lock. The lock is ``flock`` on a file, so a
killed process never leaves it held.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Callable

import pytest

LOCK = "/tmp/reserve-tests-apt.lock"


def apt_install(package: str, *, present: Callable[[], bool], timeout: float = 900) -> None:
    """Install ``package`` unless ``present()``; skip the test where that cannot be done
    (not root, no apt-get), fail it if apt-get fails."""
    if present():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"{package} is not installed and cannot be installed here (needs root and apt-get)")
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # waits while another test process installs
        if present():  # it did
            return
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=timeout)
            if proc.returncode != 0:
                pytest.fail(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-500:]}")
