"""A start-up check that a backend really enforces conditional writes."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from service.storage.base import ObjectStore
from service.storage.errors import (
    ConditionalWritesUnsupported,
    NoSuchKey,
    PreconditionFailed,
    StorageError,
)

logger = logging.getLogger(__name__)

_WHY = (
    "The service keeps its job records in this store and changes them only by compare-and-swap; "
    "on a backend that ignores If-None-Match / If-Match, concurrent updates would silently "
    "overwrite each other and jobs would be lost or run twice. Some S3-compatible servers "
    "(rclone serve s3, s3rver) ignore these headers. Use AWS S3, MinIO, or local storage "
    "(file:///path)."
)
#: A write attempt whose return value is ignored.
_Write = Callable[[], object]
#: An ETag no content has: MD5 digests are never all zeros in practice.
_WRONG_ETAG = "0" * 32


def verify_conditional_writes(store: ObjectStore, prefix: str = "_selfcheck/") -> None:
    """Check that ``store`` refuses the conditional writes it must refuse, and accepts the rest.

    Writes one uniquely named object below ``prefix``, tries to create it again
    (``If-None-Match: *``), to replace it with a wrong ETag (``If-Match``), then with the
    right one, reading it back after each step, and deletes it.

    Args:
        store: The backend to check.
        prefix: Where the probe object goes; a trailing '/' is expected.

    Raises:
        ConditionalWritesUnsupported: The backend accepted a write its condition should have
            refused, or refused one that should have succeeded; the message says why the
            service cannot run on it.
        StorageError: The backend failed in another way (unreachable, no permission).
    """
    key = f"{prefix}{uuid.uuid4().hex}"
    first = b"selfcheck: created"
    try:
        etag = store.put_if_absent(key, first)
        _expect_refused(
            store,
            key,
            first,
            "a second If-None-Match: * create of an existing key",
            lambda: store.put_if_absent(key, b"selfcheck: created twice"),
        )
        _expect_refused(
            store,
            key,
            first,
            "an If-Match write with a wrong ETag",
            lambda: store.put_if_match(key, b"selfcheck: wrong etag", _WRONG_ETAG),
        )
        second = b"selfcheck: replaced"
        try:
            new_etag = store.put_if_match(key, second, etag)
        except PreconditionFailed as exc:
            raise ConditionalWritesUnsupported(
                f"{store.description} refused an If-Match write with the ETag it had just "
                f"returned ({etag!r}), so compare-and-swap can never succeed there. {_WHY}"
            ) from exc
        current = store.get(key)
        if current.data != second or current.etag != new_etag:
            raise ConditionalWritesUnsupported(
                f"{store.description} acknowledged an If-Match write but did not store it "
                f"as acknowledged. {_WHY}"
            )
    finally:
        try:
            store.delete(key)
        except StorageError:
            logger.warning(
                "could not delete the self-check object %s in %s",
                key,
                store.description,
                exc_info=True,
            )
    logger.info("%s enforces conditional writes", store.description)


def _expect_refused(
    store: ObjectStore, key: str, original: bytes, what: str, write: _Write
) -> None:
    """Run ``write``, which must fail with PreconditionFailed and leave ``original`` in place."""
    try:
        write()
    except PreconditionFailed as exc:
        try:
            unchanged = store.get(key).data == original
        except NoSuchKey:
            unchanged = False
        if unchanged:
            return
        raise ConditionalWritesUnsupported(
            f"{store.description} refused {what} but changed the object anyway. {_WHY}"
        ) from exc
    raise ConditionalWritesUnsupported(
        f"{store.description} accepted {what}, which it must refuse with 412 Precondition "
        f"Failed. {_WHY}"
    )
