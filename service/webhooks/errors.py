"""Errors of webhook delivery."""

from __future__ import annotations


class WebhookError(Exception):
    """Base class: a delivery attempt did not succeed."""


class ForbiddenAddress(WebhookError):
    """The URL's host is, or resolves to, an address webhooks may not reach."""


class DeliveryFailed(WebhookError):
    """The receiver could not be reached or did not answer 2xx.

    Attributes:
        retryable: Whether another attempt may succeed (network errors, 408, 429, 5xx).
        status: The HTTP status the receiver answered, if it answered.
    """

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
