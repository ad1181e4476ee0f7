"""``/v2/docs``: Swagger UI for the node's OpenAPI document, served from files installed with the node (the
``fastapi-offline`` package ships Swagger UI's script and style sheet), so the page works on a machine that
reaches nothing else. FastAPI's own page would load them from a CDN."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

DOCS_PATH = "/v2/docs"
ASSETS_PATH = f"{DOCS_PATH}/assets"


def assets_dir() -> Path:
    return Path(str(files("fastapi_offline") / "static"))


def install(app: FastAPI, openapi_url: str) -> None:
    page = get_swagger_ui_html(
        openapi_url=openapi_url, title=f"{app.title} API",
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js", swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
        # Swagger UI would otherwise ask an online validator about the document, for a badge.
        swagger_ui_parameters={"validatorUrl": None},
    )

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return page

    app.mount(ASSETS_PATH, StaticFiles(directory=assets_dir()), name="docs-assets")
