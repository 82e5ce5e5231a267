"""Field types and the fields every signed body has."""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Final, Literal

import msgspec

from ledger import text as free_text
from ledger.canonical import MAX_SAFE_INT
from ledger.errors import InvalidEntry
from ledger.timefmt import RFC3339_Z

# Free text (names, reasons, purposes...): shown to people, so checked by ledger.text (no
# control, bidi or zero-width character, NFC only) by ``check_free_text`` below. The marker
# in Meta.extra is how a field says it is free text rather than a code.
FREE_TEXT: Final = {"free_text": True}

Hex64 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
EntryId = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{32}$")]
UserName = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
Code = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9][A-Z0-9._-]{0,63}$")]
# Marked, so request forms (``ledger.kinds.requests``) accept any offset and default to now.
Time = Annotated[str, msgspec.Meta(pattern=RFC3339_Z, extra={"time": True})]
Text = Annotated[str, msgspec.Meta(max_length=2000, extra=FREE_TEXT)]
Int53 = Annotated[int, msgspec.Meta(ge=-MAX_SAFE_INT, le=MAX_SAFE_INT)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=MAX_SAFE_INT)]
B64Sig = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9+/]{86}==$")]
LogId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9./_-]{0,127}$")]

Role = Literal["operator", "official", "minister", "auditor", "security_admin"]
Clearance = Literal["NONE", "RESTRICTED", "CONFIDENTIAL", "SECRET"]
CLEARANCE_ORDER: Final[dict[str, int]] = {
    "NONE": 0,
    "RESTRICTED": 1,
    "CONFIDENTIAL": 2,
    "SECRET": 3,
}


def _is_free_text(annotation: Any) -> bool:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):  # Text | None
        return any(_is_free_text(a) for a in typing.get_args(annotation))
    if typing.get_origin(annotation) is not Annotated:
        return False
    return any(
        isinstance(m, msgspec.Meta) and (m.extra or {}).get("free_text") is True
        for m in typing.get_args(annotation)[1:]
    )


_FREE_TEXT_FIELDS: dict[type, tuple[str, ...]] = {}


def free_text_fields(cls: type) -> tuple[str, ...]:
    """Names of ``cls``'s free-text fields (computed once per class; pure Python, so safe
    from any thread, unlike msgspec's own lazy type inspection)."""
    names = _FREE_TEXT_FIELDS.get(cls)
    if names is None:
        hints = typing.get_type_hints(cls, include_extras=True)
        names = tuple(n for n in getattr(cls, "__struct_fields__", ()) if _is_free_text(hints.get(n)))
        _FREE_TEXT_FIELDS[cls] = names
    return names


def check_free_text(obj: msgspec.Struct, *, path: str) -> None:
    """None, or :class:`ledger.errors.InvalidEntry` naming the first bad free-text field
    of ``obj`` or of a struct inside it (``entry.evidence.reason``).

    Run on what is submitted (``ledger.entries.parse_submission``), not in the schema's
    ``__post_init__``: the rule binds new entries, and a history signed before it existed
    stays verifiable."""
    for name in obj.__struct_fields__:
        value = getattr(obj, name)
        if isinstance(value, msgspec.Struct):
            check_free_text(value, path=f"{path}.{name}")
        elif isinstance(value, list | tuple):  # e.g. a request's list of evidence
            for i, item in enumerate(value):
                if isinstance(item, msgspec.Struct):
                    check_free_text(item, path=f"{path}.{name}[{i}]")
    for name in free_text_fields(type(obj)):
        value = getattr(obj, name)
        if isinstance(value, str):
            try:
                free_text.check(value)
            except free_text.TextRefused as exc:
                raise InvalidEntry(f"free text {exc}", field=f"{path}.{name}") from None


class Body(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True, tag_field="kind"):
    """Fields every signed body has. ``id`` is chosen by the author (128 random bits)
    and is unique in the log: the reducer refuses a replayed id."""

    id: EntryId
    author: UserName
    created_at: Time
