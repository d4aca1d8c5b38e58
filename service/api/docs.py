"""``/docs``: Swagger UI with its assets served by the service itself (no CDN; air-gapped).

flask-smorest renders the page (``OPENAPI_SWAGGER_UI_PATH``) and points it at
``/docs/assets/`` for the JavaScript and CSS; this blueprint serves those files from the
``flask-swagger-ui`` package, which ships the Swagger UI distribution (``pip install`` brings it).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from flask import Blueprint, Response, abort, send_from_directory

ASSETS_URL = "/docs/assets/"
ASSET_FILES = frozenset(
    {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "index.css",
        "favicon-16x16.png",
        "favicon-32x32.png",
    }
)
#: Swagger UI's settings: no call to the public validator service, deep links to operations.
SWAGGER_UI_CONFIG = {
    "validatorUrl": None,
    "deepLinking": True,
    "displayRequestDuration": True,
    "defaultModelsExpandDepth": 0,
}

blp = Blueprint("docs_assets", __name__)


def assets_dir() -> Path:
    """Where the installed flask-swagger-ui package keeps the Swagger UI distribution."""
    spec = importlib.util.find_spec("flask_swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("flask-swagger-ui is not installed: it ships /docs's assets")
    return Path(next(iter(spec.submodule_search_locations))) / "dist"


@blp.get(ASSETS_URL + "<string:name>")
def asset(name: str) -> Response:
    """One of Swagger UI's files (an allow-list: nothing else of the package is served)."""
    if name not in ASSET_FILES:
        abort(404)
    return send_from_directory(assets_dir(), name, max_age=86400)
