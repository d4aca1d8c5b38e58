"""Object storage: S3 (boto3) and a local directory behind one ObjectStore interface.

These are the only modules that touch boto3 or the on-disk layout of stored objects.
"""

from service.contract.uri import InvalidURI, StorageURI, parse_uri
from service.storage.base import ObjectInfo, ObjectStore, StoredObject
from service.storage.client import make_s3_client
from service.storage.errors import (
    ConditionalWritesUnsupported,
    InvalidKey,
    NoSuchBucket,
    NoSuchKey,
    PreconditionFailed,
    StorageError,
    StorageUnavailable,
)
from service.storage.local import LocalObjectStore
from service.storage.resolver import Storage
from service.storage.s3 import S3ObjectStore
from service.storage.selfcheck import verify_conditional_writes

__all__ = [
    "ConditionalWritesUnsupported",
    "InvalidKey",
    "InvalidURI",
    "LocalObjectStore",
    "NoSuchBucket",
    "NoSuchKey",
    "ObjectInfo",
    "ObjectStore",
    "PreconditionFailed",
    "S3ObjectStore",
    "Storage",
    "StorageError",
    "StorageURI",
    "StorageUnavailable",
    "StoredObject",
    "make_s3_client",
    "parse_uri",
    "verify_conditional_writes",
]
