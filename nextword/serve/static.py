"""The playground's static assets: the page at ``/`` and its script and style sheet.

The assets are package data of ``nextword.serve`` (its ``playground/`` folder) and hold no data of the server's
(the page asks the API for everything it shows), so they are served without the API key. Only
the files named in :data:`ASSETS` can be requested: a request for any other name, including one
that tries to climb out of the folder, is a 404. Every answer carries a Content-Security-Policy
that lets the page talk to this server only (no CDN, no external fonts, no inline script).
"""

from __future__ import annotations

import functools
from importlib import resources

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nextword.serve.errors import error_body

__all__ = ["ASSETS", "CONTENT_SECURITY_POLICY", "asset_bytes", "playground_routes"]

ASSETS: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "playground.js": "text/javascript; charset=utf-8",
    "playground.css": "text/css; charset=utf-8",
}
"""The files of the playground (under ``nextword/serve/playground/``) and their content types."""

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""The page may load its own script and style sheet and call this server's API, nothing else."""

_PACKAGE = "nextword.serve"
_FOLDER = "playground"


@functools.cache
def asset_bytes(name: str) -> bytes:
    """The content of the playground file ``name`` (one of :data:`ASSETS`). Raises ``KeyError``
    for any other name, so no path reaches the file system unless it is listed."""
    if name not in ASSETS:
        raise KeyError(name)
    return resources.files(_PACKAGE).joinpath(_FOLDER, name).read_bytes()


def _asset_response(name: str) -> Response:
    return Response(
        asset_bytes(name),
        media_type=ASSETS[name],
        headers={
            "Cache-Control": "no-cache",
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


async def _index(request: Request) -> Response:
    return _asset_response("index.html")


async def _asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in ASSETS:
        return JSONResponse(
            error_body(f"no such playground file: {request.url.path}", "invalid_request_error"), status_code=404
        )
    return _asset_response(name)


def playground_routes() -> list[Route]:
    """The routes of the playground: ``GET /`` (the page) and ``GET /playground/{name}`` (its
    files). Neither needs the API key; the page sends it with every API call it makes."""
    return [
        Route("/", _index, methods=["GET"]),
        Route("/playground/{name}", _asset, methods=["GET"]),
    ]
