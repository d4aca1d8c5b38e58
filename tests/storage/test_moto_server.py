"""The MotoServer test helper that end-to-end tests start for themselves."""

from __future__ import annotations

import pytest

from service.storage import NoSuchBucket, S3ObjectStore, StorageUnavailable, make_s3_client
from service.storage.client import StoragePatience
from tests.helpers.moto_server import MotoServer


def test_restart_keeps_the_port_and_forgets_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    with MotoServer(serialize_requests=False) as server:
        for name, value in server.env.items():
            monkeypatch.setenv(name, value)
        client = make_s3_client(patience=StoragePatience("test", 1, 5, 1))
        client.create_bucket(Bucket="kept-across-restart")
        store = S3ObjectStore(client, "kept-across-restart")
        store.put("k", b"v")
        endpoint = server.endpoint

        server.stop()
        assert not server.running
        with pytest.raises(StorageUnavailable):
            store.get("k")

        server.restart()
        assert server.endpoint == endpoint
        with pytest.raises(NoSuchBucket):
            store.get("k")
