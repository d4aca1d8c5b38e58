"""Errors raised by object stores."""


class StorageError(Exception):
    """Base class for every storage failure."""


class NoSuchKey(StorageError):
    """The object does not exist."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no object at {key!r}")
        self.key = key


class PreconditionFailed(StorageError):
    """A conditional write lost: the object exists (If-None-Match) or changed (If-Match)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"precondition failed for {key!r}")
        self.key = key


class StorageUnavailable(StorageError):
    """The backend could not be reached or kept failing after retries."""


class ConditionalWritesUnsupported(StorageError):
    """The backend accepted a write that its condition should have refused."""


class NoSuchBucket(StorageError):
    """The bucket named in a URI or in the configuration does not exist."""

    def __init__(self, bucket: str, detail: str = "") -> None:
        message = f"bucket {bucket!r} does not exist: create it or correct the storage URI"
        super().__init__(f"{message} ({detail})" if detail else message)
        self.bucket = bucket


class InvalidKey(StorageError, ValueError):
    """A key that the backend cannot store (absolute, containing '..', or reserved)."""
