"""Webhooks: a signed POST to the spec's ``notify.webhook_url`` on every final status.

Deliveries run on a background thread after the final status is recorded (never blocking a
job), are retried with exponential backoff, and refuse loopback, link-local and private
addresses unless the operator allows them (no server-side request forgery).
"""

from service.webhooks.addresses import check_literal_host, forbidden_reason
from service.webhooks.errors import ForbiddenAddress
from service.webhooks.secrets import ServiceWideSecret, WebhookSecrets
from service.webhooks.sender import DeliveryOutcome, WebhookSender
from service.webhooks.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "DeliveryOutcome",
    "ForbiddenAddress",
    "ServiceWideSecret",
    "WebhookSecrets",
    "WebhookSender",
    "check_literal_host",
    "forbidden_reason",
    "sign",
    "verify",
]
