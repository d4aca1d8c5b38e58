"""Who is calling: a tenant and the storage prefixes it may read and write."""

from __future__ import annotations

from dataclasses import dataclass

from service.contract.uri import StorageURI
from service.security.prefixes import StoragePrefix

#: The tenant of every caller while the service runs open (no auth file).
OPEN_TENANT = "default"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    Attributes:
        tenant: The tenant whose jobs the caller sees.
        token_name: The name of the token used (for the log), None in open mode.
        read: Prefixes the caller may read; None means no restriction (open mode).
        write: Prefixes the caller may write; None means no restriction (open mode).
    """

    tenant: str
    token_name: str | None = None
    read: tuple[StoragePrefix, ...] | None = None
    write: tuple[StoragePrefix, ...] | None = None

    @classmethod
    def open_mode(cls) -> Principal:
        """The caller of a service without tokens: tenant ``default``, no prefix limits."""
        return cls(tenant=OPEN_TENANT)

    @property
    def unrestricted(self) -> bool:
        """Whether no prefix limits apply (open mode)."""
        return self.read is None and self.write is None

    def may_read(self, uri: str | StorageURI) -> bool:
        """Whether ``uri`` lies under one of the read prefixes."""
        return self.read is None or any(prefix.admits(uri) for prefix in self.read)

    def may_write(self, uri: str | StorageURI) -> bool:
        """Whether ``uri`` lies under one of the write prefixes."""
        return self.write is None or any(prefix.admits(uri) for prefix in self.write)
