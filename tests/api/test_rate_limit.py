"""Rate limiting per API key: 429 with Telnyx's code and headers, and the SDK's retry honouring them."""

from __future__ import annotations

from pathlib import Path

import httpx
import telnyx

from callroom.api.ratelimit import TokenBucket
from tests.support.node import NodeThread


def test_token_bucket_refills_with_time() -> None:
    bucket = TokenBucket(rate=10.0, burst=2.0)
    assert bucket.take(0.0) and bucket.take(0.0)
    assert not bucket.take(0.0)
    assert abs(bucket.retry_after() - 0.1) < 1e-9
    assert not bucket.take(0.05)
    assert bucket.take(0.1)


def test_limited_key_gets_429_and_the_sdk_retries(tmp_path: Path) -> None:
    node = NodeThread(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path, rate_limit=(1.0, 3.0))
    try:
        key = node.new_key("limited")
        statuses = [
            httpx.get(f"{node.base_url}/queues", headers={"Authorization": f"Bearer {key}"}).status_code
            for _ in range(5)
        ]
        assert statuses[:3] == [200] * 3 and 429 in statuses[3:]
        limited = httpx.get(f"{node.base_url}/queues", headers={"Authorization": f"Bearer {key}"})
        assert limited.status_code == 429
        assert limited.json()["errors"][0]["code"] == "10011"
        assert float(limited.headers["retry-after"]) > 0 and limited.headers["x-ratelimit-limit"] == "3"
        other = node.new_key("other")  # another key has its own budget
        assert httpx.get(f"{node.base_url}/queues", headers={"Authorization": f"Bearer {other}"}).status_code == 200
        client = telnyx.Telnyx(api_key=key, base_url=node.base_url, max_retries=5)
        assert client.queues.list().data == []  # retried after Retry-After until a token was free
    finally:
        node.stop()
