"""Free text in signed entries: what may be in it (issue #8, item 4).

Names, suppliers, purposes, reasons and comments are shown to people (CLI tables, web
pages, parliament's report). Text that renders differently from what it contains lies on
screen: a right-to-left override turns ``Evil\\u202etxt.exe`` into "Evilexe.txt", a
zero-width space makes two names that look alike differ, a NUL truncates the string in C
code and PostgreSQL refuses it outright. So free text:

* contains no control character (Unicode category Cc: C0, DEL, C1; so no NUL, no newline);
* contains no bidirectional formatting character (embeddings and overrides U+202A-202E,
  isolates U+2066-2069, marks U+200E/U+200F and U+061C; Unicode TR #9 explains how they
  reorder what is displayed, CVE-2021-42574 "Trojan Source" how they are abused);
* contains no zero-width or invisible joiner (U+200B-200D, U+2060, U+FEFF);
* is in Unicode Normalization Form C (UAX #15).

Entries are signed, so the server never changes their bytes: text that is not NFC is
*refused* in a signed body. Clients (the CLI and the custodial service) call
:func:`normalise` before they sign. Codes and ids are not free text: they keep their own
strict ASCII patterns (``ledger.kinds.base``).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

# Cc, bidi formatting, zero-width: one character class, checked with one regex search.
_FORBIDDEN: Final = re.compile(
    "["
    "\x00-\x1f\x7f-\x9f"  # Cc: C0 controls, DEL, C1 controls
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidi marks, embeddings, overrides, isolates
    "\u200b-\u200d\u2060\ufeff"  # zero-width space/non-joiner/joiner, word joiner, BOM
    "]"
)
# Lone surrogates cannot be encoded as UTF-8 (so cannot be canonical JSON either).
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


class TextRefused(ValueError):
    """Free text that breaks a rule above; the message names the problem, never the text."""


def check(value: str) -> None:
    """None if ``value`` is acceptable free text, else :class:`TextRefused`."""
    m = _FORBIDDEN.search(value)
    if m is not None:
        code = ord(m.group())
        what = "a control character" if unicodedata.category(m.group()) == "Cc" else (
            "an invisible or bidirectional formatting character"
        )
        raise TextRefused(f"contains {what} (U+{code:04X})")
    if _SURROGATE.search(value):
        raise TextRefused("contains a lone surrogate (not valid Unicode text)")
    if not unicodedata.is_normalized("NFC", value):
        raise TextRefused("is not in Unicode normalization form C (NFC): normalise it before signing")


def normalise(value: str) -> str:
    """The NFC form of ``value``, for clients to apply before signing; the forbidden
    characters are not removed (silently dropping them would change what the user meant),
    so :func:`check` still refuses them."""
    return unicodedata.normalize("NFC", value)
