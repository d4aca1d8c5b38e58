"""The ObjectStore backend for AWS S3 and S3-compatible servers (MinIO, moto)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from boto3.exceptions import RetriesExceededError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from service.storage.base import ObjectInfo, ObjectStore, StoredObject, first_match
from service.storage.errors import (
    ConditionalWritesUnsupported,
    NoSuchBucket,
    NoSuchKey,
    PreconditionFailed,
    StorageError,
    StorageUnavailable,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

#: Error codes that mean "try again later"; botocore has already retried them.
_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "OperationAborted",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
    }
)
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
#: Refused or reset connections, timeouts, TLS failures: what botocore retries, then gives up on.
_CONNECTION_ERRORS = (BotoConnectionError, HTTPClientError)
#: Parts in flight per managed transfer; make_s3_client's pool has room for several transfers.
_DEFAULT_TRANSFER_CONFIG = TransferConfig(max_concurrency=8)
_CHUNK = 1 << 20
#: Keys per listing request of find_any: its usual answer is the first key.
_FIND_PAGE_SIZE = 50


class S3ObjectStore(ObjectStore):
    """Objects in one S3 bucket, reached through a boto3 client it is handed.

    The store builds no client: the caller passes one (see ``make_s3_client``), so that one
    client, with its connection pool, serves every bucket and thread. Conditional writes use
    ``If-None-Match: *`` and ``If-Match``; ETags are returned without their quotes.

    Args:
        client: A boto3 S3 client. Clients are thread-safe; one may serve many stores.
        bucket: The bucket's name.
        transfer_config: Settings for the managed transfers of ``download_file`` and
            ``upload_file`` (part size, concurrency).
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        transfer_config: TransferConfig | None = None,
    ) -> None:
        if not bucket or "/" in bucket:
            raise ValueError(
                f"bucket must be a bucket name without '/'. Received: bucket={bucket!r}"
            )
        self.client = client
        self.bucket = bucket
        self.transfer_config = transfer_config or _DEFAULT_TRANSFER_CONFIG
        endpoint = getattr(getattr(client, "meta", None), "endpoint_url", None)
        self.description = f"s3://{bucket}" + (f" at {endpoint}" if endpoint else "")

    def get(self, key: str) -> StoredObject:
        """Read an object.

        Raises:
            NoSuchKey: Nothing is stored at ``key``.
        """
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            data = response["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            self._raise(exc, "read", key)
        return StoredObject(data=data, etag=_strip_etag(response["ETag"]))

    def put(self, key: str, data: bytes) -> str:
        """Write unconditionally; returns the new ETag."""
        try:
            response = self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        except (ClientError, BotoCoreError) as exc:
            self._raise(exc, "write", key)
        return _strip_etag(response["ETag"])

    def put_if_absent(self, key: str, data: bytes) -> str:
        """Create an object only where none exists (``If-None-Match: *``).

        Raises:
            PreconditionFailed: The key already exists, or another conditional write to it
                was in flight (S3's 409 ConditionalRequestConflict).
        """
        return self._conditional_put(key, data, if_match=None)

    def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        """Replace an object only while it still has ``etag`` (``If-Match``).

        Raises:
            PreconditionFailed: The object changed, no longer exists, or another conditional
                write to it was in flight.
        """
        return self._conditional_put(key, data, if_match=f'"{_strip_etag(etag)}"')

    def delete(self, key: str) -> None:
        """Delete an object; deleting a missing key is not an error."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            if _error_code(exc) == "NoSuchKey":
                return
            self._raise(exc, "delete", key)

    def list(self, prefix: str = "", start_after: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in ascending key order, page by page."""
        paginator = self.client.get_paginator("list_objects_v2")
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if start_after:
            arguments["StartAfter"] = start_after
        try:
            for page in paginator.paginate(**arguments):
                for entry in page.get("Contents", []):
                    yield ObjectInfo(
                        key=entry["Key"], size=entry["Size"], etag=_strip_etag(entry["ETag"])
                    )
        except (ClientError, BotoCoreError) as exc:
            self._raise(exc, "list", prefix)

    def find_any(
        self, prefix: str, match: Callable[[str], bool] | None = None, limit: int = 10_000
    ) -> bool | None:
        """Whether an object below ``prefix`` (whose key ``match`` accepts) is stored.

        Lists in small pages, so that the usual answer (the first key) is one short request
        rather than a page of a thousand keys; past ``limit`` keys without one: None.
        """
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": _FIND_PAGE_SIZE}
        )
        keys = (entry["Key"] for page in pages for entry in page.get("Contents", []))
        try:
            return first_match(keys, match, limit)
        except (ClientError, BotoCoreError) as exc:
            self._raise(exc, "list", prefix)

    def exists(self, key: str) -> bool:
        """Whether an object is stored at ``key`` (one HEAD request)."""
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                # A HEAD response has no body, so a missing bucket is also a bare 404.
                self._check_bucket_exists(exc)
                return False
            self._raise(exc, "inspect", key)
        return True

    def download_file(self, key: str, path: Path) -> None:
        """Copy an object to a local file through a temporary file in the same directory.

        The managed transfer fetches large objects in parallel ranges; the file appears under
        its name only once complete, so a reader never sees half a file.

        Raises:
            NoSuchKey: Nothing is stored at ``key``.
        """
        path = Path(path)
        temporary = path.with_name(f".tmp-{uuid.uuid4().hex}")
        try:
            self.client.download_file(self.bucket, key, str(temporary), Config=self.transfer_config)
            os.replace(temporary, path)
        except (ClientError, BotoCoreError, RetriesExceededError) as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                self._check_bucket_exists(exc)
            self._raise(exc, "download", key)
        finally:
            with contextlib.suppress(OSError):
                temporary.unlink()

    def download_listed(self, info: ObjectInfo, path: Path) -> None:
        """Download a listed object: one streamed GET where it is below the multipart size.

        ``download_file`` first asks for the object's size (a HEAD) and sets up a managed
        transfer: for the many small files of an image folder that doubled the requests
        (bench/storage_download.py). A read that breaks off falls back to ``download_file``,
        whose transfers retry interrupted reads.

        Raises:
            NoSuchKey: The object was deleted since it was listed.
        """
        if info.size >= self.transfer_config.multipart_threshold:
            self.download_file(info.key, path)
            return
        path = Path(path)
        temporary = path.with_name(f".tmp-{uuid.uuid4().hex}")
        try:
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=info.key)
            except (ClientError, BotoCoreError) as exc:
                if _error_code(exc) in _NOT_FOUND_CODES:
                    self._check_bucket_exists(exc)
                self._raise(exc, "download", info.key)
            try:
                with open(temporary, "wb") as out:
                    for chunk in response["Body"].iter_chunks(_CHUNK):
                        out.write(chunk)
            except BotoCoreError:
                self.download_file(info.key, path)
                return
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(OSError):
                temporary.unlink()

    def upload_file(self, path: Path, key: str) -> None:
        """Copy a local file to an object; large files go up as a parallel multipart upload."""
        try:
            self.client.upload_file(str(path), self.bucket, key, Config=self.transfer_config)
        except S3UploadFailedError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, ClientError | BotoCoreError):
                self._raise(cause, "upload", key)
            raise StorageError(
                f"upload of {path} to s3://{self.bucket}/{key} failed: {exc}"
            ) from exc
        except (ClientError, BotoCoreError) as exc:
            self._raise(exc, "upload", key)

    def _conditional_put(self, key: str, data: bytes, if_match: str | None) -> str:
        """``put_object`` with ``If-Match`` (given an ETag) or else ``If-None-Match: *``.

        Tells a lost race (PreconditionFailed) from every other failure.
        """
        condition = "If-None-Match" if if_match is None else "If-Match"
        try:
            if if_match is None:
                response = self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*"
                )
            else:
                response = self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=data, IfMatch=if_match
                )
        except ClientError as exc:
            code = _error_code(exc)
            refused = code in _PRECONDITION_CODES or _http_status(exc) == 412
            # If-Match on a key that is gone is a lost race too (S3, MinIO and moto say 404).
            refused = refused or (if_match is not None and code in _NOT_FOUND_CODES)
            if code == "NotImplemented" or _http_status(exc) == 501:
                raise ConditionalWritesUnsupported(
                    f"{self.description} does not implement conditional writes ({condition}): {exc}"
                ) from exc
            if not refused:
                self._raise(exc, "write", key)
            if _retry_attempts(exc) > 0:
                # botocore retried after an attempt whose answer was lost: that attempt may
                # have been ours and succeeded, in which case the retry fails its condition.
                current = self._get_if_exists(key)
                if current is not None and current.data == data:
                    return current.etag
            raise PreconditionFailed(key) from exc
        except BotoCoreError as exc:
            self._raise(exc, "write", key)
        return _strip_etag(response["ETag"])

    def _get_if_exists(self, key: str) -> StoredObject | None:
        """The object at ``key``, or None where there is none."""
        try:
            return self.get(key)
        except NoSuchKey:
            return None

    def _check_bucket_exists(self, cause: BaseException) -> None:
        """Raise NoSuchBucket where the bucket is missing; otherwise return."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            if _error_code(exc) in {"NoSuchBucket", "404", "NotFound"}:
                raise NoSuchBucket(self.bucket, self.description) from cause
            self._raise(exc, "inspect", "")

    def _raise(self, exc: Exception, action: str, key: str) -> NoReturn:
        """Translate a boto3 failure into the storage errors, keeping it as the cause."""
        where = f"s3://{self.bucket}/{key}"
        if isinstance(exc, ClientError):
            code = _error_code(exc)
            status = _http_status(exc)
            message = exc.response.get("Error", {}).get("Message", "")
            if code == "NoSuchBucket":
                raise NoSuchBucket(self.bucket, self.description) from exc
            if code in _NOT_FOUND_CODES:
                raise NoSuchKey(key) from exc
            if code in _TRANSIENT_CODES or status >= 500:
                raise StorageUnavailable(
                    f"{self.description} kept failing to {action} {where} after retries: "
                    f"{code} {message}".rstrip()
                ) from exc
            if code in {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"}:
                raise StorageError(
                    f"{self.description} refused to {action} {where}: {code} {message}. "
                    "Check the credentials and the bucket policy."
                ) from exc
            raise StorageError(f"could not {action} {where}: {code} {message}".rstrip()) from exc
        if isinstance(exc, (*_CONNECTION_ERRORS, RetriesExceededError)):
            raise StorageUnavailable(
                f"{self.description} could not be reached to {action} {where}: {exc}"
            ) from exc
        if isinstance(exc, NoCredentialsError):
            raise StorageError(
                f"no AWS credentials to {action} {where}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or give the process a role"
            ) from exc
        raise StorageError(f"could not {action} {where}: {exc}") from exc


def _strip_etag(etag: str) -> str:
    """An ETag without the double quotes that S3 wraps it in (and any weak prefix)."""
    return etag.removeprefix("W/").strip('"')


def _error_code(exc: BaseException) -> str:
    """The S3 error code of a ClientError ('404' for a bodiless HEAD), else ''."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _http_status(exc: ClientError) -> int:
    """The HTTP status of a ClientError's response, or 0 where unknown."""
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _retry_attempts(exc: ClientError) -> int:
    """How many times botocore retried the request that ended in ``exc``."""
    return int(exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0))
