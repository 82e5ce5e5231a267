"""Field types and the fields every signed body has."""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from ledger.canonical import MAX_SAFE_INT
from ledger.timefmt import RFC3339_Z

Hex64 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
EntryId = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{32}$")]
UserName = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
Code = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9][A-Z0-9._-]{0,63}$")]
Time = Annotated[str, msgspec.Meta(pattern=RFC3339_Z)]
Text = Annotated[str, msgspec.Meta(max_length=2000)]
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


class Body(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True, tag_field="kind"):
    """Fields every signed body has. ``id`` is chosen by the author (128 random bits)
    and is unique in the log: the reducer refuses a replayed id."""

    id: EntryId
    author: UserName
    created_at: Time
