"""A background thread that delivers webhooks, retrying with exponential backoff."""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from service import __version__
from service.logs import job_logging
from service.retry import Policy
from service.webhooks.delivery import post
from service.webhooks.errors import DeliveryFailed, ForbiddenAddress
from service.webhooks.secrets import WebhookSecrets
from service.webhooks.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

log = logging.getLogger(__name__)

EVENT_TYPE = "job.finished"


@dataclass
class Delivery:
    """One webhook to send: the body is fixed, the timestamp and signature are per attempt."""

    job_id: str
    tenant: str
    url: str
    body: bytes
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    attempt: int = 0
    first_try_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class DeliveryOutcome:
    """How a delivery ended.

    Attributes:
        delivered: Whether the receiver answered 2xx.
        attempts: Attempts made.
        status: The receiver's last HTTP status, if it answered.
        message: What happened, for the job's events and the log.
        refused: Whether the address check refused the URL (no request was sent).
    """

    delivered: bool
    attempts: int
    status: int | None
    message: str
    refused: bool = False


OutcomeHandler = Callable[[Delivery, DeliveryOutcome], None]


def build_body(job: dict[str, Any], delivery_id: str) -> bytes:
    """The JSON body: ``{"type": "job.finished", "delivery_id", "job": <the job>}``."""
    return json.dumps(
        {"type": EVENT_TYPE, "delivery_id": delivery_id, "job": job}, separators=(",", ":")
    ).encode()


def delivery_policy(max_attempts: int, backoff_seconds: float) -> Policy:
    """How a webhook is retried: the settings' tries and first delay, doubling, up to 20% more.

    Only failures another try may mend are retried (network errors, 408, 429, 5xx).

    Raises:
        ValueError: ``max_attempts`` is below 1 or ``backoff_seconds`` below 0.
    """
    return Policy(
        "webhook delivery",
        base_delay=backoff_seconds,
        attempts=max_attempts,
        jitter=(1.0, 1.2),
        retry_on=(DeliveryFailed,),
        retryable=lambda exc: exc.retryable,
    )


