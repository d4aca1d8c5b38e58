"""Where the HMAC key of a tenant's webhooks comes from."""

from __future__ import annotations

from typing import Protocol


class WebhookSecrets(Protocol):
    """Looks up the signing key of a tenant's webhooks.

    Per-tenant secrets plug in by implementing this; until then the
    service-wide secret serves every tenant.
    """

    def secret_for(self, tenant: str) -> bytes | None:
        """The key for ``tenant``, or None to send unsigned."""


class ServiceWideSecret:
    """One secret for every tenant (``FINETUNE_WEBHOOK_SECRET``)."""

    def __init__(self, secret: str | None) -> None:
        self._secret = secret.encode() if secret else None

    def secret_for(self, tenant: str) -> bytes | None:
        """The service-wide key, whatever the tenant."""
        return self._secret
