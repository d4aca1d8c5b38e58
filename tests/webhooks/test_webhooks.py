"""Webhook signing, address checks and delivery against a real HTTP receiver on loopback."""

from __future__ import annotations

import ipaddress
import json
import time
from pathlib import Path
from typing import Any

import pytest

from service.context import Services
from service.webhooks import (
    ServiceWideSecret,
    WebhookSender,
    check_literal_host,
    forbidden_reason,
    sign,
    verify,
)
from service.webhooks.notifier import JobNotifier
from service.webhooks.sender import DeliveryOutcome
from tests.helpers.services import local_services
from tests.helpers.specs import loaded_spec
from tests.helpers.webhook_receiver import WebhookReceiver

SECRET = "s3cret-for-tests"


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),  # cloud metadata endpoints
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.9", "private"),
        ("192.168.1.1", "private"),
        ("fd00::5", "private"),
        ("0.0.0.0", "unspecified"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped IPv6 is judged as the IPv4 address
        ("100.64.0.1", "non-public"),  # carrier-grade NAT
        ("224.0.0.1", "multicast"),
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
    ],
)
def test_forbidden_reason_classifies_addresses(address: str, reason: str | None) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("2002:7f00:1::", "6to4-embedded loopback"),  # 6to4 of 127.0.0.1
        ("2002:a00:1::5", "6to4-embedded private"),  # 6to4 of 10.0.0.1
        ("2002:a9fe:a9fe::1", "6to4-embedded link-local"),  # 6to4 of 169.254.169.254
        ("64:ff9b::7f00:1", "NAT64-embedded loopback"),  # well-known NAT64 prefix
        ("64:ff9b::c0a8:101", "NAT64-embedded private"),  # 192.168.1.1
        ("64:ff9b:1::a00:1", "NAT64-embedded private"),  # local-use NAT64 prefix, 10.0.0.1
        # Teredo: server 65.54.227.120, client 127.0.0.1 (stored inverted, as Teredo does)
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo-embedded loopback"),
        ("::127.0.0.1", "IPv4-compatible loopback"),
        ("::10.1.2.3", "IPv4-compatible private"),
        ("::ffff:10.1.2.3", "private"),  # IPv4-mapped: judged as the IPv4 address
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:808:808::1", None),  # 6to4 of the public 8.8.8.8 stays reachable
    ],
)
def test_ipv6_forms_carrying_an_ipv4_address_are_judged_by_it(
    address: str, reason: str | None
) -> None:
    assert forbidden_reason(ipaddress.ip_address(address)) == reason


def test_a_6to4_loopback_webhook_is_refused_at_submit_and_at_send_time() -> None:
    message = check_literal_host("http://[2002:7f00:1::]:9/hook", False) or ""
    assert "6to4-embedded loopback" in message
    outcomes: list[DeliveryOutcome] = []
    sender = _sender(outcomes, allow_private=False)
    sender.notify("ftj_x", "default", "http://[64:ff9b::7f00:1]:9/hook", {"id": "x"})
    assert sender.close(timeout=10)
    assert len(outcomes) == 1 and outcomes[0].refused
    assert "NAT64-embedded loopback" in outcomes[0].message


def test_literal_private_hosts_are_refused_unless_allowed() -> None:
    assert "loopback" in (check_literal_host("http://127.0.0.1:9/hook", False) or "")
    assert "link-local" in (check_literal_host("http://[fe80::1]/x", False) or "")
    assert check_literal_host("http://127.0.0.1:9/hook", True) is None
    # Names are judged at send time, after DNS resolution.
    assert check_literal_host("http://localhost:9/hook", False) is None
    assert check_literal_host("https://93.184.216.34/hook", False) is None


