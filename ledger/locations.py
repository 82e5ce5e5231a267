"""Site locations and their commitments (DESIGN.md, "Secrets: location confidentiality by
commitment").

A site's real location never enters the log. The log holds a **commitment**::

    commitment = hex(SHA-256(salt || location_bytes(location)))

where ``salt`` is 32 random bytes and ``location_bytes`` is the RFC 8785 canonical JSON of
the :class:`Location` as an object. Whoever is given an opening (salt and location) can
check it against the signed commitment with :func:`verify_opening`; nothing else is
needed, so the offline verifier may import this module (stdlib and ``ledger`` only, no
cryptography library, no key).

Every value of a location is secret: no error raised here, and no ``repr`` of a
:class:`Location` or an :class:`Opening`, ever contains one. Errors name the field only.

The sealed copy of each opening lives outside the log (``ledger.store.locations``),
encrypted by a :class:`Sealer` (``keys.sealing.AesGcmSealer``).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import math
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, NoReturn, Protocol, runtime_checkable

import msgspec

from ledger.canonical import canonical
from ledger.errors import InvalidEntry, VerificationFailed

__all__ = [
    "MAX_LOCATION_BYTES",
    "SALT_LEN",
    "Location",
    "Opening",
    "Sealer",
    "commitment",
    "location_bytes",
    "parse_location",
    "verify_opening",
]

SALT_LEN: Final = 32
#: Far above the largest valid location (every character escaped), far below harm.
MAX_LOCATION_BYTES: Final = 64 * 1024

_NAME_MAX: Final = 200
_ADDRESS_MAX: Final = 500
_NOTES_MAX: Final = 2000

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=_NAME_MAX)]
Address = Annotated[str, msgspec.Meta(min_length=1, max_length=_ADDRESS_MAX)]
Notes = Annotated[str, msgspec.Meta(max_length=_NOTES_MAX)]
Latitude = Annotated[float, msgspec.Meta(ge=-90.0, le=90.0)]
Longitude = Annotated[float, msgspec.Meta(ge=-180.0, le=180.0)]

# What each field must be: the only text an error about a field may carry.
_RULES: Final[dict[str, str]] = {
    "name": f"must be a string of 1 to {_NAME_MAX} characters",
    "address": f"must be a string of 1 to {_ADDRESS_MAX} characters",
    "latitude": "must be a number from -90 to 90",
    "longitude": "must be a number from -180 to 180",
    "notes": f"must be a string of at most {_NOTES_MAX} characters",
}
_STRING_LIMITS: Final[dict[str, tuple[int, int]]] = {
    "name": (1, _NAME_MAX),
    "address": (1, _ADDRESS_MAX),
    "notes": (0, _NOTES_MAX),
}
_NUMBER_LIMITS: Final[dict[str, float]] = {"latitude": 90.0, "longitude": 180.0}
# An unknown key is echoed only if it looks like a field name (a key could be a pasted
# secret: '{"35.68, 139.76": ...}').
_SAFE_KEY = re.compile(r"[a-z_][a-z0-9_]{0,39}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MSGSPEC_MISSING = re.compile(r"^Object missing required field `([a-z_]+)`")
_MSGSPEC_UNKNOWN = re.compile(r"^Object contains unknown field `")
_MSGSPEC_AT = re.compile(r" - at `\$\.([a-z_]+)`$")


def _field_error(name: str) -> InvalidEntry:
    return InvalidEntry(_RULES[name], field=name)


class Location(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """A site's real location. Every field is secret; ``repr`` shows none of them.

    Constructed directly, a Location is checked like a parsed one (``__post_init__``
    raises :class:`InvalidEntry` naming the field), so an invalid one cannot be committed.
    """

    name: Name
    address: Address
    latitude: Latitude
    longitude: Longitude
    notes: Notes = ""

    def __post_init__(self) -> None:
        # Decoding has checked the constraints already; this catches direct construction
        # (msgspec does not validate __init__ arguments).
        for fname, (lo, hi) in _STRING_LIMITS.items():
            value = getattr(self, fname)
            if not isinstance(value, str) or not lo <= len(value) <= hi:
                raise _field_error(fname)
        for fname, limit in _NUMBER_LIMITS.items():
            value = getattr(self, fname)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or not -limit <= value <= limit
            ):
                raise _field_error(fname)

    def __repr__(self) -> str:
        return "Location(<hidden>)"

    __str__ = __repr__


def _reject_constant(name: str) -> NoReturn:
    raise ValueError("NaN and Infinity are not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise InvalidEntry("a field appears twice", field=k if _SAFE_KEY.fullmatch(k) else None)
        out[k] = v
    return out


def _convert(value: Any) -> Location:
    """``value`` (parsed JSON) as a Location; errors name the field, never a value."""
    if not isinstance(value, dict):
        raise InvalidEntry("a location is a JSON object")
    try:
        return msgspec.convert(value, Location, strict=True)
    except msgspec.ValidationError as exc:
        text = str(exc)
    # Rebuild the message from fixed text: msgspec's own may one day quote the input.
    m = _MSGSPEC_MISSING.match(text)
    if m and m.group(1) in _RULES:
        raise InvalidEntry("required field is missing", field=m.group(1))
    if _MSGSPEC_UNKNOWN.match(text):
        unknown = sorted(k for k in value if k not in _RULES)
        key = unknown[0] if unknown and isinstance(unknown[0], str) else ""
        if _SAFE_KEY.fullmatch(key):
            raise InvalidEntry("unknown field", field=key)
        raise InvalidEntry("a location has an unknown field")
    m = _MSGSPEC_AT.search(text)
    if m and m.group(1) in _RULES:
        raise _field_error(m.group(1))
    raise InvalidEntry("not a valid location")


def parse_location(data: bytes) -> Location:
    """Strictly parse a location from JSON: UTF-8, no duplicate or unknown fields, no
    NaN/Infinity, every constraint of :class:`Location`, and canonicalisable (no lone
    surrogates). Raises :class:`InvalidEntry` naming the field, never quoting a value."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidEntry("a location is given as JSON bytes")
    data = bytes(data)
    if len(data) > MAX_LOCATION_BYTES:
        raise InvalidEntry(f"a location is at most {MAX_LOCATION_BYTES} bytes of JSON")
    # Errors are raised outside the ``except`` blocks so that they carry no context:
    # UnicodeDecodeError and JSONDecodeError hold the whole input (``.object``, ``.doc``).
    text: str | None = None
    with contextlib.suppress(UnicodeDecodeError):
        text = data.decode("utf-8")
    if text is None:
        raise InvalidEntry("a location is UTF-8 JSON")
    value: Any = None
    bad_json = False
    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except InvalidEntry:
        raise
    except (ValueError, RecursionError):
        bad_json = True
    if bad_json:
        raise InvalidEntry("a location is not valid JSON")
    loc = _convert(value)
    location_bytes(loc)  # lone surrogates and the like cannot be canonicalised
    return loc


