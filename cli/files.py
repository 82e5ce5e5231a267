"""Every file a command-line flag names is read here (issue #8 item 5).

A file the user points at is input like any other: a missing, unreadable, non-UTF-8,
NUL-bearing, malformed or absurdly nested file is the user's mistake, reported as one
line and exit 2 (``ConfigError``), never as an "unexpected failure". Messages name the
flag's purpose, never the file's content (it may be a location or a key).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ledger.errors import ConfigError

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_JSON_DEPTH = 32


def read_bytes(path: str, *, what: str, stdin_ok: bool = True) -> bytes:
    """The bytes of ``path`` (``-`` is standard input where allowed)."""
    try:
        if path == "-" and stdin_ok:
            data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        else:
            with Path(path).open("rb") as fh:
                data = fh.read(MAX_FILE_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: an embedded NUL in the path itself
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
        raise ConfigError(f"cannot read the {what} file ({reason.lower()})") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"the {what} file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    return data


def read_text(path: str, *, what: str, stdin_ok: bool = True) -> str:
    """UTF-8 text without NUL characters (a NUL is never part of a key file, a note or JSON)."""
    data = read_bytes(path, what=what, stdin_ok=stdin_ok)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"the {what} file is not UTF-8 text") from None
    if "\x00" in text:
        raise ConfigError(f"the {what} file holds a NUL character")
    return text


def _has_nul(value: Any) -> bool:
    """Whether any key or string holds a NUL (walked iteratively: depth is bounded)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def read_json(path: str, *, what: str, stdin_ok: bool = True) -> Any:
    """A JSON document from a file: strict (no NaN, no duplicate keys), at most
    ``MAX_JSON_DEPTH`` levels deep, no NUL anywhere (also not as ``\\u0000``)."""
    text = read_text(path, what=what, stdin_ok=stdin_ok)
    # Bounded before parsing: the parser recurses once per bracket.
    if _bracket_depth(text) > MAX_JSON_DEPTH:
        raise ConfigError(f"the {what} file is nested more than {MAX_JSON_DEPTH} levels deep")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise ValueError("duplicate key")
            out[k] = v
        return out

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        value = json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constant)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        value, bad = None, True
    else:
        bad = False
    if bad:  # raised outside the except block: the decode error holds the whole document
        raise ConfigError(f"the {what} file is not valid JSON")
    if _has_nul(value):  # a \u0000 escape decodes to NUL
        raise ConfigError(f"the {what} file holds a NUL character")
    return value


def _bracket_depth(text: str) -> int:
    """Maximum bracket depth outside strings, without parsing."""
    depth = deepest = 0
    in_str = escaped = False
    for ch in text:
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest
