"""Request forms: what a person sends to have an entry of a kind written for them
(issue #12, "a typed API"). Each form is derived from the kind's own struct, never
written twice:

* the fields the service sets (``kind``, ``id``, ``author``, ``created_at``) and those a
  route takes from its path are left out;
* a quantity (a kind's ``Qty``/``Qty0`` field, grams in the log) is typed as a decimal
  string with a unit (``"12.5 t"``), converted exactly (``ledger.units``): a bare number
  is refused, as on the command line;
* a purity is a percentage or a fraction (``ledger.units.parse_purity``);
* a time accepts any RFC 3339 offset and is stored in UTC; the time an event happened
  (``occurred_at``, ``observed_at``, ``valid_from``) defaults to now;
* a field with a default in the kind is optional: ``null`` or absent;
* every field carries the description and example of ``ledger.kinds.vocabulary``.

Forms are msgspec structs, so a request is checked by the same strict decoder as an
entry (no coercion, unknown fields refused, errors name the field) and the OpenAPI
schema is msgspec's JSON Schema of the form (``api/request_schemas.py``).
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

import msgspec

from ledger.errors import InvalidEntry
from ledger.kinds.base import check_free_text
from ledger.kinds.formats import describe_pattern
from ledger.kinds.vocabulary import term
from ledger.timefmt import format_time
from ledger.units import parse_purity, parse_quantity

SERVER_SET: Final = ("kind", "id", "author", "created_at")

# How a form field is converted into the entry's field.
QUANTITY, QUANTITY0, PURITY, TIME = "quantity", "quantity0", "purity", "time"

_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def to_utc(text: str, *, field: str) -> str:
    """An RFC 3339 time with any offset (section 5.6), as the log keeps it: UTC with ``Z``."""
    if not _RFC3339.fullmatch(text):
        raise InvalidEntry(
            "expected an RFC 3339 time such as 2026-11-29T10:00:00Z or 2026-11-29T11:00:00+01:00",
            field=field,
        )
    try:
        parsed = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
        return format_time(parsed.astimezone(UTC))
    except (ValueError, OverflowError):
        raise InvalidEntry("not a valid calendar time", field=field) from None


def _marker(annotation: Any) -> str | None:
    """The conversion a kind's field needs, from the marks its type carries
    (``ledger.kinds.base``: quantities, purities and times say what they are)."""
    for a in typing.get_args(annotation) if typing.get_origin(annotation) is Annotated else ():
        if isinstance(a, msgspec.Meta) and a.extra:
            if a.extra.get("quantity") is True:
                return QUANTITY0 if a.ge == 0 else QUANTITY
            if a.extra.get("purity") is True:
                return PURITY
            if a.extra.get("time") is True:
                return TIME
    return None


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True  # noqa: UP007
    return annotation, False


def _described(base: Any, name: str, extra_schema: dict[str, Any] | None = None) -> Any:
    t = term(name)
    examples = [t.example] if t.example is not None else None
    return Annotated[base, msgspec.Meta(description=t.description, examples=examples, extra_json_schema=extra_schema)]


@dataclass(frozen=True)
class Form:
    """One request form: its msgspec struct and, per field, how it becomes the entry's."""

    kind: str
    struct: type[msgspec.Struct]
    conversions: dict[str, str]
    nested: dict[str, Form]  # field -> form of the struct(s) inside it, by struct name


_NESTED: dict[type, Form] = {}


def _form_type(annotation: Any, nested: dict[str, Form]) -> Any:
    """The form's type for a kind's type: nested structs become their own forms."""
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        form = _nested_form(annotation)
        nested[form.struct.__name__] = form
        return form.struct
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *metas = typing.get_args(annotation)
        return Annotated[(_form_type(base, nested), *metas)]
    if origin in (list,):
        return list[_form_type(typing.get_args(annotation)[0], nested)]  # type: ignore[misc]
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_form_type(a, nested) for a in typing.get_args(annotation))]  # noqa: UP007
    return annotation


def _fields(
    cls: type[msgspec.Struct], *, leave_out: tuple[str, ...], optional: tuple[str, ...]
) -> tuple[list[tuple[str, Any, Any] | tuple[str, Any]], dict[str, str], dict[str, Form]]:
    hints = typing.get_type_hints(cls, include_extras=True)
    info = msgspec.structs.fields(cls)
    required: list[tuple[str, Any]] = []
    defaulted: list[tuple[str, Any, Any]] = []
    conversions: dict[str, str] = {}
    nested: dict[str, Form] = {}
    for f in info:
        if f.name in leave_out:
            continue
        hint = hints[f.name]
        inner, was_optional = _strip_optional(hint)
        marker = _marker(inner)
        has_default = f.default is not msgspec.NODEFAULT or f.default_factory is not msgspec.NODEFAULT
        if marker in (QUANTITY, QUANTITY0):
            typ: Any = _described(Annotated[str, msgspec.Meta(min_length=1, max_length=64)], f.name)
        elif marker == PURITY:
            typ = _described(Annotated[str, msgspec.Meta(min_length=1, max_length=64)], f.name)
        elif marker == TIME:
            typ = _described(Annotated[str, msgspec.Meta(min_length=1, max_length=64)], f.name, {"format": "date-time"})
        else:
            typ = _described(_form_type(inner, nested), f.name)
        if marker:
            conversions[f.name] = marker
        literal = typing.get_args(inner) if typing.get_origin(inner) is Literal else ()
        if len(literal) == 1 and not has_default:  # the only value it may take
            defaulted.append((f.name, typ | None, None))
            conversions.setdefault(f.name, "literal:" + str(literal[0]))
        elif has_default or was_optional or f.name in optional or (marker == TIME and term(f.name).default_now):
            defaulted.append((f.name, typ | None, None))
        elif term(f.name).default_empty:  # e.g. an arrival's shortfall_reason (issue #12)
            defaulted.append((f.name, typ | None, None))
            conversions[f.name] = "literal:"
        else:
            required.append((f.name, typ))
    return [*required, *defaulted], conversions, nested


def _nested_form(cls: type[msgspec.Struct]) -> Form:
    form = _NESTED.get(cls)
    if form is None:
        fields, conversions, nested = _fields(cls, leave_out=(), optional=())
        tag_field = cls.__struct_config__.tag_field
        tag = cls.__struct_config__.tag
        struct = msgspec.defstruct(
            cls.__name__ + "In",
            fields,
            forbid_unknown_fields=True,
            frozen=True,
            tag_field=tag_field,
            tag=tag,
        )
        struct.__doc__ = cls.__doc__
        form = Form(kind=str(tag or cls.__name__), struct=struct, conversions=conversions, nested=nested)
        _NESTED[cls] = form
    return form


def make_form(
    cls: type[msgspec.Struct],
    *,
    name: str | None = None,
    from_path: tuple[str, ...] = (),
    server_sets: tuple[str, ...] = (),
    optional: tuple[str, ...] = (),
    doc: str | None = None,
) -> Form:
    """The request form of entry kind ``cls``; ``from_path`` and ``server_sets`` fields are
    not sent in the body; ``optional`` ones may be left out (the route fills them)."""
    fields, conversions, nested = _fields(cls, leave_out=(*SERVER_SET, *from_path, *server_sets), optional=optional)
    struct = msgspec.defstruct(
        name or cls.__name__ + "In", fields, forbid_unknown_fields=True, frozen=True, kw_only=True
    )
    struct.__doc__ = doc or cls.__doc__
    tag = cls.__struct_config__.tag
    return Form(kind=str(tag), struct=struct, conversions=conversions, nested=nested)


