"""The start-up check that a backend enforces conditional writes."""

from __future__ import annotations

from typing import Any

import pytest

from service.storage import (
    ConditionalWritesUnsupported,
    ObjectStore,
    S3ObjectStore,
    verify_conditional_writes,
)


def test_selfcheck_passes_and_cleans_up(store: ObjectStore) -> None:
    verify_conditional_writes(store)
    verify_conditional_writes(store, prefix="state/_selfcheck/")

    assert list(store.list()) == []


def drop_condition_headers(request: Any, **_: Any) -> None:
    """Remove If-None-Match / If-Match before the request is signed and sent."""
    for header in ("If-None-Match", "If-Match"):
        if header in request.headers:
            del request.headers[header]


def test_selfcheck_refuses_a_server_that_ignores_conditions(s3_client: Any, bucket: str) -> None:
    # A fake, because no server that ignores conditional headers can run here: the client
    # drops the headers before sending, so moto answers as rclone serve s3 or s3rver would
    # (they accept the request and overwrite). The store's own code runs unchanged.
    s3_client.meta.events.register("before-sign.s3.PutObject", drop_condition_headers)
    store = S3ObjectStore(s3_client, bucket)

    with pytest.raises(ConditionalWritesUnsupported) as caught:
        verify_conditional_writes(store)

    message = str(caught.value)
    assert f"s3://{bucket}" in message
    assert "If-None-Match" in message
    assert "rclone serve s3" in message
    assert "MinIO" in message
    assert list(store.list()) == []


class RefusesEveryReplace(S3ObjectStore):
    """A fake whose If-Match never matches (e.g. a server comparing ETags with their quotes)."""

    def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        return super().put_if_match(key, data, etag + "-mangled")


def test_selfcheck_refuses_a_server_where_compare_and_swap_never_succeeds(
    s3_client: Any, bucket: str
) -> None:
    store = RefusesEveryReplace(s3_client, bucket)

    with pytest.raises(ConditionalWritesUnsupported, match="can never succeed"):
        verify_conditional_writes(store)
    assert list(store.list()) == []
