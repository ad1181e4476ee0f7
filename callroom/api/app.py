"""The HTTP API: Telnyx's paths under ``/v2``, plus the node's own routes (virtual phones, the console,
health)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from callroom.api import (
    docs,
    errors,
    routes_applications,
    routes_calls,
    routes_cluster,
    routes_conferences,
    routes_console,
    routes_files,
    routes_media_actions,
    routes_queues,
    routes_virtual,
    routes_webhooks,
)
from callroom.api.compiled import CompiledRoutes
from callroom.api.keys import KeyCache
from callroom.control.service import Control
from callroom.endpoints.virtual import VirtualPhones
from callroom.outbound import UNRESTRICTED, AddressPolicy


def create_app(
    control: Control,
    virtual_phones: VirtualPhones,
    public_key_b64: str,
    recordings_dir: Path,
    rate_limit: tuple[float, float] | None = None,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    url_policy: AddressPolicy = UNRESTRICTED,
) -> FastAPI:
    app = FastAPI(
        lifespan=lifespan,
        title="callroom",
        version="0.1.0",
        description="Conferences, queues and call control, compatible with Telnyx's Call Control API.",
        openapi_url="/v2/openapi.json",
        docs_url=None,  # docs.py: the same page, from installed files rather than a CDN
        redoc_url=None,
    )
    app.state.control = control
    app.state.virtual_phones = virtual_phones
    app.state.key_cache = KeyCache()
    app.state.rate_limit = rate_limit  # (requests per second, burst) per API key, or None
    app.state.rate_buckets = {}
    app.state.public_key = public_key_b64
    app.state.recordings_dir = recordings_dir
    app.state.media_dir = recordings_dir.parent / "media"
    app.state.url_policy = url_policy  # which addresses webhook and media URLs may name (outbound.py)
    errors.install(app)
    docs.install(app, "/v2/openapi.json")
    routers = [("/v2", r) for r in (routes_conferences.router, routes_queues.router, routes_calls.router,
                                    routes_applications.router, routes_media_actions.router,
                                    routes_files.router, routes_webhooks.router, routes_cluster.router)]
    routers += [("", routes_webhooks.metrics_router), ("", routes_virtual.router), ("", routes_console.router)]
    for prefix, router in routers:
        app.include_router(router, prefix=prefix)

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, Any]:
        return {"status": "ok", "node_id": control.node_id}

    app.state.routers = routers
    return app


def serving(app: FastAPI) -> CompiledRoutes:
    """What the HTTP server runs: the routes' compiled plans (see compiled.py) in front of ``app``. Bodies'
    URLs are checked against the node's address policy there (``schemas.Url``)."""
    return CompiledRoutes(app, app.state.routers, validation_context={"url_policy": app.state.url_policy})
