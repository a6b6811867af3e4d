"""The web UI: a chat widget (/ui/widget.js, /ui/chat), the agent desk (/ui/agent), the admin console (/ui/admin)
and the API docs (/ui/docs over GET /openapi.json, which needs an admin key).

Plain HTML/CSS/JS files under serve/static, served as they are: no build step, no CDN, nothing fetched from the
internet, so a shop's offline or firewalled install shows the same pages, and the files reviewers read are the
files browsers run. The pages are public shells; every datum comes from the key-checked API. Agent and admin keys
are typed by a person and kept in sessionStorage, never in a URL or the page source. The chat page and widget use
a publishable "client" key (chat and feedback only, rate-limited, revocable), see docs/ui.md.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from kefu.serve.auth import AdminKey

STATIC = Path(__file__).resolve().parent.parent / "static"
WIDGET_KEY_ENV = "KEFU_WIDGET_KEY"  # the publishable client key the hosted /ui/chat page embeds
router = APIRouter()
_NO_CACHE = {"Cache-Control": "no-cache"}


def mount(app: FastAPI) -> None:
    """Include the UI routes and the static assets."""
    from kefu.serve.routes import ui_data

    app.mount("/ui/assets", StaticFiles(directory=STATIC), name="ui-assets")
    for r in (router, ui_data.admin, ui_data.agent):
        app.include_router(r)


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC / name, media_type="text/html; charset=utf-8", headers=_NO_CACHE)


@router.get("/ui/widget.js", include_in_schema=False)
async def widget() -> FileResponse:
    return FileResponse(STATIC / "widget.js", media_type="text/javascript; charset=utf-8", headers=_NO_CACHE)


@router.get("/ui/chat", include_in_schema=False)
async def chat_page() -> HTMLResponse:
    # The hosted chat page needs the shop's publishable key; it is chat-only, so putting it in the page is the
    # design (as in the <script> tag a shop pastes), never an agent or admin key.
    key = os.environ.get(WIDGET_KEY_ENV, "")
    text = (STATIC / "chat.html").read_text(encoding="utf-8").replace("{{WIDGET_KEY}}", html.escape(key, quote=True))
    return HTMLResponse(text, headers=_NO_CACHE)


@router.get("/ui/agent", include_in_schema=False)
async def agent_page() -> FileResponse:
    return _page("agent.html")


@router.get("/ui/admin", include_in_schema=False)
async def admin_page() -> FileResponse:
    return _page("admin.html")


@router.get("/ui/docs", include_in_schema=False)
async def docs_page() -> FileResponse:
    return _page("docs.html")


@router.get("/openapi.json", include_in_schema=False)
async def openapi(request: Request, key: AdminKey) -> JSONResponse:
    """The OpenAPI schema of every route, at a stable path, for admin keys only."""
    schema: dict[str, Any] = request.app.openapi()
    return JSONResponse(schema)
