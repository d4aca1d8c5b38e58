"""Publishing waits out a short storage outage instead of failing a finished job."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from service.storage.client import StoragePatience, make_s3_client
from service.storage.resolver import Storage
from service.worker.errors import JobFailure
from service.worker.staging import Stager
from tests.helpers.moto_server import MotoServer
from tests.helpers.tcp_proxy import TcpProxy

#: One try per call: the Stager's own outage policy, not botocore, waits the outage out here.
ONE_TRY = StoragePatience("test", connect_timeout=5, read_timeout=60, max_attempts=1)


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    """A trainer's output folder: a SavedModel-like folder and a file."""
    root = tmp_path / "outputs"
    (root / "saved_model" / "variables").mkdir(parents=True)
    (root / "saved_model" / "saved_model.pb").write_bytes(b"graph")
    (root / "saved_model" / "variables" / "variables.index").write_bytes(b"index")
    (root / "model.keras").write_bytes(b"model")
    return root


def test_uploads_and_manifest_go_through_after_the_outage_ends(
    moto_server: MotoServer,
    s3_env: dict[str, str],
    outputs: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy = TcpProxy("127.0.0.1", moto_server.port).start()
    try:
        admin = make_s3_client()
        admin.create_bucket(Bucket="publish-outage")
        client = make_s3_client(endpoint_url=proxy.endpoint, patience=ONE_TRY)
        stager = Stager(Storage(lambda: client, allow_local=False), outage_seconds=60)
        proxy.stop()
        restart = threading.Timer(2.0, proxy.start)
        restart.start()

        stager.upload_outputs("s3://publish-outage/out/", outputs, ["saved_model", "model.keras"])
        stager.put_bytes("s3://publish-outage/out/manifest.json", b"{}")

        assert "storage unreachable while publishing" in caplog.text  # it waited it out
        keys = sorted(o["Key"] for o in admin.list_objects_v2(Bucket="publish-outage")["Contents"])
        assert keys == [
            "out/manifest.json",
            "out/model.keras",
            "out/saved_model/saved_model.pb",
            "out/saved_model/variables/variables.index",
        ]
    finally:
        restart.cancel()
        proxy.stop()


def test_an_outage_longer_than_the_limit_fails_the_job(
    moto_server: MotoServer, s3_env: dict[str, str], outputs: Path
) -> None:
    proxy = TcpProxy("127.0.0.1", moto_server.port).start()
    client = make_s3_client(endpoint_url=proxy.endpoint, patience=ONE_TRY)
    proxy.stop()
    stager = Stager(Storage(lambda: client, allow_local=False), outage_seconds=1)

    with pytest.raises(JobFailure) as failure:
        stager.upload_outputs("s3://publish-outage/out/", outputs, ["model.keras"])
    assert failure.value.code == "storage"


def test_errors_other_than_an_outage_fail_at_once(
    s3_env: dict[str, str], outputs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stager = Stager(Storage(make_s3_client, allow_local=False), outage_seconds=60)

    with pytest.raises(JobFailure, match="Could not write the result"):
        stager.upload_outputs("s3://no-such-bucket-here/out/", outputs, ["model.keras"])
    assert "retrying" not in caplog.text
