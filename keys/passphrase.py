"""Where the keystore passphrase comes from: the environment or a terminal prompt.

Never from the command line: argv is visible to every user of the machine (``ps``,
``/proc/<pid>/cmdline``) and ends up in shell history.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Mapping

from ledger.errors import ConfigError

__all__ = ["PASSPHRASE_ENV", "passphrase_from_env_or_prompt"]

PASSPHRASE_ENV = "RESERVE_PASSPHRASE"  # noqa: S105 - the variable name, not a secret
_PROMPT = "Keystore passphrase: "


def passphrase_from_env_or_prompt(*, env: Mapping[str, str], prompt: bool) -> bytes:
    """The passphrase as UTF-8 bytes.

    ``RESERVE_PASSPHRASE`` in ``env`` wins (taken exactly, no stripping). Otherwise, if
    ``prompt`` is true and stdin is a terminal, ask without echo. Otherwise, or if the
    passphrase is empty, raise :class:`ConfigError`.
    """
    value = env.get(PASSPHRASE_ENV)
    if value is not None:
        if value == "":
            raise ConfigError(f"{PASSPHRASE_ENV} is set but empty; an empty passphrase is refused")
        return _encode(value)
    if not prompt or not _stdin_is_tty():
        raise ConfigError(f"set {PASSPHRASE_ENV} or run on a terminal to be prompted")
    try:
        entered = getpass.getpass(_PROMPT)
    except (EOFError, KeyboardInterrupt):
        raise ConfigError("no passphrase entered") from None
    if entered == "":
        raise ConfigError("an empty passphrase is refused")
    return _encode(entered)


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError, OSError):  # closed or replaced stdin
        return False


def _encode(value: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from undecodable environment bytes
        raise ConfigError("the passphrase is not valid UTF-8 text") from None
