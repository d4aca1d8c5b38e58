"""Connects finished jobs to webhook deliveries, and deliveries back to the job's events."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from schemas import JobSchema
from service.config import Config
from service.contract.plan import JobPlan
from service.jobs import JobRecord, JobStore
from service.storage.errors import StorageError
from service.webhooks.secrets import ServiceWideSecret, WebhookSecrets
from service.webhooks.sender import Delivery, DeliveryOutcome, WebhookSender

log = logging.getLogger(__name__)


def webhook_url(record: JobRecord) -> str | None:
    """The job's ``notify.webhook_url``, if it has one."""
    return JobPlan.from_spec(record.spec).webhook_url


class JobNotifier:
    """Sends a job's webhook once it is final, and records how the delivery went as an event.

    Args:
        jobs: Where the ``webhook`` events go.
        config: Allow-private flag, attempts, backoff and timeout.
        secrets: Signing keys per tenant; default the service-wide ``FINETUNE_WEBHOOK_SECRET``.
        on_outcome: Also called with each finished delivery (for metrics).
    """

    def __init__(
        self,
        jobs: JobStore,
        config: Config,
        secrets: WebhookSecrets | None = None,
        on_outcome: Callable[[DeliveryOutcome], None] | None = None,
    ) -> None:
        self._jobs = jobs
        self._extra = on_outcome
        self.sender = WebhookSender(
            secrets or ServiceWideSecret(config.webhook_secret),
            allow_private=config.webhook_allow_private,
            max_attempts=config.webhook_max_attempts,
            backoff_seconds=config.webhook_backoff_seconds,
            timeout_seconds=config.webhook_timeout_seconds,
            on_outcome=self._record,
        )

    def job_finished(self, record: JobRecord) -> None:
        """Queue the webhook of a job that just reached a final status; returns at once."""
        url = webhook_url(record)
        if url is None or not record.is_final:
            return
        job: dict[str, Any] = JobSchema().dump(record.public())
        self.sender.notify(record.id, record.tenant, url, job)

    def close(self, timeout: float = 10.0) -> bool:
        """Give queued deliveries up to ``timeout`` seconds, then stop."""
        return self.sender.close(timeout)

    def _record(self, delivery: Delivery, outcome: DeliveryOutcome) -> None:
        if self._extra is not None:
            self._extra(outcome)
        message = f"Webhook {outcome.message}"
        if outcome.delivered and outcome.attempts > 1:
            message += f" after {outcome.attempts} attempts"
        try:
            self._jobs.add_event(
                delivery.job_id,
                "webhook",
                message + ".",
                {
                    "delivered": outcome.delivered,
                    "attempts": outcome.attempts,
                    "status": outcome.status,
                    "refused": outcome.refused,
                    "delivery_id": delivery.id,
                },
            )
        except StorageError as exc:
            log.warning("job %s: could not record the webhook event: %s", delivery.job_id, exc)
