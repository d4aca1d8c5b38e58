"""Which storage a job spec may name: the scheme (422) and the tenant's prefixes (403).

Every view that takes a job spec (``POST /v1/jobs``, the dry run ``POST /v1/jobs/validate``)
calls ``check_spec_storage`` or wears ``@requires_spec_storage``, so the service's own
credentials never become a tenant's way into storage it was not given.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from flask_smorest import abort
from marshmallow import Schema, fields

from schemas import JobSpecSchema
from schemas.fields import Access, StorageURIField
from service.api import services
from service.api.auth import current_principal
from service.contract.uri import InvalidURI, parse_uri
from service.security import Principal

#: A place in a spec: the path of names from the top.
FieldPath = tuple[str, ...]
View = TypeVar("View", bound=Callable[..., Any])


def storage_fields(schema: Schema | type[Schema]) -> list[tuple[FieldPath, Access]]:
    """Every StorageURIField in ``schema`` and its nested schemas, with its access kind."""
    instance = schema() if isinstance(schema, type) else schema
    found: list[tuple[FieldPath, Access]] = []
    for name, field in instance.fields.items():
        key = field.data_key or name
        for path, access in _walk_field(field):
            found.append(((key, *path), access))
    return found


def _walk_field(field: fields.Field[Any]) -> Iterator[tuple[FieldPath, Access]]:
    if isinstance(field, StorageURIField):
        yield (), field.access
    elif isinstance(field, fields.Nested) and isinstance(field.schema, Schema):
        yield from storage_fields(field.schema)
    elif isinstance(field, fields.List):
        # Items of a list share one path: the check looks at each item under the list's name.
        yield from _walk_field(field.inner)


def _values_at(data: Any, path: FieldPath) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """The strings found at ``path`` in ``data``, with their concrete place (list indexes)."""
    if isinstance(data, list):
        for index, item in enumerate(data):
            for place, value in _values_at(item, path):
                yield (index, *place), value
        return
    if not path:
        if isinstance(data, str):
            yield (), data
        return
    if isinstance(data, dict) and data.get(path[0]) is not None:
        for place, value in _values_at(data[path[0]], path[1:]):
            yield (path[0], *place), value


def set_error(errors: dict[Any, Any], place: tuple[str | int, ...], message: str) -> None:
    """Add ``message`` under ``place`` in a nested ``errors.json`` mapping."""
    node = errors
    for part in place[:-1]:
        node = node.setdefault(part, {})
    node.setdefault(place[-1], []).append(message)


def storage_uris(spec: dict[str, Any]) -> Iterator[tuple[tuple[str | int, ...], Access, str]]:
    """Every storage URI a (validated) job spec names: its place, access kind and value."""
    for path, access in storage_fields(JobSpecSchema):
        for place, uri in _values_at(spec, path):
            yield place, access, uri


def scheme_errors(spec: dict[str, Any], allow_local: bool) -> dict[Any, Any]:
    """Per-field messages for ``file://`` URIs where the service has no local storage."""
    errors: dict[Any, Any] = {}
    if allow_local:
        return errors
    for place, _, uri in storage_uris(spec):
        try:
            local = parse_uri(uri).scheme == "file"
        except InvalidURI:
            continue  # the schema has already refused it
        if local:
            set_error(
                errors,
                place,
                "file:// storage is not enabled on this service: use s3://bucket/key.",
            )
    return errors


def access_errors(spec: dict[str, Any], principal: Principal) -> dict[Any, Any]:
    """Per-field messages for URIs outside the prefixes ``principal`` may read or write."""
    errors: dict[Any, Any] = {}
    if principal.unrestricted:
        return errors
    for place, access, uri in storage_uris(spec):
        allowed = principal.may_write(uri) if access == "write" else principal.may_read(uri)
        if allowed:
            continue
        prefixes = principal.write if access == "write" else principal.read
        listed = ", ".join(str(prefix) for prefix in prefixes or ()) or "none"
        set_error(
            errors,
            place,
            f"Tenant {principal.tenant!r} may not {access} {uri}. Prefixes it may {access}: "
            f"{listed}.",
        )
    return errors


def check_spec_storage(spec: dict[str, Any], principal: Principal | None = None) -> None:
    """Abort with 422 (a scheme this service does not serve) or 403 (outside the tenant's
    prefixes), naming every offending field under ``errors.json``.
    """
    schemes = scheme_errors(spec, services().config.allow_local_storage)
    if schemes:
        abort(422, message="The request has invalid fields: see errors.", errors={"json": schemes})
    principal = principal or current_principal()
    denied = access_errors(spec, principal)
    if denied:
        abort(
            403,
            message=f"The spec names storage that tenant {principal.tenant!r} may not use: "
            "see errors.",
            errors={"json": denied},
        )


def check_uri_storage(location: str, field_name: str, uri: str, access: Access) -> None:
    """Abort with 422 (a ``file://`` URI where the service has no local storage) or 403
    (outside the caller's prefixes for ``access``) for one URI outside a job spec.

    Args:
        location: Where the URI came from in the request: ``query`` or ``json``.
        field_name: Its field there.
        uri: The URI (already checked by its schema).
        access: ``read`` or ``write``.
    """
    errors: dict[Any, Any] = {}
    if not services().config.allow_local_storage and parse_uri(uri).scheme == "file":
        set_error(
            errors, (field_name,), "file:// storage is not enabled on this service: use s3://."
        )
        abort(422, message="The request has invalid fields: see errors.", errors={location: errors})
    principal = current_principal()
    allowed = principal.may_write(uri) if access == "write" else principal.may_read(uri)
    if principal.unrestricted or allowed:
        return
    prefixes = principal.write if access == "write" else principal.read
    listed = ", ".join(str(prefix) for prefix in prefixes or ()) or "none"
    set_error(
        errors,
        (field_name,),
        f"Tenant {principal.tenant!r} may not {access} {uri}. Prefixes it may {access}: {listed}.",
    )
    abort(
        403,
        message=f"Tenant {principal.tenant!r} may not {access} {uri}: see errors.",
        errors={location: errors},
    )


def requires_spec_storage(view: View) -> View:
    """Decorate a view method ``(self, spec, ...)`` to run ``check_spec_storage`` first."""

    @functools.wraps(view)
    def checked(self: Any, spec: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        check_spec_storage(spec)
        return view(self, spec, *args, **kwargs)

    return checked  # type: ignore[return-value]
