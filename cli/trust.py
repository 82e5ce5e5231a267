"""``--trust``: the auditor's anchor, given inline or as a file, hard to get wrong (issue #10).

Accepted, in this order:

* 64 hex digits: the raw Ed25519 log key, inline;
* a note verifier key ``name+hash+base64`` (golang.org/x/mod/sumdb/note), inline;
* a path to a file holding either of those or a PEM public key (``$RESERVE_HOME/log.pub``).

Taking the bundle's own ``log.vkey`` as the anchor is allowed but proves only that the
bundle is consistent with itself, not that it is the log you meant to audit: whoever made
the bundle chose that key. A warning says so.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from ledger.errors import ConfigError, LedgerError
from ledger.pubkey import parse_public_key

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
# name+hash+base64: the name has no '+' or whitespace, the hash is 8 hex digits (sumdb/note).
_VKEY = re.compile(r"[^\s+]+\+[0-9a-fA-F]{8}\+[A-Za-z0-9+/=]+")

SELF_ANCHOR_WARNING = (
    "warning: --trust is the bundle's own log.vkey: this checks that the bundle is "
    "consistent with itself, not that it is the log you meant to audit; get the log key "
    "from its operator by another channel"
)


def parse_trust(value: str, *, bundle_dir: Path | None = None) -> tuple[bytes, str | None]:
    """The trusted log key and a warning to print (or ``None``).

    Raises :class:`ConfigError` with a message naming the accepted forms; the message
    never repeats the value (it may be a path the auditor did not mean to show)."""
    text = value.strip()
    if _HEX64.fullmatch(text) or (_VKEY.fullmatch(text) and not Path(text).exists()):
        try:
            return parse_public_key(text), None
        except LedgerError as exc:
            raise ConfigError(f"--trust: {exc.public_message}") from None
    path = Path(value)
    if not path.is_file() and (os.sep in value or path.suffix in (".pub", ".pem", ".vkey")):
        # Meant as a file (issue #8 item 5: a missing file is a usage error, one line).
        raise ConfigError("--trust cannot read the trust file: there is no such file")
    if not path.is_file():
        raise ConfigError(
            "--trust takes the log key as 64 hex digits, a note verifier key "
            "(name+hash+base64), or the path of a file holding one (or a PEM public key); "
            "this is none of them"
        )
    try:
        content = path.read_text()
    except (OSError, UnicodeDecodeError):
        raise ConfigError("--trust: cannot read the trust file") from None
    try:
        key = parse_public_key(content)
    except LedgerError as exc:
        raise ConfigError(f"--trust: {exc.public_message}") from None
    warning = None
    if bundle_dir is not None and _same_file(path, bundle_dir / "log.vkey"):
        warning = SELF_ANCHOR_WARNING
    return key, warning


def trusted_key(value: str, *, bundle_dir: Path | None = None) -> bytes:
    """:func:`parse_trust`, printing its warning on stderr."""
    key, warning = parse_trust(value, bundle_dir=bundle_dir)
    if warning:
        print(warning, file=sys.stderr)
    return key


def _same_file(a: Path, b: Path) -> bool:
    try:
        return b.exists() and os.path.samefile(a, b)
    except OSError:
        return False