class WebhookSender:
    """Queues deliveries and sends them from one daemon thread, never blocking the caller.

    Args:
        secrets: The signing key per tenant.
        allow_private: Whether private, loopback and link-local addresses may be reached.
        max_attempts: Attempts per delivery before giving up (``FINETUNE_WEBHOOK_MAX_ATTEMPTS``).
        backoff_seconds: Delay before the first retry (``FINETUNE_WEBHOOK_BACKOFF_SECONDS``);
            see delivery_policy.
        timeout_seconds: Connect and read timeout of one attempt.
        on_outcome: Called on the sender thread when a delivery ends (delivered or not).
    """

    def __init__(
        self,
        secrets: WebhookSecrets,
        *,
        allow_private: bool,
        max_attempts: int,
        backoff_seconds: float,
        timeout_seconds: float,
        on_outcome: OutcomeHandler | None = None,
    ) -> None:
        self._secrets = secrets
        self._allow_private = allow_private
        self._policy = delivery_policy(max_attempts, backoff_seconds)
        self._timeout = timeout_seconds
        self._on_outcome = on_outcome
        self._due: list[tuple[float, int, Delivery]] = []
        self._order = itertools.count()
        self._busy = 0
        self._condition = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._warned_unsigned = False

    def notify(self, job_id: str, tenant: str, url: str, job: dict[str, Any]) -> Delivery:
        """Queue a ``job.finished`` delivery of ``job`` to ``url``; returns at once."""
        delivery = Delivery(job_id=job_id, tenant=tenant, url=url, body=b"")
        delivery.body = build_body(job, delivery.id)
        with self._condition:
            self._schedule(delivery, time.monotonic())
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="webhook-sender", daemon=True
                )
                self._thread.start()
        return delivery

    def pending(self) -> int:
        """Deliveries queued, waiting for a retry, or being sent."""
        with self._condition:
            return len(self._due) + self._busy

    def close(self, timeout: float = 10.0) -> bool:
        """Send what is due within ``timeout`` seconds, then stop; True where nothing is left."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while (self._due or self._busy) and time.monotonic() < deadline:
                self._condition.wait(timeout=min(0.1, max(0.0, deadline - time.monotonic())))
            self._closing = True
            self._condition.notify_all()
            left = len(self._due) + self._busy
        if left:
            log.warning("stopping with %d webhook deliveries not sent", left)
        return left == 0

    # the thread ------------------------------------------------------------------------
    def _schedule(self, delivery: Delivery, due: float) -> None:
        heapq.heappush(self._due, (due, next(self._order), delivery))
        self._condition.notify_all()

    def _next_due(self) -> Delivery | None:
        with self._condition:
            while not self._closing:
                if self._due and self._due[0][0] <= time.monotonic():
                    self._busy += 1
                    return heapq.heappop(self._due)[2]
                wait = self._due[0][0] - time.monotonic() if self._due else None
                self._condition.wait(timeout=wait)
            return None

    def _run(self) -> None:
        while (delivery := self._next_due()) is not None:
            try:
                with job_logging(delivery.job_id):
                    self._attempt(delivery)
            except Exception:  # the thread must outlive any one delivery
                log.exception("webhook delivery %s for job %s broke", delivery.id, delivery.job_id)
            finally:
                with self._condition:
                    self._busy -= 1
                    self._condition.notify_all()

    def _attempt(self, delivery: Delivery) -> None:
        delivery.attempt += 1
        host = urlsplit(delivery.url).hostname or "?"
        try:
            status = post(
                delivery.url,
                delivery.body,
                self._headers(delivery),
                allow_private=self._allow_private,
                timeout=self._timeout,
            )
        except ForbiddenAddress as exc:
            self._ended(delivery, DeliveryOutcome(False, delivery.attempt, None, str(exc), True))
            return
        except DeliveryFailed as exc:
            elapsed = time.monotonic() - delivery.first_try_at
            delay = self._policy.next_delay(delivery.attempt, exc, elapsed)
            if delay is not None:
                log.info(
                    "webhook for job %s: attempt %d failed (%s); retrying in %.1f s",
                    delivery.job_id,
                    delivery.attempt,
                    exc,
                    delay,
                )
                with self._condition:
                    self._schedule(delivery, time.monotonic() + delay)
                return
            outcome = DeliveryOutcome(
                False, delivery.attempt, exc.status, f"not delivered to {host}: {exc}"
            )
            self._ended(delivery, outcome)
            return
        self._ended(
            delivery,
            DeliveryOutcome(True, delivery.attempt, status, f"delivered to {host} (HTTP {status})"),
        )

    def _headers(self, delivery: Delivery) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"finetune-webhooks/{__version__}",
            "X-Finetune-Event": EVENT_TYPE,
            "X-Finetune-Delivery": delivery.id,
            "X-Finetune-Job-Id": delivery.job_id,
            "X-Finetune-Attempt": str(delivery.attempt),
        }
        secret = self._secrets.secret_for(delivery.tenant)
        if secret is None and not self._warned_unsigned:
            self._warned_unsigned = True
            log.warning("no webhook secret (FINETUNE_WEBHOOK_SECRET) is set: sending unsigned")
        if secret is not None:
            timestamp = int(time.time())
            headers[TIMESTAMP_HEADER] = str(timestamp)
            headers[SIGNATURE_HEADER] = sign(secret, timestamp, delivery.body)
        return headers

    def _ended(self, delivery: Delivery, outcome: DeliveryOutcome) -> None:
        level = logging.INFO if outcome.delivered else logging.WARNING
        log.log(level, "webhook for job %s: %s", delivery.job_id, outcome.message)
        if self._on_outcome is not None:
            try:
                self._on_outcome(delivery, outcome)
            except Exception:
                log.exception("recording the webhook outcome of job %s failed", delivery.job_id)