def _convert(form: Form, obj: msgspec.Struct, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cfg = type(obj).__struct_config__
    if cfg.tag_field is not None and cfg.tag is not None:
        out[cfg.tag_field] = cfg.tag
    for name in obj.__struct_fields__:
        value = getattr(obj, name)
        where = f"{path}.{name}" if path else name
        how = form.conversions.get(name)
        if value is None:
            if how is not None and how.startswith("literal:"):
                out[name] = how.split(":", 1)[1]
            elif how == TIME and term(name).default_now:
                out[name] = format_time(datetime.now(UTC))
            continue  # optional and absent: the kind's default
        if how in (QUANTITY, QUANTITY0):
            grams = parse_quantity(value, field=where)
            if grams == 0 and how == QUANTITY:
                raise InvalidEntry("a quantity here must be more than zero", field=where)
            out[name] = grams
        elif how == PURITY:
            out[name] = parse_purity(value, field=where)
        elif how == TIME:
            out[name] = to_utc(value, field=where)
        else:
            out[name] = _plain(form, value, where)
    return out


def _plain(form: Form, value: Any, where: str) -> Any:
    if isinstance(value, msgspec.Struct):
        return _convert(form.nested[type(value).__name__], value, where)
    if isinstance(value, list):
        return [_plain(form, v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


BARE_NUMBER = (
    "write a quantity as a decimal number and a unit, e.g. '12.5 t': a bare number is refused "
    "(its unit would be a guess)"
)


def _is_quantity(form: Form, field: str) -> bool:
    """Whether the field at JSON path ``field`` is a quantity of ``form`` or a nested form."""
    leaf = re.split(r"[.\[]", field)[-1]
    forms = [form, *form.nested.values()]
    return any(f.conversions.get(leaf) in (QUANTITY, QUANTITY0) for f in forms)


_NAMED = re.compile(r"(?:missing required|contains unknown) field `([^`]*)`")
_AT = re.compile(r" - at `\$\.?(.*)`$")
_REGEX = re.compile(r"Expected `str` matching regex '(.*)'$", re.DOTALL)


def parse_form(form: Form, data: Any, *, path: str = "entry") -> dict[str, Any]:
    """The entry fields for request ``data`` (a decoded JSON value), or
    :class:`InvalidEntry` naming the field as ``path.field``: the request's fields are
    the entry's, and the rules name them so too (``entry.quantity``)."""
    try:
        obj = msgspec.convert(data, form.struct, strict=True)
    except msgspec.ValidationError as exc:
        text = str(exc)
        m = _AT.search(text)
        reason = text[: m.start()] if m else text
        pattern = _REGEX.match(reason)
        field = (m.group(1) if m else None) or None
        named = _NAMED.search(reason)  # a missing or unknown field is named in the message
        if named is not None:
            field = f"{field}.{named.group(1)}" if field else named.group(1)
        if field is not None and reason.startswith("Expected `str`") and _is_quantity(form, field):
            reason = BARE_NUMBER
        elif pattern is not None:  # words, never the regular expression (issue #12)
            reason = f"expected {describe_pattern(pattern.group(1).replace(chr(92) * 2, chr(92)))}"
        raise InvalidEntry(reason, field=f"{path}.{field}" if field else path) from None
    check_free_text(obj, path=path)
    return _convert(form, obj, path)


def _choices(annotation: Any) -> tuple[Any, ...]:
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return typing.get_args(annotation) if typing.get_origin(annotation) is Literal else ()


def example(form: Form) -> dict[str, Any]:
    """A whole request built from the vocabulary's examples (documentation, and a test
    posts each one as is)."""
    out: dict[str, Any] = {}
    for f in msgspec.structs.fields(form.struct):
        value = term(f.name).example
        # Optional fields are left out (times then mean "now", so the example never goes
        # stale), except evidence, without which no release request is complete.
        if value is None or (not f.required and f.name != "evidence"):
            continue
        choices = _choices(f.type)
        if choices and value not in choices:  # a name two kinds use differently (basis)
            value = choices[0]
        if f.name == "containers":
            value = [{"id": term("id").example, "type": term("type").example, "net_mass": term("net_mass").example}]
        out[f.name] = value
    return out