def test_signature_covers_timestamp_and_body() -> None:
    body = b'{"type":"job.finished"}'
    headers = {
        "X-Finetune-Timestamp": "1700000000",
        "X-Finetune-Signature": sign(SECRET.encode(), 1700000000, body),
    }
    assert headers["X-Finetune-Signature"].startswith("sha256=")
    assert verify(SECRET.encode(), headers, body, now=1700000010)
    assert not verify(SECRET.encode(), headers, body + b" ", now=1700000010)
    assert not verify(b"other", headers, body, now=1700000010)
    assert not verify(SECRET.encode(), headers, body, now=1700000000 + 3600)  # too old
    moved = {**headers, "X-Finetune-Timestamp": "1700000001"}
    assert not verify(SECRET.encode(), moved, body, now=1700000010)


def _sender(outcomes: list[DeliveryOutcome], **kwargs: Any) -> WebhookSender:
    options: dict[str, Any] = {
        "allow_private": True,
        "max_attempts": 3,
        "backoff_seconds": 0.1,
        "timeout_seconds": 5,
    }
    options.update(kwargs)
    return WebhookSender(
        ServiceWideSecret(SECRET),
        on_outcome=lambda delivery, outcome: outcomes.append(outcome),
        **options,
    )


def test_delivery_is_signed_and_retried_after_a_failure() -> None:
    outcomes: list[DeliveryOutcome] = []
    with WebhookReceiver(fail_first=1) as receiver:
        sender = _sender(outcomes)
        started = time.monotonic()
        sender.notify("ftj_x", "default", receiver.url(), {"id": "ftj_x", "status": "succeeded"})
        assert time.monotonic() - started < 0.5, "notify must not wait for the delivery"
        first, second = receiver.wait_for(2)
        assert sender.close(timeout=10)
    assert (first.answered, second.answered) == (500, 200)
    assert first.body == second.body
    payload = json.loads(second.body)
    assert payload["type"] == "job.finished" and payload["job"]["status"] == "succeeded"
    assert second.headers["X-Finetune-Delivery"] == first.headers["X-Finetune-Delivery"]
    assert second.headers["X-Finetune-Attempt"] == "2"
    assert verify(SECRET.encode(), second.headers, second.body)
    assert outcomes == [DeliveryOutcome(True, 2, 200, outcomes[0].message)]


def test_gives_up_after_max_attempts() -> None:
    outcomes: list[DeliveryOutcome] = []
    with WebhookReceiver(fail_first=10) as receiver:
        sender = _sender(outcomes, max_attempts=2)
        sender.notify("ftj_x", "default", receiver.url(), {"id": "ftj_x"})
        receiver.wait_for(2)
        assert sender.close(timeout=10)
    assert len(receiver.received) == 2
    assert outcomes and not outcomes[0].delivered and outcomes[0].status == 500


def test_name_resolving_to_loopback_is_refused_at_send_time() -> None:
    """``localhost`` passes the submit check (not a literal IP) but resolves to loopback."""
    outcomes: list[DeliveryOutcome] = []
    with WebhookReceiver() as receiver:
        sender = _sender(outcomes, allow_private=False)
        sender.notify("ftj_x", "default", f"http://localhost:{receiver.port}/hook", {"id": "x"})
        assert sender.close(timeout=10)
        assert receiver.received == [], "nothing may be sent to a private address"
    assert len(outcomes) == 1
    assert outcomes[0].refused and not outcomes[0].delivered
    assert "loopback" in outcomes[0].message


@pytest.fixture
def services(tmp_path: Path) -> Services:
    """Local job state and scratch in a temporary folder."""
    return local_services(
        tmp_path, webhook_secret=SECRET, webhook_allow_private=True, webhook_backoff_seconds=0.1
    )


def test_notifier_records_the_delivery_as_a_job_event(services: Services) -> None:
    with WebhookReceiver() as receiver:
        record = services.jobs.create(loaded_spec(notify={"webhook_url": receiver.url()}))
        record = services.jobs.cancel(record.id)  # a queued job is final at once
        notifier = JobNotifier(services.jobs, services.config)
        notifier.job_finished(record)
        (received,) = receiver.wait_for(1)
        assert notifier.close(timeout=10)
    assert json.loads(received.body)["job"]["status"] == "cancelled"
    events = services.jobs.read_events(record.id)
    webhook_events = [event for event in events if event.type == "webhook"]
    assert len(webhook_events) == 1 and webhook_events[0].data["delivered"] is True
