"""Named request schemas of the write routes in the OpenAPI document (issue #12).

A write route's body is read as a JSON object (strictly, ``api.body``) and checked by its
form (``ledger.kinds.requests``), so the schema that documents it is the form's own JSON
Schema as msgspec writes it, with a whole example request; FastAPI cannot derive it from
a ``dict`` parameter, so :func:`install` puts it in the document's components and points
each route's ``requestBody`` at it. Nothing here validates: the forms do.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec
from fastapi import FastAPI

from ledger.entries import AnyBody, Sigs
from ledger.kinds.requests import Form, example

FORMS: dict[str, Form] = {}
EXTRA: Final = "x-request-schema"
OPTIONAL_BODY: Final = "x-request-optional"

# POST /entries: a body signed by its author's own key.
SignedEntryIn = msgspec.defstruct(
    "SignedEntryIn",
    [
        ("entry", Annotated[AnyBody, msgspec.Meta(description="the entry body (its kind, id, author, created_at and fields)")]),
        ("sigs", Annotated[Sigs, msgspec.Meta(description="Ed25519 signatures: the author's first, then co-signers'")]),
    ],
    forbid_unknown_fields=True,
    frozen=True,
)
SignedEntryIn.__doc__ = (
    "An entry signed by its author's own key (v2: the signature covers the log id); "
    "the token's subject must be the author."
)


def documented(form: Form, route_kwargs: dict[str, Any], *, optional: bool = False) -> dict[str, Any]:
    """``route_kwargs`` (from ``api.deps.roles``) with the route's body documented as
    ``form``'s schema."""
    FORMS[form.struct.__name__] = form
    extra = {**route_kwargs.get("openapi_extra", {}), EXTRA: form.struct.__name__}
    if optional:
        extra[OPTIONAL_BODY] = True
    return {**route_kwargs, "openapi_extra": extra}


def signed_entry(route_kwargs: dict[str, Any]) -> dict[str, Any]:
    return {**route_kwargs, "openapi_extra": {**route_kwargs.get("openapi_extra", {}), EXTRA: "SignedEntryIn"}}


def _components() -> dict[str, Any]:
    structs = [f.struct for f in FORMS.values()]
    _, components = msgspec.json.schema_components(
        [*structs, SignedEntryIn], ref_template="#/components/schemas/{name}"
    )
    for name, form in FORMS.items():
        components[name]["examples"] = [example(form)]
        for prop in components[name].get("properties", {}).values():
            _hoist(prop)
    return components


def _hoist(prop: dict[str, Any]) -> None:
    """An optional field's description and example said on the field, not on the
    non-null branch of its ``anyOf`` (where msgspec puts them)."""
    for branch in prop.get("anyOf", ()):
        for key in ("description", "examples"):
            if key in branch and key not in prop:
                prop[key] = branch.pop(key)


def install(app: FastAPI) -> None:
    """Have ``app``'s OpenAPI document carry the forms (built once, as FastAPI caches it)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = build()
        doc.setdefault("components", {}).setdefault("schemas", {}).update(_components())
        for ops in doc.get("paths", {}).values():
            for op in ops.values():
                name = op.pop(EXTRA, None) if isinstance(op, dict) else None
                if name is None:
                    continue
                required = not op.pop(OPTIONAL_BODY, False)
                op["requestBody"] = {
                    "required": required,
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
                }
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
