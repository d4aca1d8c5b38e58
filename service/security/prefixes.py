"""Storage prefixes that bound what a tenant may read and write, matched safely.

A prefix always names a folder: ``s3://data/team-a`` and ``s3://data/team-a/`` both mean
everything below ``team-a/`` and nothing else, so ``s3://data/team-ab/x`` is never admitted.
Keys with ``.`` or ``..`` segments or backslashes are refused outright rather than normalised:
S3 stores such keys literally, but proxies and some S3-compatible servers collapse them, and
a check that reads ``team-a/../team-b/x`` one way while the server reads it another is no check.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.contract.uri import InvalidURI, StorageURI, parse_uri, unsafe_key_reason
from service.security.errors import InvalidPrefix


def normalize_location(uri: str | StorageURI) -> StorageURI:
    """Parse ``uri`` into the form prefixes are matched against.

    ``file://`` paths have repeated slashes collapsed (the file system ignores them); ``s3://``
    keys are kept as they are (S3 does not).

    Raises:
        InvalidPrefix: The URI is malformed or has a key that cannot be matched safely.
    """
    if isinstance(uri, str) and any(ord(char) < 0x20 or ord(char) == 0x7F for char in uri):
        # urlsplit drops tabs and newlines silently: what it parses is not what was sent.
        raise InvalidPrefix(f"{uri!r} cannot be used: it contains a control character.")
    try:
        parsed = parse_uri(uri) if isinstance(uri, str) else uri
    except InvalidURI as exc:
        raise InvalidPrefix(str(exc)) from exc
    reason = unsafe_key_reason(parsed.key)
    if reason:
        raise InvalidPrefix(f"{parsed} cannot be used: {reason}.")
    if parsed.scheme == "file":
        collapsed = "/".join(segment for segment in parsed.key.split("/") if segment)
        if parsed.key.endswith("/") and collapsed:
            collapsed += "/"
        parsed = StorageURI("file", "", collapsed)
    return parsed


@dataclass(frozen=True)
class StoragePrefix:
    """A folder in one bucket (or the local file system) and everything below it.

    Attributes:
        scheme: ``s3`` or ``file``.
        bucket: The bucket (empty for ``file``).
        key: ``''`` (the whole bucket) or a key ending with '/'.
    """

    scheme: str
    bucket: str
    key: str

    @classmethod
    def parse(cls, text: str) -> StoragePrefix:
        """A prefix from ``s3://bucket/folder/`` or ``file:///folder/``; a missing '/' is added.

        Raises:
            InvalidPrefix: The text is not a storage URI, or cannot be matched safely.
        """
        location = normalize_location(text)
        key = location.key
        if key and not key.endswith("/"):
            key += "/"
        return cls(location.scheme, location.bucket, key)

    def admits(self, uri: str | StorageURI) -> bool:
        """Whether ``uri`` lies inside this prefix (a malformed or unsafe URI never does)."""
        try:
            location = normalize_location(uri)
        except InvalidPrefix:
            return False
        return (
            location.scheme == self.scheme
            and location.bucket == self.bucket
            and location.key.startswith(self.key)
        )

    def __str__(self) -> str:
        return str(StorageURI(self.scheme, self.bucket, self.key))
