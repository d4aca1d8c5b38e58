"""``/v1/aliases``: show an alias and roll it back.

A job's ``promote.alias_uri`` changes an alias (service/jobs/aliases.py); these views read it
and roll it back through the same compare-and-swap. They go through the API, not straight to
storage, for the reasons every client does: the caller's token and tenant prefixes decide what
it may read and write, and the CLI needs no storage credentials of its own.
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import RAISE

from schemas import AliasQuerySchema, AliasRollbackSchema, AliasSchema
from service.api import services
from service.api.access import check_uri_storage
from service.api.responses import documents_errors
from service.jobs.aliases import Alias, AliasStore
from service.jobs.errors import AliasChanged, InvalidAlias, NoEarlierTarget, NoSuchAlias
from service.storage.errors import NoSuchBucket

blp = Blueprint(
    "aliases",
    __name__,
    url_prefix="/v1/aliases",
    description="Aliases that jobs promote their models to (spec promote.alias_uri): show, "
    "roll back.",
)


def _aliases(uri: str) -> AliasStore:
    store, key = services().storage.open(uri)
    return AliasStore(store, key, uri)


def _answer(uri: str, alias: Alias) -> dict[str, Any]:
    return {"uri": uri, **alias.to_dict()}


@blp.route("")
class Aliases(MethodView):
    """One alias, named by its URI."""

    @blp.arguments(AliasQuerySchema, location="query", as_kwargs=True, unknown=RAISE)
    @blp.response(200, AliasSchema)
    @documents_errors(
        blp,
        401,
        403,
        404,
        422,
        503,
        d403="The caller's tenant may not read `uri`.",
        d404="No alias object at `uri`.",
        d422="`uri` is not a storage URI of one object, or the object there is not an alias.",
    )
    def get(self, uri: str) -> dict[str, Any]:
        """Show an alias: its target, version, and earlier states.

        `target` is the model it points at (`job_id`, `keras_uri`, `saved_model_uri`,
        `manifest_uri`); `history` holds the earlier states, oldest first.
        """
        check_uri_storage("query", "uri", uri, "read")
        try:
            return _answer(uri, _aliases(uri).read())
        except (NoSuchAlias, NoSuchBucket):
            abort(404, message=f"No alias at {uri}: a job with promote.alias_uri creates it.")
        except InvalidAlias as exc:
            abort(422, message=str(exc), errors={"query": {"uri": [str(exc)]}})
        raise AssertionError("unreachable: abort raises")


@blp.route("/rollback")
class AliasRollback(MethodView):
    """Rolling an alias back."""

    @blp.arguments(AliasRollbackSchema)
    @blp.response(200, AliasSchema)
    @documents_errors(
        blp,
        400,
        401,
        403,
        404,
        409,
        422,
        503,
        d403="The caller's tenant may not write `uri`.",
        d404="No alias object at `uri`.",
        d409="The alias has no earlier target, or it is no longer at `version`.",
        d422="A field is invalid, or the object at `uri` is not an alias.",
    )
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Point an alias back at the target it had before the current one.

        A compare-and-swap like a promotion: the change is recorded in `history`
        (`change.action` `rollback`, `change.restored_version`), and rollbacks in a row walk
        back through the promotions. With `version`, only while the alias is still there.
        """
        uri, version = body["uri"], body["version"]
        check_uri_storage("json", "uri", uri, "write")
        try:
            return _answer(uri, _aliases(uri).rollback(expected_version=version))
        except (NoSuchAlias, NoSuchBucket):
            abort(404, message=f"No alias at {uri}: a job with promote.alias_uri creates it.")
        except (NoEarlierTarget, AliasChanged) as exc:
            abort(409, message=f"Nothing rolled back: {exc}")
        except InvalidAlias as exc:
            abort(422, message=str(exc), errors={"json": {"uri": [str(exc)]}})
        raise AssertionError("unreachable: abort raises")