def location_bytes(loc: Location) -> bytes:
    """RFC 8785 canonical JSON of ``loc`` as an object (every field, ``notes`` included)."""
    if not isinstance(loc, Location):
        raise InvalidEntry("not a Location")
    obj = {
        "name": loc.name,
        "address": loc.address,
        "latitude": float(loc.latitude),
        "longitude": float(loc.longitude),
        "notes": loc.notes,
    }
    encoded: bytes | None = None
    # Raised below, without the encoder's exception (whose message may quote the value).
    with contextlib.suppress(InvalidEntry):
        encoded = canonical(obj)
    if encoded is None:
        bad = next((f for f in _STRING_LIMITS if not _utf8_ok(getattr(loc, f))), None)
        raise InvalidEntry("the location cannot be canonicalised (RFC 8785)", field=bad)
    return encoded


def _utf8_ok(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_salt(salt: bytes) -> bytes:
    if not isinstance(salt, bytes | bytearray) or len(salt) != SALT_LEN:
        raise InvalidEntry(f"the salt must be {SALT_LEN} bytes", field="salt")
    return bytes(salt)


def _check_canonical_location(location: bytes) -> bytes:
    if not isinstance(location, bytes | bytearray):
        raise InvalidEntry("the location must be canonical location bytes", field="location")
    location = bytes(location)
    if location_bytes(parse_location(location)) != location:
        raise InvalidEntry(
            "the location is not in canonical form (use location_bytes)", field="location"
        )
    return location


def commitment(*, salt: bytes, location: bytes) -> str:
    """Lowercase hex SHA-256(salt || location).

    ``salt`` is 32 bytes; ``location`` is :func:`location_bytes` of a valid location
    (anything else, even the same location in another JSON form, is refused, so a
    commitment always opens to exactly one location).
    """
    salt = _check_salt(salt)
    location = _check_canonical_location(location)
    return hashlib.sha256(salt + location).hexdigest()


_commitment = commitment  # verify_opening's keyword parameter shadows the name


def verify_opening(*, commitment: str, salt: bytes, location: bytes) -> None:
    """Return nothing if (salt, location) opens ``commitment``; otherwise raise
    :class:`VerificationFailed` (whose message never contains the location or salt).

    The comparison is constant-time.
    """
    if not isinstance(commitment, str) or _HEX64.fullmatch(commitment) is None:
        raise VerificationFailed("the commitment is not 64 lowercase hex digits")
    computed: bytes | None = None
    reason = ""
    try:
        computed = bytes.fromhex(_commitment(salt=salt, location=location))
    except InvalidEntry as exc:
        reason = exc.public_message  # fixed text naming a field, never a value
    if computed is None:
        raise VerificationFailed(f"the opening does not match the commitment ({reason})")
    if not hmac.compare_digest(computed, bytes.fromhex(commitment)):
        raise VerificationFailed("the opening does not match the commitment")


@runtime_checkable
class Sealer(Protocol):
    """Authenticated encryption of openings, with one key (``keys.sealing.AesGcmSealer``).

    Every failure to open (wrong key, tampered nonce, ciphertext or associated data) raises
    :class:`ledger.errors.KeystoreError` and reveals nothing else.
    """

    @property
    def key_id(self) -> str:
        """A public name of the key (does not reveal the key)."""
        ...

    def seal(self, plaintext: bytes, *, aad: bytes) -> tuple[bytes, bytes]:
        """Encrypt ``plaintext`` bound to ``aad``; return (nonce, ciphertext)."""
        ...

    def open(self, nonce: bytes, ciphertext: bytes, *, aad: bytes) -> bytes:
        """Decrypt and authenticate; fail closed."""
        ...


@dataclass(frozen=True)
class Opening:
    """A revealed location with what proves it: ``commitment`` opens to (salt, location).

    ``repr`` shows the site, version and commitment (all public) and hides the rest.
    """

    site: str
    version: int
    commitment: str
    salt: bytes = field(repr=False)
    location: Location = field(repr=False)

    def __repr__(self) -> str:
        return (
            f"Opening(site={self.site!r}, version={self.version}, "
            f"commitment={self.commitment!r}, salt=<hidden>, location=<hidden>)"
        )

    __str__ = __repr__

    def location_bytes(self) -> bytes:
        """Canonical bytes of the location, as committed."""
        return location_bytes(self.location)

    def verify(self) -> None:
        """:func:`verify_opening` of this opening against its own commitment."""
        verify_opening(commitment=self.commitment, salt=self.salt, location=self.location_bytes())


# Inspect the type now, at import, not on first use from several threads at once
# (msgspec's lazy first-use inspection is not thread-safe: issue #8, item 1).
msgspec.json.Decoder(Location)
