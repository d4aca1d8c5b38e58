"""Storage URIs: ``s3://bucket/key`` and ``file:///absolute/path``, parsed; keys checked."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

SCHEMES = ("s3", "file")


class InvalidURI(ValueError):
    """A string that is not a storage URI this service understands."""


@dataclass(frozen=True)
class StorageURI:
    """A parsed storage location.

    For ``s3`` URIs ``bucket`` is the bucket and ``key`` the key or prefix inside it. For
    ``file`` URIs ``bucket`` is empty and ``key`` is the absolute path without its leading '/'.
    """

    scheme: str
    bucket: str
    key: str

    @property
    def is_prefix(self) -> bool:
        """Whether the URI names a folder (ends with '/') rather than one object."""
        return self.key == "" or self.key.endswith("/")

    def child(self, name: str) -> StorageURI:
        """The URI of ``name`` below this prefix."""
        base = self.key if self.is_prefix else self.key + "/"
        return StorageURI(self.scheme, self.bucket, base + name.lstrip("/"))

    def __str__(self) -> str:
        if self.scheme == "file":
            return f"file:///{self.key}"
        return f"s3://{self.bucket}/{self.key}"


def parse_uri(uri: str) -> StorageURI:
    """Parse ``uri``; raises InvalidURI naming what is wrong with it."""
    try:
        parts = urlsplit(uri)
    except ValueError as exc:  # e.g. an unbalanced '[' in the host part: "Invalid IPv6 URL"
        raise InvalidURI(f"Not a storage URI: {exc}.") from exc
    if parts.scheme not in SCHEMES:
        raise InvalidURI(
            f"Unsupported storage scheme {parts.scheme!r}: use s3://bucket/key or file:///path."
        )
    if parts.query or parts.fragment:
        raise InvalidURI("A storage URI takes no query string or fragment.")
    if parts.scheme == "s3":
        if not parts.netloc:
            raise InvalidURI("An s3:// URI needs a bucket: s3://bucket/key.")
        key = parts.path.lstrip("/")
        return StorageURI("s3", parts.netloc, key)
    if parts.netloc not in ("", "localhost"):
        raise InvalidURI("A file:// URI names a local absolute path: file:///path.")
    if not parts.path.startswith("/"):
        raise InvalidURI("A file:// URI needs an absolute path: file:///path.")
    segments = parts.path.split("/")
    if ".." in segments:
        raise InvalidURI("A file:// URI may not contain '..'.")
    return StorageURI("file", "", parts.path.lstrip("/"))


def unsafe_key_reason(key: str) -> str | None:
    """Why ``key`` cannot be matched safely against a prefix, or None where it can.

    Keys with ``.`` or ``..`` segments or backslashes are refused rather than normalised: S3
    stores them literally, but proxies and some S3-compatible servers collapse them.
    """
    if "\\" in key:
        return "it contains a backslash"
    if any(segment in (".", "..") for segment in key.split("/")):
        return "it contains a '.' or '..' segment"
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in key):
        return "it contains a control character"
    return None
