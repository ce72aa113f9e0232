"""The bureau dashboard: ``GET /ui`` (the page) and ``GET /ui/static/{path}`` (its ES modules and CSS).

The page is static (``api/static``): plain HTML, hand-written CSS and ES modules, no build step and no
network beyond this service (no CDN, no tile server). It signs in with an API key held in the
browser's ``sessionStorage`` and calls the ``/v1`` endpoints with ``Authorization: Bearer``, so the
page itself needs no key and these routes are left out of the OpenAPI document.

A strict Content-Security-Policy (everything from this origin only) keeps it that way.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from api.problems import ApiProblem

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon", ".json": "application/json",
          ".woff2": "font/woff2", ".txt": "text/plain; charset=utf-8"}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
       "form-action 'self'")
_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


def static_file(rel: str) -> Path:
    """The file under ``api/static`` named by ``rel``; 404 for anything else (no escaping the folder).

    Raises
    ------
    ApiProblem
        404 when ``rel`` is empty, hidden, outside the folder, not a file or of an unknown type.
    """
    parts = [p for p in rel.split("/") if p]
    if not parts or any(p.startswith(".") or "\\" in p for p in parts):
        raise ApiProblem(404, f"no dashboard file {rel!r}", kind="not-found")
    path = (STATIC_DIR / Path(*parts)).resolve()
    if STATIC_DIR not in path.parents or not path.is_file() or path.suffix not in _TYPES:
        raise ApiProblem(404, f"no dashboard file {rel!r}", kind="not-found")
    return path


@router.api_route("/ui", methods=["GET", "HEAD"])
def ui_page() -> FileResponse:
    """The dashboard page (no key needed: the page asks for one)."""
    return FileResponse(STATIC_DIR / "index.html", media_type=_TYPES[".html"], headers=_HEADERS)


@router.get("/ui/")
def ui_slash() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=308)


@router.api_route("/ui/static/{rel:path}", methods=["GET", "HEAD"])
def ui_static(rel: str) -> FileResponse:
    path = static_file(rel)
    return FileResponse(path, media_type=_TYPES[path.suffix], headers=_HEADERS)


__all__ = ["CSP", "STATIC_DIR", "router", "static_file"]
