"""Mapping storage URIs to the object store that holds them."""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.contract.uri import InvalidURI, StorageURI, parse_uri
from service.storage.base import ObjectStore
from service.storage.local import LocalObjectStore
from service.storage.s3 import S3ObjectStore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

#: Lock files for the ``file://`` store rooted at '/', which cannot keep them below its root.
DEFAULT_LOCAL_LOCK_DIR = Path(tempfile.gettempdir()) / "finetune-storage-locks"


class Storage:
    """Opens the object store behind a URI, one store per bucket, one client per process.

    Args:
        s3_client_factory: Builds the S3 client (e.g. ``make_s3_client``); called once, on
            the first ``s3://`` URI, so a service that only uses local storage never needs
            AWS settings.
        allow_local: Whether ``file://`` URIs from job specs may be used. Off in multi-tenant
            deployments: a client must not read or write the service's own disk.
        local_lock_dir: Lock directory for the ``file://`` store; every process sharing the
            files must use the same one.
    """

    def __init__(
        self,
        s3_client_factory: Callable[[], S3Client],
        allow_local: bool,
        local_lock_dir: Path | None = None,
    ) -> None:
        self._s3_client_factory = s3_client_factory
        self.allow_local = allow_local
        self._local_lock_dir = local_lock_dir or DEFAULT_LOCAL_LOCK_DIR
        self._client: S3Client | None = None
        self._buckets: dict[str, S3ObjectStore] = {}
        self._local: LocalObjectStore | None = None
        self._lock = threading.Lock()

    @property
    def s3_client(self) -> S3Client:
        """The process's S3 client, created on first use."""
        with self._lock:
            if self._client is None:
                self._client = self._s3_client_factory()
            return self._client

    def open(self, uri: str | StorageURI) -> tuple[ObjectStore, str]:
        """The store holding ``uri`` and the key (or prefix) inside it.

        Args:
            uri: ``s3://bucket/key`` or, where enabled, ``file:///absolute/path``.

        Returns:
            ``(store, key)``; for ``file://`` the store is rooted at '/' and the key is the
            path without its leading '/'.

        Raises:
            InvalidURI: The URI is malformed, or names local files while they are disabled.
        """
        parsed = parse_uri(uri) if isinstance(uri, str) else uri
        if parsed.scheme == "file":
            if not self.allow_local:
                raise InvalidURI(
                    f"file:// storage is not enabled on this service: use an s3:// URI. "
                    f"Received: {parsed}"
                )
            return self._local_root(), parsed.key
        return self.bucket(parsed.bucket), parsed.key

    def bucket(self, name: str) -> S3ObjectStore:
        """The store of one S3 bucket, shared by every caller."""
        client = self.s3_client
        with self._lock:
            store = self._buckets.get(name)
            if store is None:
                store = self._buckets[name] = S3ObjectStore(client, name)
            return store

    def open_state_store(self, state_uri: str) -> tuple[ObjectStore, str]:
        """The store and key prefix for job state, from ``FINETUNE_STATE_URI``.

        ``file:///path`` is always allowed here (it is the operator's setting, not a
        client's) and gives a store rooted at that directory with prefix ''.

        Args:
            state_uri: ``s3://bucket/prefix`` or ``file:///path``.

        Returns:
            ``(store, prefix)``, the prefix empty or ending in '/'.

        Raises:
            InvalidURI: The URI is malformed.
        """
        parsed = parse_uri(state_uri)
        if parsed.scheme == "file":
            return LocalObjectStore(Path("/" + parsed.key)), ""
        prefix = parsed.key
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return self.bucket(parsed.bucket), prefix

    def _local_root(self) -> LocalObjectStore:
        """The ``file://`` store rooted at '/'."""
        with self._lock:
            if self._local is None:
                self._local = LocalObjectStore(Path("/"), lock_dir=self._local_lock_dir)
            return self._local
