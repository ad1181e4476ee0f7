"""``/v2/docs`` works offline: the page and everything it loads come from the node itself."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import httpx

from tests.support.node import NodeThread


def test_the_docs_page_and_its_assets_load_from_the_node(node: NodeThread) -> None:
    page = httpx.get(f"{node.base_url}/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "cdn" not in html.lower() and "://" not in html  # nothing absolute: no other host
    loaded = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)
    assert sorted(loaded) == ["/v2/docs/assets/favicon.png", "/v2/docs/assets/swagger-ui-bundle.js",
                              "/v2/docs/assets/swagger-ui.css", "/v2/openapi.json"]
    kinds = {}
    for path in loaded:
        resp = httpx.get(urljoin(node.root_url, path))
        assert resp.status_code == 200, path
        assert len(resp.content) > 100, path
        kinds[path.rsplit(".", 1)[-1]] = resp.headers["content-type"].split(";")[0]
    assert kinds == {"png": "image/png", "js": "text/javascript", "css": "text/css", "json": "application/json"}
    assert '"validatorUrl": null' in html  # no online validator asked either
