"""SoftHSM2 for the tests: installed from Debian's packages and initialised by the test set-up.

``softhsm_pool`` (session): if ``softhsm2-util`` is missing and we are root, ``apt-get
update && apt-get install -y softhsm2`` once; then a private ``SOFTHSM2_CONF`` pointing at
a temporary token directory, and a pool of freshly initialised tokens. SoftHSM2 lists its
tokens when the library is initialised (once per process), so every token an in-process
test will use is made before any test loads the library; ``hsm`` hands each test its own.

The token label prefix and the user PIN come from the environment
(``RESERVE_TEST_PKCS11_TOKEN``, ``RESERVE_TEST_PKCS11_PIN``), else test defaults.
``RESERVE_TEST_PKCS11_MODULE`` overrides where the library is looked for.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.apt import apt_install

MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)
POOL_SIZE = 12


@dataclass
class Hsm:
    """One initialised token: what ``RESERVE_KEYSTORE=pkcs11`` needs to reach it."""

    module: str
    label: str
    pin: str = field(repr=False)
    so_pin: str = field(repr=False)
    conf: str

    def env(self, pin: str | None = None) -> dict[str, str]:
        return {
            "RESERVE_KEYSTORE": "pkcs11",
            "RESERVE_PKCS11_MODULE": self.module,
            "RESERVE_PKCS11_TOKEN": self.label,
            "RESERVE_PKCS11_PIN": self.pin if pin is None else pin,
            "SOFTHSM2_CONF": self.conf,
        }


def _ensure_softhsm() -> str:
    apt_install("softhsm2", present=lambda: shutil.which("softhsm2-util") is not None, timeout=600)
    override = os.environ.get("RESERVE_TEST_PKCS11_MODULE")
    for path in ((override,) if override else MODULE_CANDIDATES):
        if path and os.path.isfile(path):
            return path
    pytest.fail("softhsm2 is installed but libsofthsm2.so was not found (set RESERVE_TEST_PKCS11_MODULE)")


@pytest.fixture(scope="session")
def softhsm_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Hsm]]:
    module = _ensure_softhsm()
    root = tmp_path_factory.mktemp("softhsm")
    tokens = root / "tokens"
    tokens.mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)  # read by the library when it initialises
    prefix = os.environ.get("RESERVE_TEST_PKCS11_TOKEN") or "reserve-test"
    pin = os.environ.get("RESERVE_TEST_PKCS11_PIN") or secrets.token_hex(8)
    pool = []
    for i in range(POOL_SIZE):
        label = f"{prefix}-{i}"
        so_pin = secrets.token_hex(8)
        proc = subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", so_pin, "--pin", pin],
            capture_output=True, text=True, env={**os.environ, "SOFTHSM2_CONF": str(conf)}, check=False,
        )
        assert proc.returncode == 0, proc.stderr
        pool.append(Hsm(module=module, label=label, pin=pin, so_pin=so_pin, conf=str(conf)))
    yield pool
    if old is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = old


@pytest.fixture
def hsm(softhsm_pool: list[Hsm]) -> Hsm:
    """A token of its own for this test."""
    if not softhsm_pool:
        pytest.fail(f"more than {POOL_SIZE} tests want a SoftHSM token: raise POOL_SIZE")
    return softhsm_pool.pop()
